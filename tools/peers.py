#!/usr/bin/env python3
"""Exact top-k with numpy on the matrix and queries the engine bench wrote, for comparison.

Usage: tools/peers.py MATRIX.npy QUERIES.npy [--k 10] [--seconds 2]

Loads the row-major float32 matrix (rows x dims, unit rows) and the queries (n x dims) and
times, per query, what an exact numpy search does: `mat @ q` (OpenBLAS sgemv; set
OPENBLAS_NUM_THREADS to the core count) and `argpartition` for the top k, sorted best first.
Queries rotate as in the engine bench. Prints one JSON object: the mean and median
milliseconds per query, the passes over the query set, the BLAS threads, and each query's
top-k rows (so the caller can check that both engines found the same rows).
"""

import argparse
import json
import os
import statistics
import sys
import time

try:
    import numpy as np
except ImportError as error:  # the caller reports the reason and goes on
    print(json.dumps({"skipped": f"numpy is not installed ({error})"}))
    sys.exit(0)


def top_k(mat, q, k):
    scores = mat @ q
    k = min(k, scores.shape[0])
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("matrix")
    parser.add_argument("queries")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    mat = np.load(args.matrix)
    queries = np.load(args.queries)
    assert mat.dtype == np.float32 and mat.flags["C_CONTIGUOUS"], "row-major float32 matrix"
    assert queries.shape[1] == mat.shape[1], "query and row lengths differ"
    # Unit queries, as podmap scores them (the ranking does not change).
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)

    hits = [top_k(mat, q, args.k).tolist() for q in queries]  # also warms the caches
    times = []
    passes = 0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline or passes < 3:
        for q in queries:
            start = time.perf_counter()
            top_k(mat, q, args.k)
            times.append(time.perf_counter() - start)
        passes += 1

    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    print(
        json.dumps(
            {
                "numpy": np.__version__,
                "blas_threads": threads,
                "rows": mat.shape[0],
                "dims": mat.shape[1],
                "queries": queries.shape[0],
                "passes": passes,
                "mean_ms": statistics.fmean(times) * 1e3,
                "median_ms": statistics.median(times) * 1e3,
                "hits": hits,
            }
        )
    )


if __name__ == "__main__":
    main()
