#!/usr/bin/env bash
# test_bad_hf.sh - crafted bad Hugging Face checkpoints (RELIABILITY.md T12 for
# the safetensors / config.json / tokenizer.json loader).
#
# tests/gguf/make_bad_hf.py writes the bad checkpoint directories into
# $BUILD/bad-hf; each must make `saserve check-model DIR` exit with status 2
# (not 0, not 1, not a signal, not a timeout) within 5 s, printing exactly one
# line on stderr of the form "saserve: DIR: <message>" that contains one of
# the substrings in DIR.expect. The valid checkpoint (as a directory and as
# its model.safetensors path) must exit 0. If the sanitizer build
# build/san-address-undefined/saserve exists, every case also goes through it.
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
SAN_SASERVE=${SAN_SASERVE:-build/san-address-undefined/saserve}
VALID=${VALID_HF:-$SHARED/models/tinystories-656K/hf}
OUT=$BUILD/bad-hf
pass=0
fail=0
t_err=$(mktemp)
trap 'rm -f "$t_err"' EXIT

check_one() { # LABEL BINARY PATH WANT_RC [EXPECT_FILE]
    local label=$1 bin=$2 f=$3 want=$4 expect=${5:-} rc line matched=0 needle
    timeout 5 "$bin" check-model "$f" >/dev/null 2>"$t_err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail=$((fail + 1))
        echo "FAIL $label $f: exit status $rc, expected $want"
        sed 's/^/    /' "$t_err" | head -n 20
        return
    fi
    if [ "$want" -eq 0 ]; then pass=$((pass + 1)); return; fi
    if [ "$(awk 'END { print NR }' "$t_err")" -ne 1 ]; then
        fail=$((fail + 1))
        echo "FAIL $label $f: expected exactly one line on stderr"
        sed 's/^/    /' "$t_err" | head -n 20
        return
    fi
    line=$(head -n 1 "$t_err")
    case "$line" in
    "saserve: $f: "?*) ;;
    *) fail=$((fail + 1)); echo "FAIL $label $f: not of the form 'saserve: $f: <message>': $line"; return ;;
    esac
    while IFS= read -r needle || [ -n "$needle" ]; do
        [ -n "$needle" ] || continue
        case "$line" in *"$needle"*) matched=1 ;; esac
    done <"$expect"
    if [ "$matched" -ne 1 ]; then
        fail=$((fail + 1))
        echo "FAIL $label $f: message does not name $(paste -sd'|' "$expect"): $line"
        return
    fi
    pass=$((pass + 1))
}

if [ ! -x "$SASERVE" ]; then echo "FAIL $SASERVE is not built"; echo "0 passed, 1 failed"; exit 1; fi
if ! python3 tests/gguf/make_bad_hf.py "$VALID" -o "$OUT"; then echo "FAIL make_bad_hf.py"; echo "0 passed, 1 failed"; exit 1; fi
bins=("normal:$SASERVE")
if [ -x "$SAN_SASERVE" ] && [ "$(realpath "$SAN_SASERVE")" != "$(realpath "$SASERVE")" ]; then
    bins+=("asan:$SAN_SASERVE")
fi
n=0
for b in "${bins[@]}"; do
    label=${b%%:*}
    bin=${b#*:}
    check_one "$label" "$bin" "$VALID" 0
    check_one "$label" "$bin" "$VALID/model.safetensors" 0
    for d in "$OUT"/*/; do
        d=${d%/}
        [ -f "$d.expect" ] || { fail=$((fail + 1)); echo "FAIL $d: no .expect file"; continue; }
        [ "$label" = normal ] && n=$((n + 1))
        check_one "$label" "$bin" "$d" 2 "$d.expect"
    done
done
[ "$n" -gt 0 ] || { fail=$((fail + 1)); echo "FAIL no crafted checkpoints in $OUT"; }
echo "checked $n crafted checkpoints with: ${bins[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
