#!/usr/bin/env bash
# test_http_asan.sh - the black-box HTTP test (test_http.sh) and the quick fault
# tests (T2-T8, limits, N1-N4, F1) against the AddressSanitizer + UBSan server build
# ($SAN_BUILD/saserve, made by make SANITIZE=address,undefined all); fails on
# any sanitizer report in a server's log (leaks are reported at exit: every
# server is stopped with SIGTERM).
set -u
cd "$(dirname "$0")/../.." || exit 1
SAN_BUILD=${SAN_BUILD:-build/san-address-undefined}
if [ ! -x "$SAN_BUILD/saserve" ]; then echo "FAIL $SAN_BUILD/saserve is not built"; echo "0 passed, 1 failed"; exit 1; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
SASERVE="$SAN_BUILD/saserve" SAN_CHECK=1 bash tests/scripts/test_http.sh || rc=1
SAN=1 python3 tests/faults/faults.py --mode short --saserve "$SAN_BUILD/saserve" --only T2,T3,T4,T5,T6,T7,T8,LIM,N1,N2,N3,N4,F1,F2 || rc=1
exit $rc
