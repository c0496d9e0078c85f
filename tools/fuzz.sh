#!/usr/bin/env bash
# Fuzzes the archive reader and search with cargo-fuzz (libFuzzer): each target in fuzz/
# runs for SECONDS on one core, starting from archives made by `podmap convert` from the
# bundled fixtures (and from the real corpus with FUZZ_WITH_CORPUS=1).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]      targets: header open_search open_read (default: all)
#
# Toolchain: cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=address and
# friends). The script builds with the stable toolchain and RUSTC_BOOTSTRAP=1, which makes
# stable rustc accept them; that is the usual way to fuzz without a nightly toolchain, and it
# changes nothing outside this build. Set FUZZ_TOOLCHAIN=nightly to use a nightly instead.
#
# Seeds are written to fuzz/corpus/<target>/ at run time and never committed (.gitignore);
# whatever a target finds goes to fuzz/artifacts/<target>/, and the script then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(header open_search open_read)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "tools/fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  toolchain=("+$FUZZ_TOOLCHAIN")
else
  export RUSTC_BOOTSTRAP=1
fi

# Seed archives: the fixtures (a few hundred KB), converted with the project's own tool.
seeds=target/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds"
cargo build --quiet --bin podmap
target/debug/podmap convert --data fixtures/data --out "$seeds/fixtures" >/dev/null
if [ "${FUZZ_WITH_CORPUS:-0}" = 1 ]; then
  corpus=${PODMAP_CORPUS:-../shared/corpus}
  target/debug/podmap convert --data "$corpus" --out "$seeds/corpus" >/dev/null
fi

for target in "${targets[@]}"; do
  dir=fuzz/corpus/$target
  mkdir -p "$dir"
  for archive in "$seeds"/*/*/rag.podmap; do
    podcast=$(basename "$(dirname "$archive")")
    if [ "$target" = header ]; then
      # A header target input is the 4 KiB header and the file length it describes.
      python3 - "$archive" "$dir/seed-$podcast" <<'PY'
import os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    head = f.read(4096)
with open(dst, "wb") as f:
    f.write(head + struct.pack("<Q", os.path.getsize(src)))
PY
    else
      cp "$archive" "$dir/seed-$podcast"
    fi
  done
  # Inputs as long as the largest seed, so that whole archives can be mutated.
  max_len=$(stat -c %s "$dir"/* | sort -n | tail -1)
  echo "tools/fuzz.sh: $target for ${seconds}s ($(ls "$dir" | wc -l) inputs, max_len $max_len)" >&2
  # One process on one core: the search's thread pool too.
  (cd fuzz && RAYON_NUM_THREADS=1 cargo "${toolchain[@]}" fuzz run "$target" --release -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1)
done
