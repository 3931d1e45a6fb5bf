/*
 * test_gemm.c - the GEMM micro-kernels (engine/gemm.c) and the weight panels
 * (engine/repack.c) against plain-C references.
 *
 *   - repack -> unpack reproduces quant_dequantize_row exactly (equal floats;
 *     a zero may differ in sign) for every row of every panel type (the
 *     padding rows of a short panel are zero);
 *   - every kernel at every ISA level this machine runs (scalar always,
 *     AVX-512 VNNI where built and reported) against a double-precision dot of
 *     the dequantised weight rows, on odd shapes: output rows 1, 7, 16, 17, 33,
 *     token rows 1, 2, 3, 7, 8, 17, 48, K not a multiple of any tile;
 *       float types: |y - ref| <= 1e-5 * sum |w x| (float accumulation), plus
 *       2^-8 * sum |w x| per operand rounded to BF16 where the bf16 kernel runs
 *       (the activations; F16 weights too when GEMM_F16_AS_BF16);
 *       integer types: against the quantised activations (d * q) the same
 *       bound; against the float activations the round-to-nearest bound of the
 *       activation quantisation, sum_b d_b / 2 * sum_{i in b} |w_i|, plus the same;
 *   - the AVX-512 integer kernel equals the scalar one bit for bit (same
 *     integer sums, same float operation order);
 *   - 1 and 2 worker threads give identical results (threads split output
 *     tiles only);
 *   - the load-time layout (repack.h "R16": Q8_0, Q4_0, Q4_K): repacking in
 *     place gives every row back byte for byte; gemm_matmul_r16 at every ISA
 *     this machine runs (scalar; AVX2 for Q8_0/Q4_0; AVX-512 VNNI) against the
 *     same reference and tolerance as the integer kernels above, for token rows
 *     1, 2, 3, 7, 8, 17, 47, 48, output rows 1, 7, 16, 17, 33, 50 and K of 1, 3
 *     and 33 blocks (Q4_K: 1, 3, 5 super-blocks); AVX2 and AVX-512 equal scalar
 *     bit for bit, 1 = 2 threads, each row of a batch equals that row alone,
 *     and several matrices in one call equal each alone.
 */
#include "engine/gemm.h"
#include "engine/quant.h"
#include "engine/repack.h"
#include "engine/workers.h"
#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "tests/test.h"

#include <stdint.h>


static void *xalloc64(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) abort();
    return p;
}

static const enum quant_type types[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8_0, QUANT_Q4_0,
                                        QUANT_IQ4_NL, QUANT_Q4_K, QUANT_IQ4_XS};
#define N_TYPES (sizeof types / sizeof types[0])

/* K values per type: not a multiple of the float kernel's 16 lanes or K chunk,
 * nor of the integer tile's blocks beyond what the type requires. */
static size_t k_list(enum quant_type t, size_t *k)
{
    if (t == QUANT_Q4_K || t == QUANT_IQ4_XS) {
        k[0] = 256, k[1] = 768;
        return 2;
    }
    if (repack_kind_of(t) == REPACK_Q8) {
        k[0] = 32, k[1] = 96, k[2] = 1056;
        return 3;
    }
    k[0] = 1, k[1] = 40, k[2] = 1047;
    return 3;
}

/* A random matrix of type t: n_out rows of n_in, per-row scales that vary. */
static void *make_weights(enum quant_type t, size_t n_out, size_t n_in, size_t *row_bytes)
{
    *row_bytes = quant_row_bytes(t, n_in);
    char *w = xmalloc(*row_bytes * n_out); /* exact size: ASan catches over-reads */
    float *tmp = xmalloc(n_in * sizeof(float));
    for (size_t r = 0; r < n_out; r++) {
        float sc = (r % 3 == 0) ? 0.01f : (r % 3 == 1) ? 1.0f : 7.0f;
        for (size_t i = 0; i < n_in; i++) tmp[i] = rndf() * sc;
        quant_quantize_row(t, tmp, w + r * *row_bytes, n_in);
    }
    free(tmp);
    return w;
}

static void test_repack_round_trip(void)
{
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        enum quant_type t = types[ti];
        size_t ks[3], nk = k_list(t, ks);
        for (size_t ki = 0; ki < nk; ki++) {
            size_t n_in = ks[ki], n_out = 21, rb;
            void *w = make_weights(t, n_out, n_in, &rb);
            void *panel = xalloc64(repack_panel_bytes(t, n_in));
            float *a = xmalloc(n_in * sizeof(float)), *b = xmalloc(n_in * sizeof(float));
            int bad = 0;
            for (size_t r0 = 0; r0 < n_out; r0 += REPACK_ROWS) {
                size_t nr = n_out - r0 < REPACK_ROWS ? n_out - r0 : REPACK_ROWS;
                repack_panel(t, w, rb, n_in, r0, nr, panel);
                for (int r = 0; r < REPACK_ROWS; r++) {
                    repack_unpack_row(t, panel, n_in, r, a);
                    if ((size_t)r < nr)
                        quant_dequantize_row(t, (const char *)w + (r0 + (size_t)r) * rb, b, n_in);
                    else
                        memset(b, 0, n_in * sizeof(float));
                    bool same = true; /* equal values (+0 and -0 alike: ggml's (q - 8) * d is -0 for d < 0) */
                    for (size_t i = 0; i < n_in; i++) same = same && a[i] == b[i];
                    if (!same && bad++ < 3)
                        TEST_FAIL_("%s n_in %zu row %zu: unpacked panel differs from quant_dequantize_row",
                                   quant_type_name(t), n_in, r0 + (size_t)r);
                }
            }
            free(a);
            free(b);
            free(panel);
            free(w);
        }
    }
}

static bool g_no_amx; /* the float types through the FMA kernel even where AMX runs */

/* y from gemm_matmul at isa with a pool of n_threads. */
static float *run_gemm(enum quant_isa isa, int n_threads, enum quant_type t, const void *w, size_t rb, size_t n_in,
                       size_t n_out, const float *x, size_t T)
{
    struct workers *pool = workers_create(n_threads);
    if (!pool) abort();
    struct gemm_scratch s = {.act = xalloc64(gemm_act_bytes(T, n_in)), .panel_stride = gemm_panel_bytes(T, n_in),
                             .n_panels = n_threads, .no_amx = g_no_amx};
    s.panels = xalloc64(s.panel_stride * (size_t)n_threads);
    float *y = xmalloc(T * n_out * sizeof(float));
    for (size_t i = 0; i < T * n_out; i++) y[i] = NAN; /* every output must be written */
    gemm_matmul(isa, pool, t, w, rb, n_in, n_out, x, T, y, &s);
    free(s.act);
    free(s.panels);
    workers_destroy(pool);
    return y;
}

/* y [T][n_out] against the double-precision reference on the dequantised rows of
 * the plain matrix w (tolerances in the header comment); *bad counts failures. */
static void check_ref(enum quant_type t, enum quant_isa isa, const void *w, size_t rb, size_t n_in, size_t n_out,
                      const float *x, size_t T, const float *y, int *bad_)
{
    /* the integer kernels (per-call panels, and Q6_K's load-time layout) quantise x per block of 32 */
    bool q8 = repack_kind_of(t) == REPACK_Q8 || t == QUANT_Q5_K || t == QUANT_Q6_K, amx = gemm_uses_amx(isa, t, &(struct gemm_scratch){.no_amx = g_no_amx});
    int bad = *bad_;
    float *row = xmalloc(n_in * sizeof(float)), *xq = xmalloc(n_in * sizeof(float));
    int8_t *q = xmalloc(n_in);
    size_t nb = n_in / 32 ? n_in / 32 : 1;
    float *d = xmalloc(nb * sizeof(float)), *a = xmalloc(nb * sizeof(float));
    for (size_t tt = 0; tt < T; tt++) {
        const float *xt = x + tt * n_in;
        if (q8) {
            gemm_quantize_act(xt, n_in, q, d, a);
            for (size_t i = 0; i < n_in; i++) xq[i] = d[i / 32] * (float)q[i];
        }
        for (size_t r = 0; r < n_out; r++) {
            quant_dequantize_row(t, (const char *)w + r * rb, row, n_in);
            double ref = 0, refq = 0, mag = 0, qbound = 0;
            for (size_t i = 0; i < n_in; i++) {
                ref += (double)row[i] * xt[i];
                mag += fabs((double)row[i] * xt[i]);
                if (q8) {
                    refq += (double)row[i] * xq[i];
                    qbound += fabs((double)row[i]) * d[i / 32] * 0.5;
                }
            }
            double got = y[tt * n_out + r], tol = 1e-5 * mag + 1e-6;
            /* the bf16 kernel rounds x (and F16 weights) to 8 significant bits: 2^-8 each */
            if (amx)
                tol += 0x1p-17 * mag; /* the two-term BF16 split (gemm.h) */
            else if (gemm_uses_bf16(isa, t))
                tol += (t == QUANT_F16 ? 2.0 : 1.0) * 0x1p-8 * mag;
            if (q8) {
                if (!(fabs(got - refq) <= tol + 1e-5 * qbound) && bad++ < 3)
                    TEST_FAIL_("%s %s T %zu n_out %zu n_in %zu y[%zu][%zu] = %.9g, ref (quantised x) %.9g",
                               quant_type_name(t), quant_isa_name(isa), T, n_out, n_in, tt, r, got, refq);
                tol += qbound * 1.0001;
            }
            if (!(fabs(got - ref) <= tol) && bad++ < 3)
                TEST_FAIL_("%s %s T %zu n_out %zu n_in %zu y[%zu][%zu] = %.9g, ref %.9g (tol %.3g)",
                           quant_type_name(t), quant_isa_name(isa), T, n_out, n_in, tt, r, got, ref, tol);
        }
    }
    free(row);
    free(xq);
    free(q);
    free(d);
    free(a);
    *bad_ = bad;
}

static const size_t out_list[] = {1, 7, 16, 17, 33};
static const size_t tok_list[] = {1, 2, 3, 7, 8, 17, 48};

static void check_type(enum quant_type t, enum quant_isa isa)
{
    size_t ks[3], nk = k_list(t, ks);
    bool q8 = repack_kind_of(t) == REPACK_Q8;
    int bad = 0;
    for (size_t ki = 0; ki < nk; ki++)
        for (size_t oi = 0; oi < sizeof out_list / sizeof out_list[0]; oi++)
            for (size_t ti = 0; ti < sizeof tok_list / sizeof tok_list[0]; ti++) {
                size_t n_in = ks[ki], n_out = out_list[oi], T = tok_list[ti], rb;
                if (n_in > 256 && (T > 8 || n_out > 17)) continue; /* keep the test fast under ASan */
                void *w = make_weights(t, n_out, n_in, &rb);
                float *x = xmalloc(T * n_in * sizeof(float));
                for (size_t i = 0; i < T * n_in; i++) x[i] = rndf() * ((i / 32) % 5 == 0 ? 10.0f : 1.0f);
                float *y = run_gemm(isa, 2, t, w, rb, n_in, n_out, x, T);
                float *y1 = run_gemm(isa, 1, t, w, rb, n_in, n_out, x, T);
                if (memcmp(y, y1, T * n_out * sizeof(float)) != 0 && bad++ < 3)
                    TEST_FAIL_("%s %s: 1 and 2 threads differ (T %zu n_out %zu n_in %zu)", quant_type_name(t),
                               quant_isa_name(isa), T, n_out, n_in);
                if (q8 && isa != QUANT_ISA_SCALAR) {
                    float *ys = run_gemm(QUANT_ISA_SCALAR, 1, t, w, rb, n_in, n_out, x, T);
                    if (memcmp(y, ys, T * n_out * sizeof(float)) != 0 && bad++ < 3)
                        TEST_FAIL_("%s: AVX-512 integer kernel differs from the scalar one (T %zu n_out %zu n_in %zu)",
                                   quant_type_name(t), T, n_out, n_in);
                    free(ys);
                }
                check_ref(t, isa, w, rb, n_in, n_out, x, T, y, &bad);
                free(y);
                free(y1);
                free(x);
                free(w);
            }
}

static void test_kernels_scalar(void)
{
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        ASSERT_TRUE(gemm_supported(QUANT_ISA_SCALAR, types[ti]));
        check_type(types[ti], QUANT_ISA_SCALAR);
    }
}

static void test_kernels_avx512(void)
{
    if (!gemm_supported(QUANT_ISA_AVX512, QUANT_Q8_0)) {
        fprintf(stderr, "  (AVX-512 VNNI gemm not built or not reported by this CPU: skipped)\n");
        return;
    }
    for (size_t ti = 0; ti < N_TYPES; ti++) check_type(types[ti], QUANT_ISA_AVX512);
}

/* F16 / BF16 through the AMX tile kernel (the AVX-512 run above used it where
 * available) and through the FMA kernel with AMX turned off in the scratch. */
static void test_kernels_amx(void)
{
    struct gemm_scratch sc = {0};
    if (!gemm_uses_amx(QUANT_ISA_AVX512, QUANT_F16, &sc)) {
        fprintf(stderr, "  (AMX-BF16 not built, not reported or not granted: the FMA kernel only)\n");
        return;
    }
    sc.no_amx = true;
    ASSERT_TRUE(!gemm_uses_amx(QUANT_ISA_AVX512, QUANT_F16, &sc));
    ASSERT_TRUE(!gemm_uses_amx(QUANT_ISA_SCALAR, QUANT_F16, &(struct gemm_scratch){0}));
    ASSERT_TRUE(!gemm_uses_amx(QUANT_ISA_AVX512, QUANT_F32, &(struct gemm_scratch){0}));
    /* shapes past one thread block (128 rows), one K chunk (256) and one 32-token square */
    static const size_t shapes[][3] = {{161, 600, 49}, {128, 256, 32}, {300, 96, 65}};
    const enum quant_type ft[2] = {QUANT_F16, QUANT_BF16};
    int bad = 0;
    for (int ti = 0; ti < 2; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            size_t n_out = shapes[si][0], n_in = shapes[si][1], T = shapes[si][2], rb;
            void *w = make_weights(ft[ti], n_out, n_in, &rb);
            float *x = xmalloc(T * n_in * sizeof(float));
            for (size_t i = 0; i < T * n_in; i++) x[i] = rndf() * ((i / 32) % 5 == 0 ? 10.0f : 1.0f);
            float *y = run_gemm(QUANT_ISA_AVX512, 2, ft[ti], w, rb, n_in, n_out, x, T);
            check_ref(ft[ti], QUANT_ISA_AVX512, w, rb, n_in, n_out, x, T, y, &bad);
            for (size_t t = 0; t < T; t += 16) { /* a row alone = that row in the batch, bit for bit */
                float *y1 = run_gemm(QUANT_ISA_AVX512, 1, ft[ti], w, rb, n_in, n_out, x + t * n_in, 1);
                if (memcmp(y1, y + t * n_out, n_out * sizeof(float)) != 0 && bad++ < 3)
                    TEST_FAIL_("%s AMX: token %zu alone differs from the batch of %zu", quant_type_name(ft[ti]), t, T);
                free(y1);
            }
            free(y);
            free(x);
            free(w);
        }
    g_no_amx = true;
    check_type(QUANT_F16, QUANT_ISA_AVX512);
    check_type(QUANT_BF16, QUANT_ISA_AVX512);
    g_no_amx = false;
}

static void test_unsupported(void)
{
    ASSERT_TRUE(!gemm_supported(QUANT_ISA_SCALAR, QUANT_Q6_K));
    ASSERT_TRUE(!gemm_supported(QUANT_ISA_AVX512, QUANT_Q2_K));
    ASSERT_EQ(repack_panel_bytes(QUANT_Q3_K, 256), 0);
    ASSERT_TRUE(!gemm_supported(QUANT_ISA_AVX2, QUANT_Q8_0)); /* no AVX2 gemm: ops keeps the old paths */
}

/* ---- the load-time layout (repack.h "R16", gemm_matmul_r16) ---- */

static const enum quant_type r16_types[] = {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K};
#define N_R16 (sizeof r16_types / sizeof r16_types[0])

/* K per type: one block and more, not a multiple of the tile's 8 tokens x 16 rows */
static const size_t *r16_ks(enum quant_type t)
{
    static const size_t k32[3] = {32, 96, 1056}, k256[3] = {256, 768, 1280};
    return t == QUANT_Q4_K || t == QUANT_Q5_K || t == QUANT_Q6_K ? k256 : k32;
}

/* A copy of plain matrix w with its full groups repacked in place, as model.c does. */
static void *r16_copy(enum quant_type t, const void *w, size_t rb, size_t n_in, size_t n_out)
{
    char *c = xmalloc(rb * n_out), *tmp = xmalloc(REPACK_R16_ROWS * rb);
    memcpy(c, w, rb * n_out);
    repack_r16_matrix(t, c, rb, n_in, n_out, tmp);
    free(tmp);
    return c;
}

/* Repacking is a rearrangement: every row comes back byte for byte, the tail rows
 * are untouched, a short group's padding rows have scale 0, and the matrix is
 * exactly as large as before (in place). */
static void test_r16_round_trip(void)
{
    for (size_t ti = 0; ti < N_R16; ti++) {
        enum quant_type t = r16_types[ti];
        const size_t *ks = r16_ks(t);
        static const size_t outs[] = {1, 15, 16, 33, 50};
        for (size_t ki = 0; ki < 3; ki++)
            for (size_t oi = 0; oi < 5; oi++) {
                size_t n_in = ks[ki], n_out = outs[oi], rb;
                char *w = make_weights(t, n_out, n_in, &rb);
                char *c = r16_copy(t, w, rb, n_in, n_out), *row = xmalloc(rb), *grp = xmalloc(REPACK_R16_ROWS * rb);
                size_t full = n_out - n_out % REPACK_R16_ROWS;
                for (size_t r = 0; r < n_out; r++) {
                    if (r < full)
                        repack_r16_unpack_row(t, c + (r - r % 16) * rb, n_in, (int)(r % 16), row);
                    else
                        memcpy(row, c + r * rb, rb);
                    if (memcmp(row, w + r * rb, rb) != 0)
                        TEST_FAIL_("%s n_in %zu n_out %zu: row %zu not restored", quant_type_name(t), n_in, n_out, r);
                }
                if (full < n_out) { /* the per-call group of the tail: rows back, padding scales 0 */
                    size_t nr = n_out - full;
                    repack_r16_group(t, w, rb, n_in, full, nr, grp);
                    for (size_t r = 0; r < 16; r++) {
                        repack_r16_unpack_row(t, grp, n_in, (int)r, row);
                        if (r < nr)
                            ASSERT_TRUE(memcmp(row, w + (full + r) * rb, rb) == 0);
                        else
                            for (size_t b = 0, nblk = n_in / (t == QUANT_Q4_K ? 256 : 32); b < nblk; b++)
                                ASSERT_EQ(*(uint16_t *)(void *)(row + b * (rb / nblk)), 0); /* d (Q4_K: then dmin) */
                    }
                }
                free(grp);
                free(row);
                free(c);
                free(w);
            }
    }
}

static struct workers *r16_pools[3]; /* by thread count, made once: thread start-up is slow on a loaded VM */

static struct workers *r16_pool(int n_threads)
{
    if (!r16_pools[n_threads] && !(r16_pools[n_threads] = workers_create(n_threads))) abort();
    return r16_pools[n_threads];
}

static float *run_r16_amx(enum quant_isa isa, int n_threads, enum quant_type t, const void *wr, size_t rb,
                          size_t n_in, size_t n_out, const float *x, size_t T, bool no_amx)
{
    struct workers *pool = r16_pool(n_threads);
    struct gemm_scratch s = {.act = xalloc64(gemm_act_bytes(T, n_in)), .panel_stride = gemm_panel_bytes(T, n_in),
                             .n_panels = n_threads, .no_amx = no_amx};
    s.panels = xalloc64(s.panel_stride * (size_t)n_threads);
    float *y = xmalloc(T * n_out * sizeof(float));
    for (size_t i = 0; i < T * n_out; i++) y[i] = NAN; /* every output must be written */
    struct gemm_mat m = {.t = t, .data = wr, .row_bytes = rb, .n_out = n_out, .y = y};
    gemm_matmul_r16(isa, pool, &m, 1, n_in, x, T, &s);
    free(s.act);
    free(s.panels);
    return y;
}

static float *run_r16(enum quant_isa isa, int n_threads, enum quant_type t, const void *wr, size_t rb, size_t n_in,
                      size_t n_out, const float *x, size_t T)
{
    return run_r16_amx(isa, n_threads, t, wr, rb, n_in, n_out, x, T, false);
}

/* Every kernel on the load-time layout against the plain-C reference (the same
 * tolerance as the per-call panels: the activation quantisation bound plus 1e-5
 * relative), for row counts 1 ... 47 (decode) and 48 (a prefill chunk), n_out not
 * a multiple of 16, K not a multiple of the 8-token x 16-row tile's blocks; the
 * AVX2 and AVX-512 kernels equal the scalar one bit for bit; 1 and 2 threads agree; each
 * row of a batch equals that row alone (batched = alone). At AVX-512, 16 rows
 * or more run on AMX-INT8 where the CPU has it (17, 33, 47, 48: one to three
 * 16-token tiles, most with a padded last one); those also equal the VNNI
 * kernel run with no_amx, bit for bit. */
static void check_r16(enum quant_type t, enum quant_isa isa)
{
    const size_t *ks = r16_ks(t);
    static const size_t outs[] = {1, 7, 16, 17, 33, 50}, toks[] = {1, 2, 3, 7, 8, 17, 33, 47, 48};
    int bad = 0, n_amx = 0;
    for (size_t ki = 0; ki < 3; ki++)
        for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; oi++)
            for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
                size_t n_in = ks[ki], n_out = outs[oi], T = toks[ti], rb;
                /* the longest K on fewer shapes: keeps the test fast under ASan */
                if (n_in > 768 && ((T != 1 && T != 3 && T != 8 && T != 47) || (n_out != 1 && n_out != 17 && n_out != 50)))
                    continue;
                void *w = make_weights(t, n_out, n_in, &rb), *wr = r16_copy(t, w, rb, n_in, n_out);
                float *x = xmalloc(T * n_in * sizeof(float));
                for (size_t i = 0; i < T * n_in; i++) x[i] = rndf() * ((i / 32) % 5 == 0 ? 10.0f : 1.0f);
                float *y = run_r16(isa, 2, t, wr, rb, n_in, n_out, x, T);
                float *y1 = run_r16(isa, 1, t, wr, rb, n_in, n_out, x, T);
                if (memcmp(y, y1, T * n_out * sizeof(float)) != 0 && bad++ < 3)
                    TEST_FAIL_("r16 %s %s: 1 and 2 threads differ (T %zu n_out %zu n_in %zu)", quant_type_name(t),
                               quant_isa_name(isa), T, n_out, n_in);
                if (isa != QUANT_ISA_SCALAR) {
                    float *ys = run_r16(QUANT_ISA_SCALAR, 1, t, wr, rb, n_in, n_out, x, T);
                    if (memcmp(y, ys, T * n_out * sizeof(float)) != 0 && bad++ < 3)
                        TEST_FAIL_("r16 %s: the %s kernel differs from the scalar one (T %zu n_out %zu n_in %zu)",
                                   quant_type_name(t), quant_isa_name(isa), T, n_out, n_in);
                    free(ys);
                }
                struct gemm_scratch probe = {.no_amx = false};
                if (gemm_r16_uses_amx(isa, t, T, &probe)) {
                    float *yv = run_r16_amx(isa, 2, t, wr, rb, n_in, n_out, x, T, true);
                    if (memcmp(y, yv, T * n_out * sizeof(float)) != 0 && bad++ < 3)
                        TEST_FAIL_("r16 %s: AMX-INT8 differs from the VNNI kernel (T %zu n_out %zu n_in %zu)",
                                   quant_type_name(t), T, n_out, n_in);
                    free(yv);
                    n_amx++;
                }
                if (T > 1 && T < 48) /* batched = alone, bit for bit */
                    for (size_t tt = 0; tt < T; tt += T / 3 + 1) {
                        float *ya = run_r16(isa, 2, t, wr, rb, n_in, n_out, x + tt * n_in, 1);
                        if (memcmp(ya, y + tt * n_out, n_out * sizeof(float)) != 0 && bad++ < 3)
                            TEST_FAIL_("r16 %s %s: row %zu of %zu differs from that row alone (n_out %zu n_in %zu)",
                                       quant_type_name(t), quant_isa_name(isa), tt, T, n_out, n_in);
                        free(ya);
                    }
                check_ref(t, isa, w, rb, n_in, n_out, x, T, y, &bad);
                free(y);
                free(y1);
                free(x);
                free(wr);
                free(w);
            }
    if (isa == QUANT_ISA_AVX512)
        fprintf(stderr, "  r16 %s: %d shapes on AMX-INT8%s\n", quant_type_name(t), n_amx,
                t == QUANT_Q6_K ? " (Q6_K: the VNNI tile at every row count)"
                : n_amx         ? ""
                                : " (the CPU lacks it, or SASERVE_AMX=off)");
}

static void test_r16_kernels(void)
{
    for (size_t ti = 0; ti < N_R16; ti++) {
        ASSERT_TRUE(gemm_r16_supported(QUANT_ISA_SCALAR, r16_types[ti]));
        check_r16(r16_types[ti], QUANT_ISA_SCALAR);
        const enum quant_isa isas[2] = {QUANT_ISA_AVX2, QUANT_ISA_AVX512};
        for (int i = 0; i < 2; i++)
            if (gemm_r16_supported(isas[i], r16_types[ti]))
                check_r16(r16_types[ti], isas[i]);
            else
                fprintf(stderr, "  (r16 %s: no %s kernel built, or the CPU lacks it: skipped)\n",
                        quant_type_name(r16_types[ti]), quant_isa_name(isas[i]));
    }
    ASSERT_TRUE(!gemm_r16_supported(QUANT_ISA_SCALAR, QUANT_IQ4_NL));
}

/* Several matrices in one call (Q/K/V, gate/up) give what each gives alone
 * (T rows: the VNNI tile at 3, AMX-INT8 where the CPU has it at 20). */
static void r16_many(size_t T)
{
    size_t n_in = 96, outs[3] = {33, 16, 7}, rb[3];
    enum quant_type ts[3] = {QUANT_Q4_0, QUANT_Q8_0, QUANT_Q4_0};
    enum quant_isa isa = gemm_r16_supported(QUANT_ISA_AVX512, QUANT_Q4_0) ? QUANT_ISA_AVX512 : QUANT_ISA_SCALAR;
    void *w[3], *wr[3];
    float *y[3], *x = xmalloc(T * n_in * sizeof(float));
    for (size_t i = 0; i < T * n_in; i++) x[i] = rndf();
    struct gemm_mat ms[3];
    for (int i = 0; i < 3; i++) {
        w[i] = make_weights(ts[i], outs[i], n_in, &rb[i]);
        wr[i] = r16_copy(ts[i], w[i], rb[i], n_in, outs[i]);
        y[i] = xmalloc(T * outs[i] * sizeof(float));
        ms[i] = (struct gemm_mat){.t = ts[i], .data = wr[i], .row_bytes = rb[i], .n_out = outs[i], .y = y[i]};
    }
    struct workers *pool = r16_pool(2);
    struct gemm_scratch s = {.act = xalloc64(gemm_act_bytes(T, n_in)), .panel_stride = gemm_panel_bytes(T, n_in),
                             .n_panels = 2};
    s.panels = xalloc64(s.panel_stride * 2);
    gemm_matmul_r16(isa, pool, ms, 3, n_in, x, T, &s);
    for (int i = 0; i < 3; i++) {
        float *ya = run_r16(isa, 2, ts[i], wr[i], rb[i], n_in, outs[i], x, T);
        ASSERT_TRUE(memcmp(ya, y[i], T * outs[i] * sizeof(float)) == 0);
        free(ya);
        free(y[i]);
        free(wr[i]);
        free(w[i]);
    }
    free(s.act);
    free(s.panels);
    free(x);
}

static void test_r16_many(void)
{
    r16_many(3);
    r16_many(20);
}

/* The activation quantisation: round to nearest, |q| <= 127, a = d * sum q. */
static void test_quantize_act(void)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = i < 32 ? rndf() * 3 : 0.0f;
    int8_t q[64];
    float d[2], a[2];
    gemm_quantize_act(x, 64, q, d, a);
    int sum = 0;
    for (int i = 0; i < 32; i++) {
        ASSERT_TRUE(q[i] >= -127 && q[i] <= 127);
        ASSERT_NEAR(d[0] * q[i], x[i], d[0] * 0.5f * 1.0001f);
        sum += q[i];
    }
    ASSERT_NEAR(a[0], d[0] * (float)sum, 0);
    ASSERT_NEAR(d[1], 0, 0); /* an all-zero block */
    ASSERT_NEAR(a[1], 0, 0);
}

int main(void)
{
    fprintf(stderr, "gemm: quant ISA max %s\n", quant_isa_name(quant_isa_max()));
    TEST_RUN(test_quantize_act);
    TEST_RUN(test_repack_round_trip);
    TEST_RUN(test_unsupported);
    TEST_RUN(test_kernels_scalar);
    TEST_RUN(test_kernels_avx512);
    TEST_RUN(test_kernels_amx);
    TEST_RUN(test_r16_round_trip);
    TEST_RUN(test_r16_kernels);
    TEST_RUN(test_r16_many);
    for (int i = 0; i < 3; i++) workers_destroy(r16_pools[i]);
    fprintf(stderr, "%d passed, %d failed\n", test_passed_, test_failed_);
    return test_failures_ ? 1 : 0;
}
