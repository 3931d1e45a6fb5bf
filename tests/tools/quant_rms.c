/*
 * quant_rms - RMS quantisation error of our quantisers against llama.cpp's,
 * on the same F32 weights.
 *
 *   quant_rms [KQUANT_DIR]      (default $SHARED/models/kquant, SHARED default ../shared)
 *
 * For each llama.cpp file of the conformance set (KQUANT_DIR/<name>.gguf,
 * quantised by llama-quantize from tiny-f32.gguf), every tensor it holds in a
 * quantised type is quantised from tiny-f32.gguf's F32 values by
 * quant_quantize_row to the same type and dequantised; the RMS error over all
 * those weights is printed next to the RMS error of llama.cpp's dequantised
 * copy (ref/<name>.deq-f32.gguf), and their ratio. Then our Q8_0 and Q4_0
 * (no llama.cpp file in the set: our figure only). Exit 0, or 1 if a file is
 * missing or a ratio is above 1.05 (the bound test_kquant checks too).
 */
#include "engine/gguf.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const files[] = {"tiny-pure-Q2_K", "tiny-pure-Q3_K", "tiny-pure-Q4_K", "tiny-pure-Q5_K",
                                    "tiny-pure-Q6_K", "tiny-pure-IQ4_NL", "tiny-pure-IQ4_XS", "tiny-mix-Q4_K_M",
                                    "tiny-mix-Q5_K_M", "tiny-mix-Q6_K"};

/* RMS error of our quantisation of src's tensors to the types of g (or to
 * `pure` for every 2-D tensor when g is NULL); theirs from ref if non-NULL. */
static int rms(const struct gguf *src, const struct gguf *g, const struct gguf *ref, enum quant_type pure,
               double *ours, double *theirs)
{
    double so = 0, st = 0;
    size_t count = 0;
    const struct gguf *walk = g ? g : src;
    for (uint64_t i = 0; i < gguf_n_tensors(walk); i++) {
        const struct gguf_tensor *t = gguf_tensor(walk, i);
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.data);
        enum quant_type ty = g ? (enum quant_type)t->type : (t->n_dims == 2 ? pure : QUANT_F32);
        if (ty == QUANT_F32) continue;
        const struct gguf_tensor *ts = gguf_find_tensor(src, nm), *tr = ref ? gguf_find_tensor(ref, nm) : NULL;
        if (!ts || ts->type != QUANT_F32 || (ref && !tr)) {
            fprintf(stderr, "quant_rms: %s: not F32 in the source or missing in the reference\n", nm);
            return -1;
        }
        size_t n = (size_t)ts->n_elements;
        void *q = malloc(quant_row_bytes(ty, n));
        float *back = malloc(n * sizeof(float));
        if (!q || !back) return -1;
        const float *x = ts->data;
        quant_quantize_row(ty, x, q, n);
        quant_dequantize_row(ty, q, back, n);
        for (size_t k = 0; k < n; k++) {
            so += ((double)back[k] - x[k]) * ((double)back[k] - x[k]);
            if (tr) st += ((double)((const float *)tr->data)[k] - x[k]) * ((double)((const float *)tr->data)[k] - x[k]);
        }
        count += n;
        free(q);
        free(back);
    }
    *ours = sqrt(so / (double)(count ? count : 1));
    *theirs = sqrt(st / (double)(count ? count : 1));
    return 0;
}

int main(int argc, char **argv)
{
    char dir[512], p[700], r[700], msg[256];
    const char *shared = getenv("SHARED");
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else
        snprintf(dir, sizeof dir, "%s/models/kquant", shared && *shared ? shared : "../shared");
    snprintf(p, sizeof p, "%s/tiny-f32.gguf", dir);
    struct gguf *src = NULL;
    if (gguf_open_file(p, &src, msg, sizeof msg)) {
        fprintf(stderr, "quant_rms: %s: %s\n", p, msg);
        return 1;
    }
    int bad = 0;
    printf("| file | ours RMS | llama.cpp RMS | ratio |\n|---|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct gguf *g = NULL, *gr = NULL;
        snprintf(p, sizeof p, "%s/%s.gguf", dir, files[i]);
        snprintf(r, sizeof r, "%s/ref/%s.deq-f32.gguf", dir, files[i]);
        double ours, theirs;
        if (gguf_open_file(p, &g, msg, sizeof msg) || gguf_open_file(r, &gr, msg, sizeof msg) ||
            rms(src, g, gr, QUANT_F32, &ours, &theirs)) {
            fprintf(stderr, "quant_rms: %s: %s\n", files[i], msg);
            bad = 1;
        } else {
            printf("| %s | %.6f | %.6f | %.4f |\n", files[i], ours, theirs, ours / theirs);
            if (!(ours <= 1.05 * theirs)) bad = 1;
        }
        gguf_close(g);
        gguf_close(gr);
    }
    static const enum quant_type ours_only[] = {QUANT_Q8_0, QUANT_Q4_0};
    for (size_t i = 0; i < 2; i++) {
        double ours, theirs;
        if (rms(src, NULL, NULL, ours_only[i], &ours, &theirs) == 0)
            printf("| (all 2-D weights) %s | %.6f | - | - |\n", quant_type_name(ours_only[i]), ours);
    }
    gguf_close(src);
    return bad;
}
