#!/usr/bin/env bash
# Run Sluice's fuzz targets one after another, each for a fixed time.
#
#   ./run.sh [SECONDS] [TARGET...]     default: 60 s each, every target below
#
# New inputs go to work/<target>/ (gitignored); the committed corpus/<target>/
# is read as seeds and never written. A crash or broken property is saved in
# artifacts/<target>/ and the run goes on with the next target; the exit
# status is non-zero if any target found one. Environment:
#   SANITIZER=address|none   (default none: the workspace forbids unsafe code,
#                             and without ASan the 2-core CI box runs ~2x more)
#   SLUICE_FUZZ_TOLERATE=a,b  property classes already reported, not to stop on
#   JOBS=N                    libFuzzer -fork=N (default: one process)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(classify response sse list_filter scope config_load uri)
fi
sanitizer="${SANITIZER:-none}"
mkdir -p logs
cargo +nightly fuzz build -s "$sanitizer" || exit 1
failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    dict=()
    [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
    fork=()
    [ -n "${JOBS:-}" ] && fork=("-fork=$JOBS" "-ignore_crashes=1")
    echo "== $t: ${secs}s"
    cargo +nightly fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 -max_len=4096 \
        -print_final_stats=1 "${dict[@]}" "${fork[@]}" 2>&1 | tee "logs/$t.log" |
        grep -E "^(#[0-9]+ +(INITED|DONE)|SUMMARY|stat::number_of_executed_units|thread .* panicked|property)"
    status=${PIPESTATUS[0]}
    execs=$(grep -oE "stat::number_of_executed_units: [0-9]+" "logs/$t.log" | tail -1 | grep -oE "[0-9]+$")
    corpus=$(find "work/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    [ "$status" -ne 0 ] && failed=1
    summary+=("$(printf '%-12s %6ss %12s execs %6s corpus %4s artifacts  exit %s' "$t" "$secs" "${execs:-?}" "$corpus" "$crashes" "$status")")
done
echo
echo "target         time        executions   work corpus   artifacts"
printf '%s\n' "${summary[@]}"
exit "$failed"
