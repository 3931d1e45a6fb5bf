# Sourced by the bench scripts: gen_model SHAPE TYPE prints the path of the
# generated model of that shape and type (random weights, the llama-spm
# vocabulary), generating it under models/gen/ the first time.
gen_model() {
    local shape=$1 type=$2 path
    path=models/gen/llama-${shape,,}-${type,,}.gguf
    mkdir -p models/gen
    if [ ! -s "$path" ]; then
        "$BUILD/tools/gguf_random" -o "$path" --shape "$shape" --type "${type^^}" \
            --vocab-from "$SHARED/tokenizer-vectors/ggml-vocab-llama-spm.gguf" >&2
    fi
    echo "$path"
}
