#!/usr/bin/env bash
# The benchmark report: podmap (exact, int8, binary, JSON path) against numpy, FAISS and usearch
# on the same vectors, in one run, into docs/BENCHMARKS.md and docs/bench/*.svg (results as JSON
# in target/bench-report/results.json). The measuring and rendering is benches/report; this
# script sets up the peers' Python packages in a venv under target/ and runs it.
#
#   tools/bench-report.sh                                  # the full report (about 4 min, +2 for the data once)
#   PODMAP_REPORT_SIZES=1000,4000 tools/bench-report.sh    # a quick run
#
# Other settings (PODMAP_REPORT_SECONDS, PODMAP_REPORT_CORPUS=0, PODMAP_REPORT_DOCS, …) are
# described at the top of benches/report/main.rs. A peer whose package cannot be installed is
# not dropped: the report lists it as not measured, with pip's reason.
# PODMAP_REPORT_VENV chooses another venv folder (default target/bench-venv).
set -euo pipefail

cd "$(dirname "$0")/.."
venv=${PODMAP_REPORT_VENV:-target/bench-venv}
python=${PYTHON:-python3}
mkdir -p target

# "pip-name=import-name=engine" for each peer package (numpy first: the others need it).
packages=("numpy=numpy=NUMPY" "faiss-cpu=faiss=FAISS" "usearch=usearch=USEARCH")

skip_all() {
    for entry in "${packages[@]}"; do
        export "PODMAP_REPORT_SKIP_${entry##*=}=$1"
    done
}

if [[ ! -x $venv/bin/python ]] && ! "$python" -m venv "$venv" >target/bench-venv.log 2>&1; then
    skip_all "no Python venv ($python -m venv failed: $(tail -n 1 target/bench-venv.log))"
else
    export PODMAP_PEERS_PYTHON=$PWD/$venv/bin/python
    for entry in "${packages[@]}"; do
        IFS== read -r pip_name module engine <<<"$entry"
        if "$PODMAP_PEERS_PYTHON" -c "import $module" 2>/dev/null; then
            continue
        fi
        log=target/bench-venv-$pip_name.log
        echo "bench-report: installing $pip_name into $venv …" >&2
        if ! "$PODMAP_PEERS_PYTHON" -m pip install --quiet "$pip_name" >"$log" 2>&1; then
            reason="pip install $pip_name failed: $(grep -v '^\s*$' "$log" | tail -n 1)"
            echo "bench-report: $reason" >&2
            if [[ $engine == NUMPY ]]; then
                skip_all "$reason"
                break
            fi
            export "PODMAP_REPORT_SKIP_$engine=$reason"
        fi
    done
fi

exec cargo bench --bench report
