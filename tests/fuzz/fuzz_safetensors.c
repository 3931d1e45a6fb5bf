/*
 * fuzz_safetensors.c - libFuzzer target: arbitrary bytes -> the safetensors
 * reader (engine/safetensors.c); every accepted tensor's bytes are read end
 * to end (so ASan sees any offset past the buffer) and F32/F16/BF16 tensors
 * are converted. An input that starts with '{' also goes to the
 * tokenizer.json reader (engine/tokenizer_hf.c), which then encodes and
 * decodes a fixed string. Any crash, sanitizer report, leak or >10 s input is
 * a bug (RELIABILITY.md A1-A6).
 *
 * Built by `make fuzz`; the replay driver (replay.c) runs the committed
 * corpus (tests/fuzz/corpus/safetensors) through the normal build.
 */
#include "engine/quant.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct safetensors *st;
    char msg[256];
    if (safetensors_open_memory(data, size, &st, msg, sizeof msg) == 0) {
        volatile unsigned sum = 0;
        for (size_t i = 0; i < safetensors_n_tensors(st); i++) {
            const struct safetensors_tensor *t = safetensors_tensor(st, i);
            const unsigned char *p = t->data;
            for (uint64_t k = 0; k < t->n_bytes; k++) sum += p[k];
            enum quant_type q = t->dtype == SAFETENSORS_F32 ? QUANT_F32 : t->dtype == SAFETENSORS_F16 ? QUANT_F16 : QUANT_BF16;
            if ((t->dtype == SAFETENSORS_F32 || t->dtype == SAFETENSORS_F16 || t->dtype == SAFETENSORS_BF16) &&
                t->n_elements && t->n_elements <= 4096) {
                size_t es = safetensors_dtype_size(t->dtype);
                void *tmp = malloc((size_t)t->n_bytes);
                float *out = malloc((size_t)t->n_elements * sizeof *out);
                if (tmp && out) {
                    memcpy(tmp, t->data, (size_t)t->n_bytes); /* aligned copy */
                    quant_dequantize_row(q, tmp, out, (size_t)t->n_bytes / es);
                    sum += out[0] != out[0];
                }
                free(tmp);
                free(out);
            }
            if (safetensors_find(st, t->name) == NULL) abort(); /* every listed name is found */
        }
        (void)sum;
        safetensors_close(st);
    }
    if (size && data[0] == '{') {
        struct tokenizer *t;
        if (tok_create_hf_json((const char *)data, size, 1, 2, -1, -1, &t, msg, sizeof msg) == 0) {
            int32_t ids[64];
            size_t n = 0;
            tok_encode(t, "Hello world, ok? <s>\xC3\xA9", 23, true, true, ids, 64, &n);
            for (size_t i = 0; i < n && i < 64; i++)
                if (ids[i] < 0 || ids[i] >= tok_n_vocab(t)) abort();
            char *s = tok_decode(t, ids, n < 64 ? n : 64, true);
            free(s);
            tok_destroy(t);
        }
    }
    return 0;
}
