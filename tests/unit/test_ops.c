/* test_ops.c - the forward pass's kernels (ops.h) against naive double-precision loops
 * written from their formulas: rmsnorm, softmax, silu*mul, RoPE (adjacent pairs and
 * halves), axpy / dot (F32 and F16), the 4-keys-at-a-time score kernel, and ops_matmul /
 * ops_matmul_many for every weight type on both sides of the sgemm threshold
 * (T = 1, 2, 7, 47, 48, 64) with a 2-thread pool.
 * Tolerances: element-wise kernels 1e-5 relative; matmul with float activations (F32, F16,
 * BF16 weights) 1e-5 x sum|w*x|; quantised weights multiply activations quantised to 8 bits
 * per block (Q8_0 / Q8_K, scale amax/127), so their bound is that rounding: for each output,
 * sum_i |w_i| * amax(block of x_i) / 254, plus 1e-5 x sum|w*x| (the weights are compared in
 * their dequantised values, so only the activation rounding remains). */
#include "../test.h"

#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/workers.h"

#include <stdint.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2 - 1);
}

static bool close_rel(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

static void test_elementwise(void)
{
    enum { N = 77 };
    float x[N], w[N], out[N], a[N], b[N];
    for (int i = 0; i < N; i++) x[i] = frand() * 3, w[i] = frand() + 1.5f, a[i] = frand() * 6, b[i] = frand();
    for (int ref = 0; ref < 2; ref++) {
        ops_rmsnorm(out, x, w, N, 1e-5f, ref);
        double ss = 0;
        for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
        double inv = 1 / sqrt(ss / N + 1e-5);
        for (int i = 0; i < N; i++) ASSERT_TRUE(close_rel(out[i], x[i] * inv * w[i], 1e-5));
    }
    float s[N];
    memcpy(s, x, sizeof s);
    ops_softmax(s, N);
    double mx = x[0], z = 0;
    for (int i = 1; i < N; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < N; i++) z += exp(x[i] - mx);
    for (int i = 0; i < N; i++) ASSERT_TRUE(close_rel(s[i], exp(x[i] - mx) / z, 1e-5));
    float c[N];
    memcpy(c, a, sizeof c);
    ops_silu_mul(c, b, N);
    for (int i = 0; i < N; i++) ASSERT_TRUE(close_rel(c[i], a[i] / (1 + exp(-(double)a[i])) * b[i], 1e-5));
    float y[N], y0[N];
    for (int i = 0; i < N; i++) y[i] = y0[i] = frand();
    ops_axpy(y, 0.37f, x, N);
    for (int i = 0; i < N; i++) ASSERT_TRUE(close_rel(y[i], y0[i] + 0.37 * x[i], 1e-6));
    double d = 0;
    for (int i = 0; i < N; i++) d += (double)a[i] * b[i];
    ASSERT_TRUE(close_rel(ops_dot_f32(a, b, N), d, 1e-5));
    /* F16 operands: the reference reads the same F16 values */
    uint16_t h[N];
    for (int i = 0; i < N; i++) h[i] = quant_f32_to_f16(b[i]);
    d = 0;
    for (int i = 0; i < N; i++) d += (double)a[i] * quant_f16_to_f32(h[i]);
    ASSERT_TRUE(close_rel(ops_dot_f32_f16(a, h, N), d, 1e-5));
    for (int i = 0; i < N; i++) y[i] = y0[i];
    ops_axpy_f16(y, -1.25f, h, N);
    for (int i = 0; i < N; i++) ASSERT_TRUE(close_rel(y[i], y0[i] - 1.25 * quant_f16_to_f32(h[i]), 1e-6));
}

static void test_dot_rows(void)
{
    enum { D = 48, STRIDE = 64, ROWS = 11 };
    float qv[D], k[ROWS * STRIDE], out[ROWS];
    for (int i = 0; i < D; i++) qv[i] = frand();
    for (int i = 0; i < ROWS * STRIDE; i++) k[i] = frand();
    for (size_t n = 1; n <= ROWS; n++) { /* every remainder of the 4-key loop */
        ops_dot_rows(qv, k, STRIDE, n, D, 0.25f, out);
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)qv[i] * k[j * STRIDE + i];
            ASSERT_TRUE(close_rel(out[j], 0.25 * s, 1e-5));
        }
    }
}

static void test_rope(void)
{
    enum { HEADS = 3, HD = 16, NROT = 12 };
    float x[HEADS * HD], x0[HEADS * HD], cs[NROT / 2], sn[NROT / 2];
    for (int i = 0; i < NROT / 2; i++) {
        double th = 0.7 * (i + 1);
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
    for (int mode = 0; mode < 2; mode++) {
        for (int i = 0; i < HEADS * HD; i++) x[i] = x0[i] = frand();
        ops_rope(x, HEADS, HD, NROT, cs, sn, mode ? ROPE_NEOX : ROPE_NORMAL);
        for (int h = 0; h < HEADS; h++) {
            const float *a = x0 + h * HD, *o = x + h * HD;
            for (int i = 0; i < NROT / 2; i++) {
                int i0 = mode ? i : 2 * i, i1 = mode ? i + NROT / 2 : 2 * i + 1;
                ASSERT_TRUE(close_rel(o[i0], a[i0] * cs[i] - a[i1] * sn[i], 1e-6));
                ASSERT_TRUE(close_rel(o[i1], a[i0] * sn[i] + a[i1] * cs[i], 1e-6));
            }
            for (int i = NROT; i < HD; i++) ASSERT_TRUE(o[i] == a[i]); /* past n_rot: untouched */
        }
    }
}

/* y = x W^T for one weight type, T rows, checked against the dequantised weights in double. */
static void check_matmul(struct ops *o, enum quant_type type, size_t n_in, size_t n_out, size_t T)
{
    float *wf = malloc(n_in * n_out * sizeof *wf), *deq = malloc(n_in * n_out * sizeof *deq);
    float *x = malloc(T * n_in * sizeof *x), *y = malloc(T * n_out * sizeof *y), *y2 = malloc(T * n_out * sizeof *y2);
    size_t rb = quant_row_bytes(type, n_in);
    void *wq = malloc(rb * n_out);
    for (size_t i = 0; i < n_in * n_out; i++) wf[i] = frand() * 0.5f;
    for (size_t i = 0; i < T * n_in; i++) x[i] = frand() * 2;
    for (size_t r = 0; r < n_out; r++) {
        quant_quantize_row(type, wf + r * n_in, (char *)wq + r * rb, n_in);
        quant_dequantize_row(type, (char *)wq + r * rb, deq + r * n_in, n_in);
    }
    struct model_weight w = {.type = type, .n_in = (uint32_t)n_in, .n_out = (uint32_t)n_out, .row_bytes = rb,
                             .data = wq};
    ops_matmul(o, &w, x, T, y);
    const struct model_weight *ws[2] = {&w, &w};
    float *ys[2] = {y2, y2};
    ops_matmul_many(o, ws, 1, x, T, ys);
    bool quant_act = quant_vec_dot_type(type) != QUANT_F32;
    size_t act_block = quant_act ? quant_block_size(quant_vec_dot_type(type)) : 1;
    double *amax = calloc(T * n_in, sizeof *amax); /* per element: the amax of its activation block */
    for (size_t t = 0; t < T && quant_act; t++)
        for (size_t b0 = 0; b0 < n_in; b0 += act_block) {
            double m = 0;
            for (size_t k = b0; k < b0 + act_block && k < n_in; k++) m = fmax(m, fabs(x[t * n_in + k]));
            for (size_t k = b0; k < b0 + act_block && k < n_in; k++) amax[t * n_in + k] = m;
        }
    for (size_t t = 0; t < T; t++)
        for (size_t r = 0; r < n_out; r++) {
            double s = 0, mag = 0, bound = 0;
            for (size_t i = 0; i < n_in; i++) {
                double wx = (double)deq[r * n_in + i] * x[t * n_in + i];
                s += wx;
                mag += fabs(wx);
                bound += fabs(deq[r * n_in + i]) * amax[t * n_in + i] / 254;
            }
            bound = bound * 1.01 + 1e-5 * mag + 1e-6;
            double e = fabs(y[t * n_out + r] - s);
            if (!(e <= bound) || y2[t * n_out + r] != y[t * n_out + r]) {
                TEST_FAIL_("%s T=%zu row %zu: %g vs %g (bound %g), many %g", quant_type_name(type), T, r,
                           (double)y[t * n_out + r], s, bound, (double)y2[t * n_out + r]);
                t = T;
                break;
            }
        }
    free(amax);
    free(wf);
    free(deq);
    free(x);
    free(y);
    free(y2);
    free(wq);
}

static void test_matmul_every_type_both_paths(void)
{
    const enum quant_type types[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K};
    const size_t Ts[] = {1, 2, 7, 47, 48, 64};
    struct workers *pool = workers_create(2);
    struct ops o;
    ASSERT_OK(ops_init(&o, pool, 64, 512, false));
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) check_matmul(&o, types[k], 512, 37, Ts[i]);
    ops_cleanup(&o);
    workers_destroy(pool);
}

int main(void)
{
    TEST_RUN(test_elementwise);
    TEST_RUN(test_dot_rows);
    TEST_RUN(test_rope);
    TEST_RUN(test_matmul_every_type_both_paths);
    TEST_DONE();
}
