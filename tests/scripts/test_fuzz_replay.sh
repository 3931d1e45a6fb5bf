#!/usr/bin/env bash
# Replays every fuzz target's committed corpus, plus the real model and vocab
# files from ../shared and the crafted bad models, through the normal build's
# replay drivers (no libFuzzer needed). Any crash fails the test.
set -u
BUILD=${BUILD:-build}; SHARED=${SHARED:-../shared}
pass=0; fail=0
for bin in "$BUILD"/replay/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); target=${name#fuzz_}
    inputs=()
    [ -d "tests/fuzz/corpus/$target" ] && inputs+=("tests/fuzz/corpus/$target")
    if [ "$target" = gguf ]; then
        inputs+=("$SHARED"/tokenizer-vectors/*.gguf "$SHARED"/models/*/*.gguf)
        [ -d "$BUILD/bad-gguf" ] && inputs+=("$BUILD/bad-gguf")
    fi
    if [ "$target" = safetensors ]; then
        inputs+=("$SHARED"/models/*/hf/model.safetensors "$SHARED"/models/*/hf/tokenizer.json)
        for f in "$BUILD"/bad-hf/*/model.safetensors "$BUILD"/bad-hf/*/tokenizer.json; do
            [ -f "$f" ] && inputs+=("$f")
        done
    fi
    [ ${#inputs[@]} -gt 0 ] || continue
    if out=$(timeout 300 "$bin" "${inputs[@]}" 2>&1); then
        pass=$((pass + 1)); echo "ok $name: $(echo "$out" | tail -n 1)"
    else
        fail=$((fail + 1)); echo "not ok $name"; echo "$out" | tail -n 20
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
