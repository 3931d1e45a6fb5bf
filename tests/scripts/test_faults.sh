#!/usr/bin/env bash
# test_faults.sh - the fault suite (tests/faults/faults.py, RELIABILITY.md
# section 4 T1-T11 + the limits) in short mode against the normal build;
# make soak runs the long mode. The table also goes to $BUILD/faults-short.md.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
exec python3 tests/faults/faults.py --mode short --saserve "$BUILD/saserve" --out "$BUILD/faults-short.md"
