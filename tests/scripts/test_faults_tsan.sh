#!/usr/bin/env bash
# test_faults_tsan.sh - the concurrency fault tests (T2 disconnects, T3 SIGTERM
# drain) against the ThreadSanitizer server build
# ($TSAN_BUILD/saserve); a ThreadSanitizer warning in a server's log fails.
set -u
cd "$(dirname "$0")/../.." || exit 1
TSAN_BUILD=${TSAN_BUILD:-build/san-thread}
if [ ! -x "$TSAN_BUILD/saserve" ]; then echo "FAIL $TSAN_BUILD/saserve is not built"; echo "0 passed, 1 failed"; exit 1; fi
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0 suppressions=$PWD/tests/tsan.supp}
SAN=1 exec python3 tests/faults/faults.py --mode short --saserve "$TSAN_BUILD/saserve" --only T2,T3
