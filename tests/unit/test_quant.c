/*
 * test_quant.c - element types: conversions, quantise/dequantise bounds, and
 * the optimised dot kernels against the plain-C references and against a
 * double-precision dot of the dequantised operands.
 */
#include "engine/quant.h"
#define TEST_RNG_SEED 0x853c49e6748fea9bull
#include "tests/test.h"

#include <float.h>
#include <stdint.h>

static const enum quant_type all_types[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8_0, QUANT_Q4_0};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* lengths tried for every type; odd ones only for the element-wise types */
static const size_t block_lens[] = {32, 64, 96, 4096, 4128};
static const size_t odd_lens[] = {1, 7, 15, 17, 33, 37, 4097};

static bool is_block(enum quant_type t) { return t == QUANT_Q8_0 || t == QUANT_Q4_0; }

/* ---------------------------------------------------------------- data */


/* Random vector; mode 0: uniform [-1,1); mode 1: per-32-block scales from
 * 1e-3 to 30 (exercises the per-block scale); mode 2: mostly small values
 * with rare outliers. */
static void fill(float *x, size_t n, int mode)
{
    for (size_t i = 0; i < n; i++) {
        float v = rndf();
        if (mode == 1) {
            static const float scales[] = {1e-3f, 0.1f, 1.0f, 30.0f};
            v *= scales[(i / 32) % 4];
        } else if (mode == 2) {
            v *= (rnd32() % 97 == 0) ? 20.0f : 0.05f;
        }
        x[i] = v;
    }
}


/* ---------------------------------------------------------------- metadata */

static void test_type_table(void)
{
    ASSERT_TRUE(quant_type_supported(QUANT_F32));
    ASSERT_TRUE(quant_type_supported(QUANT_F16));
    ASSERT_TRUE(quant_type_supported(QUANT_BF16));
    ASSERT_TRUE(quant_type_supported(QUANT_Q8_0));
    ASSERT_TRUE(quant_type_supported(QUANT_Q4_0));
    const uint32_t unsupported[] = {3, 6, 7, 15, 16, 21, 29, 31, 999, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        ASSERT_TRUE(!quant_type_supported(unsupported[i]));
    ASSERT_EQ(sizeof(struct quant_block_q8_0), 34);
    ASSERT_EQ(sizeof(struct quant_block_q4_0), 18);
    ASSERT_EQ(quant_block_size(QUANT_F32), 1);
    ASSERT_EQ(quant_block_size(QUANT_BF16), 1);
    ASSERT_EQ(quant_block_size(QUANT_Q8_0), 32);
    ASSERT_EQ(quant_block_size(QUANT_Q4_0), 32);
    ASSERT_EQ(quant_block_bytes(QUANT_F32), 4);
    ASSERT_EQ(quant_block_bytes(QUANT_F16), 2);
    ASSERT_EQ(quant_block_bytes(QUANT_BF16), 2);
    ASSERT_EQ(quant_block_bytes(QUANT_Q8_0), 34);
    ASSERT_EQ(quant_block_bytes(QUANT_Q4_0), 18);
    ASSERT_EQ(quant_row_bytes(QUANT_F32, 37), 148);
    ASSERT_EQ(quant_row_bytes(QUANT_F16, 37), 74);
    ASSERT_EQ(quant_row_bytes(QUANT_Q8_0, 4096), 128 * 34);
    ASSERT_EQ(quant_row_bytes(QUANT_Q4_0, 4096), 128 * 18);
    ASSERT_EQ(quant_vec_dot_type(QUANT_F32), QUANT_F32);
    ASSERT_EQ(quant_vec_dot_type(QUANT_F16), QUANT_F32);
    ASSERT_EQ(quant_vec_dot_type(QUANT_BF16), QUANT_F32);
    ASSERT_EQ(quant_vec_dot_type(QUANT_Q8_0), QUANT_Q8_0);
    ASSERT_EQ(quant_vec_dot_type(QUANT_Q4_0), QUANT_Q8_0);
    ASSERT_EQ(quant_vec_bytes(QUANT_F16, 64), 256);
    ASSERT_EQ(quant_vec_bytes(QUANT_Q4_0, 64), 68);
    ASSERT_STR_EQ(quant_type_name(QUANT_Q4_0), "Q4_0");
    ASSERT_STR_EQ(quant_type_name(QUANT_BF16), "BF16");
    ASSERT_STR_EQ(quant_type_name(12), "Q4_K");
    ASSERT_STR_EQ(quant_type_name(999), "unknown");
}

/* ---------------------------------------------------------------- scalar conversions */

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_f16_known_values(void)
{
    const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3C00},
        {-2.0f, 0xC000},
        {0.5f, 0x3800},
        {65504.0f, 0x7BFF},                /* largest finite */
        {-65504.0f, 0xFBFF},
        {0.099975586f, 0x2E66},            /* nearest f16 to 0.1 */
        {6.103515625e-05f, 0x0400},        /* 2^-14, smallest normal */
        {6.097555160522461e-05f, 0x03FF},  /* largest subnormal */
        {5.960464477539063e-08f, 0x0001},  /* 2^-24, smallest subnormal */
        {-5.960464477539063e-08f, 0x8001},
        {1.1920928955078125e-07f, 0x0002}, /* 2^-23 */
        {INFINITY, 0x7C00},
        {-INFINITY, 0xFC00},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = quant_f32_to_f16(cases[i].f);
        if (h != cases[i].h) TEST_FAIL_("f32_to_f16(%.9g) = 0x%04X, want 0x%04X", cases[i].f, h, cases[i].h);
        float back = quant_f16_to_f32(cases[i].h);
        if (fbits(back) != fbits(cases[i].f))
            TEST_FAIL_("f16_to_f32(0x%04X) = %.9g, want %.9g", cases[i].h, back, cases[i].f);
    }
    /* rounding: nearest, ties to even, overflow, underflow */
    const struct {
        float f;
        uint16_t h;
    } rnd[] = {
        {1.0f + 0x1p-11f, 0x3C00},         /* tie -> even (down) */
        {1.0f + 3 * 0x1p-11f, 0x3C02},     /* tie -> even (up) */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3C01}, /* just above the tie */
        {65519.0f, 0x7BFF},                /* below the overflow tie */
        {65520.0f, 0x7C00},                /* tie between 65504 and 2^16 -> inf */
        {1e6f, 0x7C00},
        {-1e6f, 0xFC00},
        {FLT_MAX, 0x7C00},
        {0x1p-25f, 0x0000},                /* half the smallest subnormal: tie -> even 0 */
        {3 * 0x1p-25f, 0x0002},            /* 1.5 units: tie -> even 2 */
        {0x1p-25f + 0x1p-35f, 0x0001},     /* just above the tie */
        {1e-8f, 0x0000},
        {-1e-8f, 0x8000},
        {6.1e-05f, 0x03FF},                /* rounds into the subnormals */
        {2049.0f, 0x6800},                 /* 2048 + 1: tie -> even 2048 */
        {2051.0f, 0x6802},                 /* 2048 + 3: tie -> even 2052 */
    };
    for (size_t i = 0; i < sizeof rnd / sizeof rnd[0]; i++) {
        uint16_t h = quant_f32_to_f16(rnd[i].f);
        if (h != rnd[i].h) TEST_FAIL_("f32_to_f16(%.9g) = 0x%04X, want 0x%04X", rnd[i].f, h, rnd[i].h);
    }
    uint16_t hn = quant_f32_to_f16(NAN);
    ASSERT_TRUE((hn & 0x7C00) == 0x7C00 && (hn & 0x03FF) != 0);
    ASSERT_TRUE(isnan(quant_f16_to_f32(0x7E00)));
    ASSERT_TRUE(isnan(quant_f16_to_f32(0xFC01)));
}

/* All 65536 halves: f16 -> f32 -> f16 is the identity (NaN stays NaN), and the
 * hardware conversion agrees with the software one the reference kernels use
 * (reached through quant_dot_ref(F16, &h, {1.0f}, 1)). */
static void test_f16_exhaustive(void)
{
    int bad_rt = 0, bad_soft = 0, bad_row = 0;
    const float one = 1.0f;
    uint16_t all[65536];
    float deq[65536];
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    quant_dequantize_row(QUANT_F16, all, deq, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = quant_f16_to_f32(h);
        float soft = quant_dot_ref(QUANT_F16, &h, &one, 1);
        bool nan_h = ((h & 0x7C00) == 0x7C00) && (h & 0x3FF);
        if (nan_h) {
            if (!isnan(f) || !isnan(soft) || !isnan(deq[i])) bad_soft++;
            continue;
        }
        if (quant_f32_to_f16(f) != h && bad_rt++ < 5) TEST_FAIL_("f16 round trip 0x%04X", h);
        /* the reference sums in double from +0.0, so -0.0 comes back as +0.0 */
        if (!(soft == f) && bad_soft++ < 5) TEST_FAIL_("soft f16 0x%04X: %.9g vs %.9g", h, soft, f);
        if (fbits(deq[i]) != fbits(f) && bad_row++ < 5) TEST_FAIL_("row dequant f16 0x%04X", h);
    }
    ASSERT_EQ(bad_rt, 0);
    ASSERT_EQ(bad_soft, 0);
    ASSERT_EQ(bad_row, 0);
}

static void test_bf16(void)
{
    const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3F80},
        {-2.0f, 0xC000},
        {3.140625f, 0x4049},
        {INFINITY, 0x7F80},
        {-INFINITY, 0xFF80},
        {1.0f + 0x1p-8f, 0x3F80},             /* tie -> even (down) */
        {1.0f + 3 * 0x1p-8f, 0x3F82},         /* tie -> even (up) */
        {1.0f + 0x1p-8f + 0x1p-20f, 0x3F81},  /* above the tie */
        {FLT_MAX, 0x7F80},                    /* rounds to inf */
        {65504.0f, 0x4780},                   /* 65504 rounds to 65536 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = quant_f32_to_bf16(cases[i].f);
        if (h != cases[i].h) TEST_FAIL_("f32_to_bf16(%.9g) = 0x%04X, want 0x%04X", cases[i].f, h, cases[i].h);
    }
    uint16_t hn = quant_f32_to_bf16(NAN);
    ASSERT_TRUE((hn & 0x7F80) == 0x7F80 && (hn & 0x7F) != 0);
    /* signalling NaN whose payload sits in the low 16 bits must stay NaN */
    uint16_t hs = quant_f32_to_bf16(bitsf(0x7F800001u));
    ASSERT_TRUE((hs & 0x7F80) == 0x7F80 && (hs & 0x7F) != 0);
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = quant_bf16_to_f32(h);
        if (fbits(f) != (uint32_t)h << 16 && bad++ < 5) TEST_FAIL_("bf16_to_f32 0x%04X", h);
        if (isnan(f)) continue;
        if (quant_f32_to_bf16(f) != h && bad++ < 5) TEST_FAIL_("bf16 round trip 0x%04X", h);
    }
    ASSERT_EQ(bad, 0);
}

/* ---------------------------------------------------------------- block layouts */

static void test_block_layouts(void)
{
    /* Q4_0: element j < 16 is the low nibble of qs[j], j + 16 the high nibble;
     * value = d * (nibble - 8). */
    struct quant_block_q4_0 b4;
    b4.d = quant_f32_to_f16(0.5f);
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)((j & 15) | (((15 - j) & 15) << 4));
    float out[32];
    quant_dequantize_row(QUANT_Q4_0, &b4, out, 32);
    for (int j = 0; j < 16; j++) {
        ASSERT_EQ(out[j] == 0.5f * (float)(j - 8), 1);
        ASSERT_EQ(out[j + 16] == 0.5f * (float)(7 - j), 1);
    }
    /* Q8_0: value = d * qs[j] */
    struct quant_block_q8_0 b8;
    b8.d = quant_f32_to_f16(0.25f);
    for (int j = 0; j < 32; j++) b8.qs[j] = (int8_t)(j * 8 - 128);
    quant_dequantize_row(QUANT_Q8_0, &b8, out, 32);
    for (int j = 0; j < 32; j++) ASSERT_EQ(out[j] == 0.25f * (float)(j * 8 - 128), 1);

    /* integer dot of the two handmade blocks, exactly */
    struct quant_block_q8_0 y;
    y.d = quant_f32_to_f16(2.0f);
    for (int j = 0; j < 32; j++) y.qs[j] = (int8_t)(127 - 8 * j);
    long s4 = 0, s8 = 0;
    for (int j = 0; j < 16; j++) {
        s4 += (long)(j - 8) * y.qs[j];
        s4 += (long)(7 - j) * y.qs[j + 16];
    }
    for (int j = 0; j < 32; j++) s8 += (long)b8.qs[j] * y.qs[j];
    ASSERT_EQ(quant_dot_ref(QUANT_Q4_0, &b4, &y, 32) == (float)(0.5 * 2.0 * (double)s4), 1);
    ASSERT_EQ(quant_dot(QUANT_Q4_0, &b4, &y, 32) == (float)(0.5 * 2.0 * (double)s4), 1);
    ASSERT_EQ(quant_dot_ref(QUANT_Q8_0, &b8, &y, 32) == (float)(0.25 * 2.0 * (double)s8), 1);
    ASSERT_EQ(quant_dot(QUANT_Q8_0, &b8, &y, 32) == (float)(0.25 * 2.0 * (double)s8), 1);
}

/* ---------------------------------------------------------------- round trips */

/*
 * Tolerances, per element x of a 32-block with amax = max|x|:
 *
 * F32: exact.  F16: |x - x^| <= 2^-11 |x| (half an ulp, normal range) plus
 * 2^-25 for the subnormal range.  BF16: <= 2^-8 |x|.
 *
 * Q8_0: d = amax/127, q = rint(x/d) in [-127, 127], x^ = f16(d) * q.
 *   |x - d q| <= d/2, and |d q - f16(d) q| <= 127 |d - f16(d)|
 *   <= 127 max(2^-11 d, 2^-25) = max(2^-11 amax, 127 * 2^-25).
 *   => bound = amax/127 * 0.5 + max(amax * 2^-11, 127 * 2^-25), plus a
 *   relative 1e-5 of d for the float rounding of x * (1/d).
 *
 * Q4_0: d = m / -8 where m is the signed element of largest magnitude, so
 *   |d| = amax/8 and v = x/d lies in [-8, 8]; q = min(floor(v + 8.5), 15) - 8.
 *   For v < 7.5, |v - q| <= 0.5; the clamp to 15 only bites for v in
 *   [7.5, 8], i.e. elements of the opposite sign to m with |x| >= 15/16 amax,
 *   where |v - q| <= 1. The f16 scale adds <= 8 max(2^-11 |d|, 2^-25).
 *   => bound = |d| * (0.5 or, in the clamp zone, 1.0) + max(amax * 2^-11,
 *   8 * 2^-25), plus 1e-5 |d| for float rounding.
 */
static double bound_f16_scale(double d) { return fmax(fabs(d) * 0x1p-11, 0x1p-25); }

static void check_roundtrip(enum quant_type t, const float *x, size_t n, const char *what)
{
    void *q = xmalloc(quant_row_bytes(t, n));
    float *y = xmalloc(n * sizeof *y);
    quant_quantize_row(t, x, q, n);
    quant_dequantize_row(t, q, y, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)x[i] - (double)y[i]), bound = 0;
        switch (t) {
        case QUANT_F32: bound = 0; break;
        case QUANT_F16: bound = fabs(x[i]) * 0x1p-11 + 0x1p-25; break;
        case QUANT_BF16: bound = fabs(x[i]) * 0x1p-8; break;
        case QUANT_Q8_0:
        case QUANT_Q4_0: {
            size_t b0 = i / 32 * 32;
            double amax = 0, m = 0;
            for (size_t j = b0; j < b0 + 32; j++)
                if (fabs(x[j]) > amax) amax = fabs(x[j]), m = x[j];
            if (t == QUANT_Q8_0) {
                double d = amax / 127;
                bound = d * (0.5 + 1e-5) + 127 * bound_f16_scale(d);
            } else {
                double d = m / -8, v = d != 0 ? x[i] / d : 0;
                bound = fabs(d) * ((v >= 7.5 ? 1.0 : 0.5) + 1e-5) + 8 * bound_f16_scale(d);
            }
            break;
        }
        default: break; /* the K-quants and IQ4 types: tests/unit/test_kquant.c */
        }
        if (err > bound && bad++ < 5)
            TEST_FAIL_("%s %s n=%zu: x[%zu]=%.9g -> %.9g, err %.3g > bound %.3g", quant_type_name(t), what, n, i,
                       x[i], y[i], err, bound);
    }
    free(q);
    free(y);
}

static void test_roundtrip_bounds(void)
{
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        enum quant_type t = all_types[ti];
        for (int pass = 0; pass < 2; pass++) {
            const size_t *lens = pass ? odd_lens : block_lens;
            size_t nl = pass ? sizeof odd_lens / sizeof odd_lens[0] : sizeof block_lens / sizeof block_lens[0];
            if (pass && is_block(t)) continue;
            for (size_t li = 0; li < nl; li++) {
                size_t n = lens[li];
                float *x = xmalloc(n * sizeof *x);
                for (int mode = 0; mode < 3; mode++) {
                    fill(x, n, mode);
                    check_roundtrip(t, x, n, mode == 0 ? "uniform" : mode == 1 ? "scaled" : "outliers");
                }
                free(x);
            }
        }
    }
    /* Q4_0 clamp zone: the element opposite to the max at full magnitude */
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 0.01f * (float)(i % 7);
    x[3] = 1.0f;
    x[9] = -1.0f;    /* v = 8 -> clamped to 7 */
    x[40] = -2.0f;
    x[41] = 1.9375f; /* v = 7.75 */
    for (size_t ti = 0; ti < N_TYPES; ti++) check_roundtrip(all_types[ti], x, 64, "clamp");
    /* zero block and a single non-zero */
    float z[32] = {0};
    for (size_t ti = 0; ti < N_TYPES; ti++) check_roundtrip(all_types[ti], z, 32, "zeros");
    z[17] = -3.0f;
    for (size_t ti = 0; ti < N_TYPES; ti++) check_roundtrip(all_types[ti], z, 32, "one");
    /* the element of largest magnitude is reproduced to the f16 scale's precision */
    struct quant_block_q8_0 b8;
    struct quant_block_q4_0 b4;
    quant_quantize_row(QUANT_Q8_0, z, &b8, 32);
    quant_quantize_row(QUANT_Q4_0, z, &b4, 32);
    ASSERT_EQ(b8.qs[17], -127);
    ASSERT_EQ(b4.qs[1] >> 4, 0); /* element 17 = high nibble of qs[1], -8 + 8 */
}

/* ---------------------------------------------------------------- dot products */

/* sum |w_i y_i| and sum w_i y_i in double over the dequantised operands. */
static void deq_dot(enum quant_type t, const void *row, const void *yq, size_t n, double *dot, double *sabs)
{
    float *a = xmalloc(n * sizeof *a), *b = xmalloc(n * sizeof *b);
    quant_dequantize_row(t, row, a, n);
    quant_dequantize_row(quant_vec_dot_type(t), yq, b, n);
    double s = 0, sa = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)a[i] * (double)b[i];
        sa += fabs((double)a[i] * (double)b[i]);
    }
    *dot = s;
    *sabs = sa;
    free(a);
    free(b);
}

static void check_dot(enum quant_type t, size_t n, int mode, size_t misalign)
{
    float *w = xmalloc(n * sizeof *w), *x = xmalloc(n * sizeof *x);
    fill(w, n, mode);
    fill(x, n, (mode + 1) % 3);
    /* buffers offset from malloc's alignment to exercise the unaligned loads */
    uint8_t *rbuf = xmalloc(quant_row_bytes(t, n) + 8), *ybuf = xmalloc(quant_vec_bytes(t, n) + 8);
    void *row = rbuf + misalign, *y = ybuf + misalign;
    quant_quantize_row(t, w, row, n);
    quant_prepare_vec(t, x, y, n);
    double ref_dot, sabs;
    deq_dot(t, row, y, n, &ref_dot, &sabs);
    float fast = quant_dot(t, row, y, n);
    float ref = quant_dot_ref(t, row, y, n);
    /* fast vs reference kernel: 1e-5 of sum|a b| */
    double tol = 1e-5 * sabs + 1e-30;
    if (!(fabs((double)fast - (double)ref) <= tol))
        TEST_FAIL_("%s n=%zu mode=%d: quant_dot %.9g vs ref %.9g (tol %.3g)", quant_type_name(t), n, mode, fast, ref,
                   tol);
    /* both kernels vs the double dot of the dequantised operands: 1e-4 */
    double tol4 = 1e-4 * sabs + 1e-30;
    if (!(fabs((double)fast - ref_dot) <= tol4))
        TEST_FAIL_("%s n=%zu mode=%d: quant_dot %.9g vs dequantised %.9g (tol %.3g)", quant_type_name(t), n, mode,
                   fast, ref_dot, tol4);
    if (!(fabs((double)ref - ref_dot) <= tol4))
        TEST_FAIL_("%s n=%zu mode=%d: quant_dot_ref %.9g vs dequantised %.9g (tol %.3g)", quant_type_name(t), n,
                   mode, ref, ref_dot, tol4);
    free(w);
    free(x);
    free(rbuf);
    free(ybuf);
}

static void test_dot_vs_ref(void)
{
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        enum quant_type t = all_types[ti];
        for (size_t li = 0; li < sizeof block_lens / sizeof block_lens[0]; li++)
            for (int mode = 0; mode < 3; mode++) check_dot(t, block_lens[li], mode, 0);
        if (!is_block(t))
            for (size_t li = 0; li < sizeof odd_lens / sizeof odd_lens[0]; li++)
                for (int mode = 0; mode < 3; mode++) check_dot(t, odd_lens[li], mode, 0);
        /* misaligned buffers: 4 bytes for the float types, 2 for the blocks
         * (their struct alignment; activations are F32 for the float types) */
        check_dot(t, 4128, 0, is_block(t) ? 2 : 4);
        check_dot(t, is_block(t) ? 96 : 37, 1, is_block(t) ? 6 : 4);
    }
}

/* Extreme but legal operands: the integer kernels must not saturate. */
static void test_dot_extremes(void)
{
    const size_t n = 4096;
    float *w = xmalloc(n * sizeof *w), *x = xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        w[i] = (i & 1) ? -1.0f : 1.0f;
        x[i] = (i & 1) ? -1.0f : 1.0f; /* every product is +1: no cancellation */
    }
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        enum quant_type t = all_types[ti];
        void *row = xmalloc(quant_row_bytes(t, n)), *y = xmalloc(quant_vec_bytes(t, n));
        quant_quantize_row(t, w, row, n);
        quant_prepare_vec(t, x, y, n);
        double ref_dot, sabs;
        deq_dot(t, row, y, n, &ref_dot, &sabs);
        float fast = quant_dot(t, row, y, n), ref = quant_dot_ref(t, row, y, n);
        if (!(fabs(fast - ref_dot) <= 1e-5 * sabs))
            TEST_FAIL_("%s all +-1: quant_dot %.9g vs %.9g", quant_type_name(t), fast, ref_dot);
        if (!(fabs(ref - ref_dot) <= 1e-5 * sabs))
            TEST_FAIL_("%s all +-1: quant_dot_ref %.9g vs %.9g", quant_type_name(t), ref, ref_dot);
        /* Q4_0 weights are -8 (m = +1 maps to -8) and +8 clamps to 7 */
        if (t == QUANT_F32 || t == QUANT_F16 || t == QUANT_BF16) ASSERT_EQ(fast == 4096.0f, 1);
        free(row);
        free(y);
    }
    free(w);
    free(x);
}

/* dequantize_row agrees element-wise with the scalar conversions */
static void test_dequantize_rows(void)
{
    const size_t n = 37;
    float x[37], y[37];
    uint16_t h[37];
    fill(x, n, 1);
    quant_quantize_row(QUANT_F16, x, h, n);
    quant_dequantize_row(QUANT_F16, h, y, n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(h[i], quant_f32_to_f16(x[i]));
        ASSERT_EQ(fbits(y[i]), fbits(quant_f16_to_f32(h[i])));
    }
    quant_quantize_row(QUANT_BF16, x, h, n);
    quant_dequantize_row(QUANT_BF16, h, y, n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(h[i], quant_f32_to_bf16(x[i]));
        ASSERT_EQ(fbits(y[i]), fbits(quant_bf16_to_f32(h[i])));
    }
    quant_quantize_row(QUANT_F32, x, y, n);
    ASSERT_EQ(memcmp(x, y, sizeof x), 0);
}

int main(void)
{
    TEST_RUN(test_type_table);
    TEST_RUN(test_f16_known_values);
    TEST_RUN(test_f16_exhaustive);
    TEST_RUN(test_bf16);
    TEST_RUN(test_block_layouts);
    TEST_RUN(test_roundtrip_bounds);
    TEST_RUN(test_dot_vs_ref);
    TEST_RUN(test_dot_extremes);
    TEST_RUN(test_dequantize_rows);
    TEST_DONE();
}
