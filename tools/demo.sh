#!/usr/bin/env bash
# podmap's main job on the bundled fixtures: convert the JSON into archives, verify them,
# show one header, search by vector and by text, list episodes, cut an excerpt, list speakers.
#   tools/demo.sh [INDEX_DIR]             (default: target/demo-index)
set -euo pipefail
cd "$(dirname "$0")/.."
index=${1:-target/demo-index}
cargo build --quiet --release --bin podmap
podmap=target/release/podmap
data=fixtures/data

echo "== podmap convert --data $data --out $index"
"$podmap" convert --data "$data" --out "$index"
echo
echo "== podmap verify $index"
"$podmap" verify "$index"
echo
echo "== podmap inspect $index/demo-raumfahrt"
"$podmap" inspect "$index/demo-raumfahrt"
echo
echo "== podmap search --podcast demo-raumfahrt --vector $data/queries/demo-raumfahrt.json --top-k 5"
"$podmap" search --index "$index" --podcast demo-raumfahrt --vector "$data/queries/demo-raumfahrt.json" --top-k 5
echo
echo "== the same queries on the JSON path (--source json): the same hits"
"$podmap" search --source json --data "$data" --podcast demo-raumfahrt \
  --vector "$data/queries/demo-raumfahrt.json" --top-k 5 --json
echo
echo "== podmap search --podcast demo-text --text 'Raumfahrt Forschung' (no embeddings: lexical)"
"$podmap" search --index "$index" --podcast demo-text --text "Raumfahrt Forschung" --top-k 5
echo
echo "== podmap episodes --podcast demo-raumfahrt --limit 3"
"$podmap" episodes --index "$index" --podcast demo-raumfahrt --limit 3
echo
echo "== podmap transcript --podcast demo-raumfahrt --episode 2 --from 0 --to 120 --max-chars 600"
"$podmap" transcript --index "$index" --podcast demo-raumfahrt --episode 2 --from 0 --to 120 --max-chars 600
echo
echo "== podmap speakers --podcast demo-raumfahrt"
"$podmap" speakers --index "$index" --podcast demo-raumfahrt
