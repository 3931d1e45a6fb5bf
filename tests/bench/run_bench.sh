#!/usr/bin/env bash
# make bench [MODEL=110M|1.1B|path.gguf]
# A shape name benches F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K files of that
# shape (generated with random weights on first use under models/gen/, which git
# ignores, the K-quants by `saserve quantize` of the F16 file; speed does not depend
# on weight values). A path benches that one file.
# Writes build/bench-results/<name>.json and .md.
set -euo pipefail
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
target=${1:-110M}
# Shared Attention plan benched next to sharing off (SHARE= to override, SHARE=off to skip)
case "$target" in
  1.1B) share=${SHARE:-13-16,18-20} ;;
  110M) share=${SHARE:-7-8,10-11} ;;
  *)    share=${SHARE:-off} ;;
esac
share_args=(); [ "$share" = off ] || share_args=(--share "$share")
out=$BUILD/bench-results
mkdir -p "$out" models/gen
vocab="$SHARED/tokenizer-vectors/ggml-vocab-llama-spm.gguf"
files=()
case "$target" in
  *.gguf) files=("$target"); name=$(basename "$target" .gguf) ;;
  *)
    name="llama-$target"
    for t in F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K; do
      f="models/gen/llama-${target,,}-${t,,}.gguf"
      if [ ! -s "$f" ] && [[ "$t" == *_K ]]; then # no random K-quant writer: quantise the random F16 file
        echo "bench: generating $f (saserve quantize of the F16 file)" >&2
        "$BUILD/saserve" quantize "models/gen/llama-${target,,}-f16.gguf" "$f" "$t" >&2
      elif [ ! -s "$f" ]; then
        echo "bench: generating $f (random weights)" >&2
        "$BUILD/tools/gguf_random" -o "$f" --shape "$target" --type "$t" --vocab-from "$vocab" >&2
      fi
      files+=("$f")
    done ;;
esac
md="$out/$name.md"
{
  echo "**make bench: $target ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))**"
  echo
  echo '```'
} > "$md"
jsons=()
for f in "${files[@]}"; do
  j="$out/$(basename "$f" .gguf).json"
  echo "== $f" | tee -a "$md"
  "$BUILD/bench" -m "$f" --json "$j" "${share_args[@]}" | tee -a "$md"
  jsons+=("$j")
done
echo '```' >> "$md"
python3 - "$out/$name.json" "${jsons[@]}" <<'PY'
import json, sys
out, parts = sys.argv[1], sys.argv[2:]
json.dump([json.load(open(p)) for p in parts], open(out, "w"), indent=1)
PY
# refresh the README's copy of this table, if it has a block for it
python3 tests/bench/readme_block.py "bench-$name" "$md"
echo "bench: wrote $md and $out/$name.json"
