#!/usr/bin/env bash
# test_bad_models.sh - RELIABILITY.md T12: crafted model files.
#
# tests/gguf/make_bad.py writes the bad files into $BUILD/bad-gguf; each must
# make `saserve check-model FILE` exit with status 2 (not 0, not 1, not a
# signal, not a timeout) within 5 s, printing exactly one line on stderr of
# the form "saserve: FILE: <message>" that contains one of the substrings in
# FILE's .expect. Files named full_* hold values only a full pass can see (a
# NaN inside a weight matrix): plain check-model must accept them and
# `check-model --full` must reject them that way. The valid input must exit 0,
# and so must every model of $SHARED/models/kquant (llama.cpp's K-quant/IQ4
# files, every shard of its split set, checked with its set, and the ref/
# copies) when that directory exists. Bad
# split sets lie in $OUT/split_*/: their first shard (...-00001-of-...) is the
# file checked. If the sanitizer build
# build/san-address-undefined/saserve exists, every file also goes through it
# (any ASan/UBSan report breaks the one-line/exit-2 rule and so fails).
#
# Environment: BUILD (default build), SHARED (default ../shared),
# SASERVE (default $BUILD/saserve), SAN_SASERVE (default
# build/san-address-undefined/saserve), VALID_GGUF (default stories260K).
set -u
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
SASERVE=${SASERVE:-$BUILD/saserve}
SAN_SASERVE=${SAN_SASERVE:-build/san-address-undefined/saserve}
VALID=${VALID_GGUF:-$SHARED/models/stories260K/stories260K.gguf}
VALID_PHIDNN=${VALID_PHIDNN:-config/models/phidnn-fmnist.gguf} # the phidnn_* cases derive from it
OUT=$BUILD/bad-gguf
SLOW_MS=${SLOW_MS:-1000} # hard limit per normal-build check (RELIABILITY.md aims at < 100 ms)

pass=0
fail=0
slow_warn=0
t_err=$(mktemp)
trap 'rm -f "$t_err"' EXIT

record_fail() {
    fail=$((fail + 1))
    echo "FAIL $*"
}

now_ms() { date +%s%3N; }

# check_one LABEL BINARY FILE WANT_RC [EXPECT_FILE [CHECK_ARGS]]
check_one() {
    local label=$1 bin=$2 f=$3 want=$4 expect=${5:-} args=${6:-}
    local t0 t1 rc lines line needle matched=0 ms
    t0=$(now_ms)
    # shellcheck disable=SC2086 # args is one optional flag
    timeout 5 "$bin" check-model $args "$f" >/dev/null 2>"$t_err"
    rc=$?
    t1=$(now_ms)
    ms=$((t1 - t0))
    if [ "$rc" -eq 124 ]; then
        record_fail "$label $(basename "$f"): timed out after 5 s"
        return
    fi
    if [ "$rc" -gt 128 ]; then
        record_fail "$label $(basename "$f"): killed by signal $((rc - 128))"
        sed 's/^/    /' "$t_err" | head -n 20
        return
    fi
    if [ "$rc" -ne "$want" ]; then
        record_fail "$label $(basename "$f"): exit status $rc, expected $want"
        sed 's/^/    /' "$t_err" | head -n 20
        return
    fi
    if [ "$want" -eq 0 ]; then
        pass=$((pass + 1))
        return
    fi
    lines=$(awk 'END { print NR }' "$t_err")
    if [ "$lines" -ne 1 ]; then
        record_fail "$label $(basename "$f"): $lines lines on stderr, expected exactly 1"
        sed 's/^/    /' "$t_err" | head -n 20
        return
    fi
    line=$(head -n 1 "$t_err")
    case "$line" in
    "saserve: $f: "?*) ;;
    *)
        record_fail "$label $(basename "$f"): stderr line not of the form 'saserve: $f: <message>': $line"
        return
        ;;
    esac
    while IFS= read -r needle || [ -n "$needle" ]; do
        [ -n "$needle" ] || continue
        case "$line" in *"$needle"*) matched=1 ;; esac
    done <"$expect"
    if [ "$matched" -ne 1 ]; then
        record_fail "$label $(basename "$f"): message does not name $(paste -sd'|' "$expect"): $line"
        return
    fi
    if [ "$label" = normal ] && [ "$ms" -gt "$SLOW_MS" ]; then
        record_fail "$label $(basename "$f"): took $ms ms (limit $SLOW_MS ms)"
        return
    fi
    if [ "$label" = normal ] && [ "$ms" -gt 100 ]; then
        slow_warn=$((slow_warn + 1))
        echo "note: $(basename "$f") took $ms ms (> 100 ms)"
    fi
    pass=$((pass + 1))
}

if [ ! -x "$SASERVE" ]; then
    echo "FAIL $SASERVE is not built"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! python3 tests/gguf/make_bad.py "$VALID" --phidnn "$VALID_PHIDNN" -o "$OUT"; then
    echo "FAIL make_bad.py"
    echo "0 passed, 1 failed"
    exit 1
fi

bins=("normal:$SASERVE")
if [ -x "$SAN_SASERVE" ] && [ "$(realpath "$SAN_SASERVE")" != "$(realpath "$SASERVE")" ]; then
    bins+=("asan:$SAN_SASERVE")
fi

n_files=0
for b in "${bins[@]}"; do
    label=${b%%:*}
    bin=${b#*:}
    check_one "$label" "$bin" "$VALID" 0
    check_one "$label" "$bin" "$VALID_PHIDNN" 0
    for f in "$SHARED"/models/kquant/*.gguf "$SHARED"/models/kquant/split/*.gguf "$SHARED"/models/kquant/ref/*.gguf; do
        [ -e "$f" ] && check_one "$label" "$bin" "$f" 0
    done
    for f in "$OUT"/*.gguf "$OUT"/split_*/*-00001-of-*.gguf; do
        [ -e "$f" ] || continue
        exp=${f%.gguf}.expect
        if [ ! -f "$exp" ]; then
            record_fail "$(basename "$f"): no .expect file"
            continue
        fi
        [ "$label" = normal ] && n_files=$((n_files + 1))
        case "$(basename "$f")" in
        full_*) # values only a full pass sees: the load accepts them, --full names the tensor
            check_one "$label" "$bin" "$f" 0
            check_one "$label" "$bin" "$f" 2 "$exp" --full
            ;;
        *) check_one "$label" "$bin" "$f" 2 "$exp" ;;
        esac
    done
done
if [ "$n_files" -eq 0 ]; then
    record_fail "no crafted files in $OUT"
fi
echo "checked $n_files crafted files with: ${bins[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
