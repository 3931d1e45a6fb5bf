#!/usr/bin/env bash
# make fuzz-smoke: run every libFuzzer target for FUZZ_SECONDS on a scratch
# copy of its committed corpus; print executions, coverage and crashes.
set -u
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}; SHARED=${SHARED:-../shared}; SECS=${FUZZ_SECONDS:-60}
SHARED=$(cd "$SHARED" && pwd) # the fuzzers run in a scratch directory
export SHARED
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf '%-16s %8s %10s %8s %s\n' target seconds execs cov result
fail=0
for bin in "$FUZZ_DIR"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); target=${name#fuzz_}
    corpus="$work/$target"; mkdir -p "$corpus"
    [ -d "tests/fuzz/corpus/$target" ] && cp tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null
    [ "$target" = gguf ] && cp "$SHARED"/tokenizer-vectors/*.gguf "$SHARED"/models/*/*.gguf "$corpus"/ 2>/dev/null
    log="$work/$name.log"
    (cd "$work" && timeout $((SECS + 60)) "$OLDPWD/$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -print_final_stats=1 "$corpus" >"$log" 2>&1)
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
    if [ $rc -eq 0 ]; then res=ok; else res="CRASH (exit $rc)"; fail=$((fail + 1)); tail -n 30 "$log"; fi
    printf '%-16s %8s %10s %8s %s\n' "$name" "$SECS" "${execs:-?}" "${cov:-?}" "$res"
done
[ "$fail" -eq 0 ]
