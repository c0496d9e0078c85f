#!/usr/bin/env python3
"""Exact top-k with a peer engine on the matrix and queries a podmap bench wrote, for comparison.

Usage: tools/peers.py MATRIX.npy QUERIES.npy [--engine numpy|faiss|usearch] [--k 10]
                      [--seconds 2] [--threads N]

Loads the row-major float32 matrix (rows x dims, unit rows) and the queries (n x dims) and
times, per query (one at a time, queries rotating as in the podmap benches), an exact top-k:

- numpy: `mat @ q` (OpenBLAS sgemv; set OPENBLAS_NUM_THREADS to the core count) and
  `argpartition` for the top k, sorted best first;
- faiss: `IndexFlatIP` (inner product, exact), `index.search(q[None], k)`, OpenMP threads set
  to --threads;
- usearch: `usearch.index.search(mat, q, k, MetricKind.IP, exact=True, threads=...)`, its
  brute-force search over the same array.

Prints one JSON object: the engine and its version, the threads, the load time, the mean and
median milliseconds per query, the passes over the query set, this process's memory after
load + one query (from /proc/self/status, and ru_maxrss), and each query's top-k rows (so the
caller can check that the engines found the same rows). A peer whose package cannot be
imported prints {"skipped": reason} and exits 0: the caller reports it and goes on.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time


def skipped(engine, reason):
    print(json.dumps({"engine": engine, "skipped": reason}))
    sys.exit(0)


def memory():
    """This process's memory in KiB, as podmap's own `--report-memory` reports it."""
    fields = {"VmHWM:": "peak_rss_kib", "VmRSS:": "rss_kib", "RssAnon:": "rss_anon_kib",
              "RssFile:": "rss_file_kib"}
    out = {v: 0 for v in fields.values()}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                words = line.split()
                if words and words[0] in fields:
                    out[fields[words[0]]] = int(words[1])
    except OSError:
        pass
    # Linux reports ru_maxrss in KiB.
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


class NumpyPeer:
    def __init__(self, np, mat, threads):
        self.np, self.mat = np, mat
        self.version = np.__version__

    def top_k(self, q, k):
        np = self.np
        scores = self.mat @ q
        k = min(k, scores.shape[0])
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]


class FaissPeer:
    def __init__(self, np, mat, threads):
        try:
            import faiss
        except ImportError as error:
            skipped("faiss", f"faiss is not installed ({error})")
        if threads:
            faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexFlatIP(mat.shape[1])
        self.index.add(mat)  # a copy: the caller drops its own array
        self.version = faiss.__version__

    def top_k(self, q, k):
        _, rows = self.index.search(q.reshape(1, -1), k)
        return rows[0]


class UsearchPeer:
    def __init__(self, np, mat, threads):
        try:
            import usearch
            from usearch.index import MetricKind, search
        except ImportError as error:
            skipped("usearch", f"usearch is not installed ({error})")
        self.search, self.metric = search, MetricKind.IP
        self.mat, self.threads = mat, threads or 0
        self.version = usearch.__version__

    def top_k(self, q, k):
        found = self.search(self.mat, q, k, self.metric, exact=True, threads=self.threads)
        return found.keys


PEERS = {"numpy": NumpyPeer, "faiss": FaissPeer, "usearch": UsearchPeer}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("matrix")
    parser.add_argument("queries")
    parser.add_argument("--engine", choices=sorted(PEERS), default="numpy")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="0: the engine's default")
    parser.add_argument(
        "--mapped",
        metavar="OFFSET,ROWS,DIMS",
        help="MATRIX is a raw file (a podmap archive): map ROWS × DIMS float32 at OFFSET "
        "(np.memmap) instead of loading a .npy copy, so numpy reads the same page-cache pages",
    )
    args = parser.parse_args()

    try:
        import numpy as np
    except ImportError as error:  # the caller reports the reason and goes on
        skipped(args.engine, f"numpy is not installed ({error})")

    started = time.perf_counter()
    if args.mapped:
        offset, rows, dims = (int(x) for x in args.mapped.split(","))
        mat = np.memmap(args.matrix, dtype="<f4", mode="r", offset=offset, shape=(rows, dims))
    else:
        mat = np.load(args.matrix)
    assert mat.dtype == np.float32 and mat.flags["C_CONTIGUOUS"], "row-major float32 matrix"
    queries = np.load(args.queries)
    assert queries.shape[1] == mat.shape[1], "query and row lengths differ"
    # Unit queries, as podmap scores them (the ranking does not change).
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rows, dims = mat.shape
    peer = PEERS[args.engine](np, mat, args.threads)
    if args.engine == "faiss":
        del mat  # the index holds its own copy
    load_ms = (time.perf_counter() - started) * 1e3
    first = [int(i) for i in peer.top_k(queries[0], args.k)]
    mem = memory()  # after load + one query

    hits = [first] + [[int(i) for i in peer.top_k(q, args.k)] for q in queries[1:]]
    times = []
    passes = 0
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline or passes < 3:
        for q in queries:
            start = time.perf_counter()
            peer.top_k(q, args.k)
            times.append(time.perf_counter() - start)
        passes += 1

    print(
        json.dumps(
            {
                "engine": args.engine,
                "version": peer.version,
                "numpy": np.__version__,
                "python": platform.python_version(),
                "threads": args.threads,
                "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                "rows": rows,
                "dims": dims,
                "queries": queries.shape[0],
                "passes": passes,
                "load_ms": load_ms,
                "mean_ms": statistics.fmean(times) * 1e3,
                "median_ms": statistics.median(times) * 1e3,
                "memory": mem,
                "hits": hits,
            }
        )
    )


if __name__ == "__main__":
    main()
