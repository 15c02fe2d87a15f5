#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) with cargo-fuzz on the nightly
# toolchain, each for FUZZ_SECONDS (default 600), one after another, and
# prints one line per target: runs, coverage, corpus size, crashes. The
# corpora grow in fuzz/corpus/ (not committed); a crash's input lands in
# fuzz/artifacts/TARGET/ and the script exits 1 at the end. A finding is
# fixed and its input kept in fuzz/regressions/TARGET/, replayed by a unit
# test beside the parser it broke, and seeded into the corpus. Seeds:
# fuzz/seeds/TARGET/ (valid requests, answers and forms from the vectors).
#   deploy/fuzz.sh [TARGET…]      FUZZ_SECONDS=60 deploy/fuzz.sh form
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
secs="${FUZZ_SECONDS:-600}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build >&2
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    # Seeds: the committed seeds and regressions, if any.
    for d in "seeds/$t" "regressions/$t"; do
        [ -d "$d" ] && cp -n "$d"/* "corpus/$t/" 2>/dev/null || true
    done
    log="artifacts/$t/last-run.log"
    set +e
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" \
        -rss_limit_mb=2048 -max_len=20000 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    crashes=$(find "artifacts/$t" -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
    echo "$t: ${secs} s, ${runs} runs, cov ${cov}, corpus $(ls "corpus/$t" | wc -l), findings ${crashes}, exit ${rc}"
    [ "$rc" = 0 ] && [ "$crashes" = 0 ] || failed=1
done
exit "$failed"
