#!/usr/bin/env bash
# Runs every test executable and script; prints one line per suite and a
# closing "N passed, N failed" line. Exit status 1 if anything failed.
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
export SHARED BUILD
TIMEOUT=${TEST_TIMEOUT:-300}
pass=0; fail=0; failed_names=()
run_one() { # name, command...
    local name=$1; shift
    local log="$BUILD/test-logs/$name.log"
    mkdir -p "$BUILD/test-logs"
    local t0=$SECONDS
    if timeout "$TIMEOUT" "$@" >"$log" 2>&1; then
        pass=$((pass + 1)); printf 'PASS %-28s %3ds  %s\n' "$name" $((SECONDS - t0)) "$(tail -n 1 "$log")"
    else
        fail=$((fail + 1)); failed_names+=("$name")
        printf 'FAIL %-28s %3ds\n' "$name" $((SECONDS - t0)); sed 's/^/    /' "$log" | tail -n 40
    fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
# the same unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
if [ -n "${SAN_BUILD:-}" ] && [ -d "$SAN_BUILD/tests" ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    for t in "$SAN_BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "$(basename "$t"):asan" "$t"
    done
fi
# the threaded tests under ThreadSanitizer
if [ -n "${TSAN_BUILD:-}" ]; then
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 suppressions=$PWD/tests/tsan.supp}
    for name in ${TSAN_TESTS:-}; do
        [ -x "$TSAN_BUILD/tests/$name" ] && run_one "$name:tsan" "$TSAN_BUILD/tests/$name"
    done
fi
for s in tests/scripts/test_*.sh tests/deploy/test_manifests.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s" .sh)" bash "$s"
done
echo
[ ${#failed_names[@]} -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
