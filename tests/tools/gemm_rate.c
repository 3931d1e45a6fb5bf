/*
 * gemm_rate.c - rate of the gemm kernels (engine/gemm.h) on one matrix shape,
 * next to cblas_sgemm on the same shape and the machine's compute peaks, all
 * in one run (the 2-core VM is shared: compare the ratios, not the figures).
 *
 *   build/tools/gemm_rate [-t THREADS] [-T TOKENS] [--out N] [--in K] [--reps R] [TYPE...]
 *
 * Prints GFLOP/s (2 x T x n_out x n_in per product, best of R) per type; for
 * Q8_0 / Q4_0 also the kernel on the load-time layout (gemm_matmul_r16 on a
 * copy repacked as model.c does), timed in the same alternating loop.
 */
#include "engine/gemm.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/repack.h"
#include "engine/workers.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The path ops_matmul took before the gemm: 256-row blocks dequantised to F32
 * on the pool, then cblas_sgemm on each block (ops.c matmul_gemm). */
struct deq_arg {
    enum quant_type t;
    const char *w;
    size_t rb, n_in, r0, nr;
    float *out;
};

static void deq_worker(void *p, int ith, int nth)
{
    const struct deq_arg *a = p;
    long lo, hi;
    workers_split((long)a->nr, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++)
        quant_dequantize_row(a->t, a->w + (a->r0 + (size_t)r) * a->rb, a->out + (size_t)r * a->n_in, a->n_in);
}

static void old_path(struct workers *pool, enum quant_type t, const char *w, size_t rb, size_t n_in, size_t n_out,
                     const float *x, size_t T, float *y, float *deq)
{
    for (size_t r0 = 0; r0 < n_out; r0 += OPS_DEQ_ROWS) {
        size_t nr = n_out - r0 < OPS_DEQ_ROWS ? n_out - r0 : OPS_DEQ_ROWS;
        struct deq_arg a = {t, w, rb, n_in, r0, nr, deq};
        workers_run(pool, deq_worker, &a);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)n_in, 1.0f, x, (int)n_in, deq,
                    (int)n_in, 0.0f, y + r0, (int)n_out);
    }
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5;
    size_t T = 128, n_out = 5632, n_in = 2048;
    const char *names[16];
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-T") && i + 1 < argc) T = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) n_out = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--in") && i + 1 < argc) n_in = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (n_names < 16) names[n_names++] = argv[i];
    }
    if (!n_names) {
        static const char *def[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K"};
        memcpy(names, def, sizeof def);
        n_names = 6;
    }
    struct workers *pool = workers_create(threads);
    openblas_set_num_threads(threads);
    float *x = malloc(T * n_in * sizeof(float)), *y = malloc(T * n_out * sizeof(float)),
          *wf = malloc(n_out * n_in * sizeof(float));
    for (size_t i = 0; i < T * n_in; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    for (size_t i = 0; i < n_out * n_in; i++) wf[i] = (float)((i * 104729) % 1000) / 5000.0f - 0.1f;
    struct gemm_scratch s = {.act = aligned_alloc(64, (gemm_act_bytes(T, n_in) + 63) / 64 * 64),
                             .panel_stride = gemm_panel_bytes(T, n_in), .n_panels = threads};
    s.panels = aligned_alloc(64, s.panel_stride * (size_t)threads);
    double flop = 2.0 * (double)T * (double)n_out * (double)n_in;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)n_out, (int)n_in, 1.0f, x, (int)n_in, wf,
                    (int)n_in, 0.0f, y, (int)n_out);
        double g = flop / (now_s() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    printf("shape T %zu x out %zu x in %zu, %d threads; cblas_sgemm F32 %.1f GFLOP/s; peaks per thread: fma %.1f GFLOP/s, vnni %.1f Gop/s\n",
           T, n_out, n_in, threads, best, gemm_peak_f32_gflops(0.2), gemm_peak_int8_gops(0.2));
    for (int k = 0; k < n_names; k++) {
        enum quant_type t = QUANT_F32;
        bool found = false;
        for (uint32_t c = 0; c < 40; c++)
            if (quant_type_supported(c) && !strcmp(quant_type_name(c), names[k])) t = (enum quant_type)c, found = true;
        enum quant_isa isa = quant_isa_active(); /* SASERVE_QUANT_ISA=avx2: the AVX2 load-time kernel */
        bool panels = gemm_supported(isa, t) && isa != QUANT_ISA_SCALAR;
        if (!found || (!panels && !gemm_r16_supported(isa, t))) {
            printf("%-6s no gemm kernel\n", names[k]);
            continue;
        }
        size_t rb = quant_row_bytes(t, n_in);
        char *w = malloc(rb * n_out);
        for (size_t r = 0; r < n_out; r++) quant_quantize_row(t, wf + r * n_in, w + r * rb, n_in);
        float *deq = malloc(OPS_DEQ_ROWS * n_in * sizeof(float));
        double bg = 0, bo = 0, br = 0;
        char *wr = NULL;
        if (gemm_r16_supported(isa, t)) {
            wr = malloc(rb * n_out);
            char *tmp = malloc(REPACK_R16_ROWS * rb);
            memcpy(wr, w, rb * n_out);
            repack_r16_matrix(t, wr, rb, n_in, n_out, tmp);
            free(tmp);
        }
        for (int r = 0; r < reps; r++) { /* alternate, so both see the same machine load */
            if (wr) {
                struct gemm_mat m = {.t = t, .data = wr, .row_bytes = rb, .n_out = n_out, .y = y};
                double t0 = now_s();
                gemm_matmul_r16(isa, pool, &m, 1, n_in, x, T, &s);
                double g = flop / (now_s() - t0) * 1e-9;
                br = g > br ? g : br;
            }
            double t0 = now_s(), g;
            if (panels) {
                gemm_matmul(isa, pool, t, w, rb, n_in, n_out, x, T, y, &s);
                g = flop / (now_s() - t0) * 1e-9;
                bg = g > bg ? g : bg;
            }
            t0 = now_s();
            old_path(pool, t, w, rb, n_in, n_out, x, T, y, deq);
            g = flop / (now_s() - t0) * 1e-9;
            bo = g > bo ? g : bo;
        }
        free(deq);
        printf("%-6s %s: gemm %7.1f GFLOP/s = %.2fx sgemm; dequantise + sgemm %7.1f: gemm/old %.2fx", names[k],
               quant_isa_name(isa), bg, bg / best, bo, bg / bo);
        if (wr) printf("; load-time layout %7.1f = %.2fx sgemm, %.2fx the per-call panels, %.2fx old", br, br / best,
                       bg > 0 ? br / bg : 0.0, br / bo);
        printf("\n");
        free(wr);
        free(w);
    }
    free(x);
    free(y);
    free(wf);
    free(s.act);
    free(s.panels);
    workers_destroy(pool);
    return 0;
}
