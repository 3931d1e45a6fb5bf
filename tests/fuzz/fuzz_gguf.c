/*
 * fuzz_gguf.c - libFuzzer target: arbitrary bytes -> GGUF reader -> model
 * hyper-parameter and tokenizer loading. Any crash, sanitizer report, leak or
 * >10 s input is a bug (RELIABILITY.md A1-A6).
 *
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined); the
 * replay driver (replay.c) runs the committed corpus through the normal build.
 */
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf *g;
    char msg[256];
    if (gguf_open_memory(data, size, &g, msg, sizeof msg) != 0) return 0;
    struct tokenizer *t;
    if (tok_create(g, &t, msg, sizeof msg) == 0) {
        int32_t ids[64];
        size_t n = 0;
        tok_encode(t, "Hello world, ok?", 16, true, true, ids, 64, &n);
        char *s = tok_decode(t, ids, n < 64 ? n : 64, false);
        (void)s;
        __builtin_free(s);
        tok_destroy(t);
    }
    gguf_close(g);
    return 0;
}
