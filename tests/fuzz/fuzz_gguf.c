/*
 * fuzz_gguf.c - libFuzzer target: arbitrary bytes -> GGUF reader -> model
 * hyper-parameter and tokenizer loading, for every tensor of a block type
 * the load-time scale check, the dequantisation of its first row and a dot
 * product on it (rows of up to 4096 elements), and the phiDNN loader (plus one
 * forward pass of every mode when the file's shapes are tiny). Any crash, sanitizer report, leak or
 * >10 s input is a bug (RELIABILITY.md A1-A6).
 *
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined); the
 * replay driver (replay.c) runs the committed corpus through the normal build.
 */
#include "engine/gguf.h"
#include "engine/phidnn.h"
#include "engine/quant.h"
#include "engine/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf *g;
    char msg[256];
    if (gguf_open_memory(data, size, &g, msg, sizeof msg) != 0) return 0;
    static float row[4096], x[4096];
    static uint8_t xq[4096 * 4];
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *tt = gguf_tensor(g, i);
        enum quant_type ty = (enum quant_type)tt->type;
        size_t n = (size_t)tt->ne[0];
        (void)quant_scales_finite(ty, tt->data, (size_t)tt->n_elements);
        if (n > 4096) continue;
        quant_dequantize_row(ty, tt->data, row, n);
        for (size_t j = 0; j < n; j++) x[j] = (float)(j % 7) - 3.0f;
        quant_prepare_vec(ty, x, xq, n);
        volatile float d = quant_dot(ty, tt->data, xq, n);
        (void)d;
    }
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
    /* the phiDNN loader takes ownership of its own reader */
    struct phidnn *p;
    if (gguf_open_memory(data, size, &g, msg, sizeof msg) == 0 && phidnn_load_gguf(g, &p, msg, sizeof msg) == 0) {
        const struct phidnn_info *in = phidnn_get_info(p);
        bool tiny = in->channels * in->height * in->width <= 64;
        for (int i = 0; i < 3; i++) tiny = tiny && in->r_widths[i] <= 8 && in->c_widths[i] <= 8;
        if (tiny && in->n_classes <= 16) {
            float img[2 * 64], probs[2 * 16], rec[2 * 64], cor[2 * 64];
            for (int i = 0; i < 2 * 64; i++) img[i] = (float)(i % 7) / 6.0f;
            for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
                struct phidnn_job job = {.mode = (enum phidnn_mode)m, .seed = 7, .samples = 2, .n_images = 2,
                                         .images = img, .probs = probs, .recreated = rec, .corrupted = cor};
                (void)phidnn_forward(p, &job);
            }
        }
        phidnn_free(p);
    }
    return 0;
}
