#!/usr/bin/env bash
# Regenerates the committed fixtures with podmap-gen: small, deterministic data in the original
# layout (two podcasts with 384-dimensional embeddings, one without, and query vectors).
#   tools/make-fixtures.sh [OUT_DIR]      (default: fixtures/data)
# PODMAP_GEN names the generator binary; by default it is built with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-fixtures/data}
gen=${PODMAP_GEN:-}
if [[ -z "$gen" ]]; then
  cargo build --quiet --release --bin podmap-gen
  gen=target/release/podmap-gen
fi
rm -rf "$out"
"$gen" --out "$out" --podcast-id demo-raumfahrt --podcast-id demo-forschung --prefix demo \
  --episodes 6 --items 16 --dims 384 --no-embeddings-podcast \
  --transcript-entries 24 --transcripts-every 2 --queries 3 --seed 42
