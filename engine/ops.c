#include "ops.h"

#include "gemm.h"
#include "quant.h"
#include "repack.h"
#include "workers.h"

#include <cblas.h>
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ops_init(struct ops *o, struct workers *pool, size_t max_tokens, size_t max_in, bool reference)
{
    memset(o, 0, sizeof *o);
    o->pool = pool;
    o->reference = reference;
    o->max_tokens = max_tokens;
    o->max_in = max_in;
    /* Q8_0 and Q8_K rows are smaller than F32 rows, so F32 size bounds all three */
    o->qbuf = aligned_alloc(64, (max_tokens * max_in * sizeof(float) + 63) / 64 * 64);
    o->deq = aligned_alloc(64, OPS_DEQ_ROWS * max_in * sizeof(float));
    o->gemm.n_panels = pool ? workers_count(pool) : 1;
    o->gemm.panel_stride = gemm_panel_bytes(max_tokens, max_in);
    o->gemm.act = aligned_alloc(64, gemm_act_bytes(max_tokens, max_in));
    o->gemm.panels = aligned_alloc(64, o->gemm.panel_stride * (size_t)o->gemm.n_panels);
    if (!o->qbuf || !o->deq || !o->gemm.act || !o->gemm.panels) {
        ops_cleanup(o);
        return -1;
    }
    return 0;
}

void ops_cleanup(struct ops *o)
{
    free(o->qbuf);
    free(o->deq);
    free(o->gemm.act);
    free(o->gemm.panels);
    o->qbuf = NULL;
    o->deq = NULL;
    o->gemm.act = o->gemm.panels = NULL;
}

/* ---- matrix-vector path ---- */

#define OPS_MAX_MANY 4
#ifndef OPS_PREFETCH_ROWS
#define OPS_PREFETCH_ROWS 2
#endif

struct matvec_task {
    const struct model_weight *w[OPS_MAX_MANY]; /* same type and n_in */
    float *y[OPS_MAX_MANY];
    size_t n_w, total_rows;
    const void *xq;   /* converted activations */
    size_t xq_stride; /* bytes per activation row */
    size_t T;
};

/* Rows of all the matrices, numbered one after the other, split among threads. */
static void matvec_worker(void *p, int ith, int nth)
{
    const struct matvec_task *t = p;
    long lo, hi;
    workers_split((long)t->total_rows, ith, nth, &lo, &hi);
    size_t base_row = 0;
    for (size_t m = 0; m < t->n_w; m++) {
        const struct model_weight *w = t->w[m];
        long a = lo - (long)base_row, b = hi - (long)base_row;
        if (a < 0) a = 0;
        if (b > (long)w->n_out) b = (long)w->n_out;
        const char *data = w->data;
        for (long r = a; r < b; r++) {
#if OPS_PREFETCH_ROWS > 0
            /* several activation rows: each weight row is used for a while, so fetch the one
             * OPS_PREFETCH_ROWS ahead meanwhile instead of stalling on it when it is reached */
            if (t->T > 2 && r + OPS_PREFETCH_ROWS < b) {
                const char *next = data + (size_t)(r + OPS_PREFETCH_ROWS) * w->row_bytes;
                for (size_t off = 0; off < w->row_bytes; off += 64) __builtin_prefetch(next + off, 0, 3);
            }
#endif
            quant_dot_multi(w->type, data + (size_t)r * w->row_bytes, t->xq, t->xq_stride, t->T, w->n_in,
                            t->y[m] + r, w->n_out);
        }
        base_row += w->n_out;
    }
}

struct prep_task {
    enum quant_type type;
    const float *x;
    size_t n_in, T, stride;
    void *out;
};

static void prep_worker(void *p, int ith, int nth)
{
    const struct prep_task *t = p;
    long lo, hi;
    workers_split((long)t->T, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++)
        quant_prepare_vec(t->type, t->x + (size_t)i * t->n_in, (char *)t->out + (size_t)i * t->stride, t->n_in);
}

static void matmul_vec(struct ops *o, const struct model_weight *const *ws, size_t n, const float *x, size_t T,
                       float *const *ys)
{
    const struct model_weight *w = ws[0];
    struct matvec_task task = {.n_w = n, .T = T};
    for (size_t i = 0; i < n; i++) {
        task.w[i] = ws[i];
        task.y[i] = ys[i];
        task.total_rows += ws[i]->n_out;
    }
    if (quant_vec_dot_type(w->type) == QUANT_F32) {
        task.xq = x;
        task.xq_stride = w->n_in * sizeof(float);
    } else {
        struct prep_task pt = {.type = w->type, .x = x, .n_in = w->n_in, .T = T,
                               .stride = quant_vec_bytes(w->type, w->n_in), .out = o->qbuf};
        if (T > 1)
            workers_run(o->pool, prep_worker, &pt);
        else
            prep_worker(&pt, 0, 1);
        task.xq = o->qbuf;
        task.xq_stride = pt.stride;
    }
    workers_run(o->pool, matvec_worker, &task);
}

/* ---- sgemm path ---- */

struct deq_task {
    const struct model_weight *w;
    size_t r0, nr;
    float *out;
};

static void deq_worker(void *p, int ith, int nth)
{
    const struct deq_task *t = p;
    long lo, hi;
    workers_split((long)t->nr, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++)
        quant_dequantize_row(t->w->type, (const char *)t->w->data + (t->r0 + (size_t)r) * t->w->row_bytes,
                             t->out + (size_t)r * t->w->n_in, t->w->n_in);
}

static void matmul_gemm(struct ops *o, const struct model_weight *w, const float *x, size_t T, float *y)
{
    const int n_in = (int)w->n_in, n_out = (int)w->n_out;
    if (w->type == QUANT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, n_out, n_in, 1.0f, x, n_in, w->data, n_in,
                    0.0f, y, n_out);
        return;
    }
    for (size_t r0 = 0; r0 < w->n_out; r0 += OPS_DEQ_ROWS) {
        size_t nr = w->n_out - r0 < OPS_DEQ_ROWS ? w->n_out - r0 : OPS_DEQ_ROWS;
        struct deq_task dt = {.w = w, .r0 = r0, .nr = nr, .out = o->deq};
        workers_run(o->pool, deq_worker, &dt);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, n_in, 1.0f, x, n_in, o->deq, n_in,
                    0.0f, y + r0, n_out);
    }
}

/* ---- reference path ---- */

static void matmul_ref(struct ops *o, const struct model_weight *w, const float *x, size_t T, float *y)
{
    float *row = o->deq;
    size_t n_groups = w->layout == MODEL_LAYOUT_R16 ? w->n_out / REPACK_R16_ROWS : 0;
    for (size_t r = 0; r < w->n_out; r++) {
        const char *src = (const char *)w->data + r * w->row_bytes;
        if (r / REPACK_R16_ROWS < n_groups) { /* the load-time layout: the plain row back first */
            repack_r16_unpack_row(w->type, (const char *)w->data + (r - r % REPACK_R16_ROWS) * w->row_bytes, w->n_in,
                                  (int)(r % REPACK_R16_ROWS), o->qbuf);
            src = o->qbuf;
        }
        quant_dequantize_row(w->type, src, row, w->n_in);
        for (size_t t = 0; t < T; t++) {
            double s = 0;
            const float *xt = x + t * w->n_in;
            for (size_t i = 0; i < w->n_in; i++) s += (double)row[i] * xt[i];
            y[t * w->n_out + r] = (float)s;
        }
    }
}

/* Our own kernels (gemm.h) for prefill-sized products where they measure
 * faster than dequantise + sgemm: see OPS_GEMM_F32 in ops.h and the README. */
static bool ops_use_gemm(enum quant_type t, size_t T)
{
    if (quant_isa_active() != QUANT_ISA_AVX512 || !gemm_supported(QUANT_ISA_AVX512, t)) return false;
    if (T < OPS_GEMM_MIN_TOKENS) return t == QUANT_F32 && OPS_GEMM_DECODE_F32;
    return t != QUANT_F32 || OPS_GEMM_F32;
}

/* Weights in the load-time layout (model.h): our R16 kernel for every row count. */
static void matmul_r16(struct ops *o, const struct model_weight *const *ws, size_t n, const float *x, size_t T,
                       float *const *ys)
{
    struct gemm_mat ms[GEMM_MAX_MATS];
    for (size_t i = 0; i < n; i++)
        ms[i] = (struct gemm_mat){.t = ws[i]->type, .data = ws[i]->data, .row_bytes = ws[i]->row_bytes,
                                  .n_out = ws[i]->n_out, .y = ys[i]};
    enum quant_isa isa = quant_isa_active(); /* the ISA the weights were repacked for (model.c) */
    gemm_matmul_r16(gemm_r16_supported(isa, ws[0]->type) ? isa : QUANT_ISA_SCALAR, o->pool, ms, n, ws[0]->n_in, x, T,
                    &o->gemm);
}

void ops_matmul(struct ops *o, const struct model_weight *w, const float *x, size_t T, float *y)
{
    if (o->reference)
        matmul_ref(o, w, x, T, y);
    else if (w->layout == MODEL_LAYOUT_R16)
        matmul_r16(o, &w, 1, x, T, &y);
    else if (ops_use_gemm(w->type, T))
        gemm_matmul(QUANT_ISA_AVX512, o->pool, w->type, w->data, w->row_bytes, w->n_in, w->n_out, x, T, y, &o->gemm);
    else if (T < OPS_GEMM_MIN_TOKENS)
        matmul_vec(o, &w, 1, x, T, &y);
    else
        matmul_gemm(o, w, x, T, y);
}

void ops_matmul_many(struct ops *o, const struct model_weight *const *ws, size_t n, const float *x, size_t T,
                     float *const *ys)
{
    bool r16 = !o->reference && n <= GEMM_MAX_MATS;
    for (size_t i = 0; r16 && i < n; i++) r16 = ws[i]->layout == MODEL_LAYOUT_R16 && ws[i]->n_in == ws[0]->n_in;
    if (r16) { /* the activations quantised once, every group of the n matrices in one task */
        matmul_r16(o, ws, n, x, T, ys);
        return;
    }
    bool fuse = !o->reference && T < OPS_GEMM_MIN_TOKENS && n <= OPS_MAX_MANY && !ops_use_gemm(ws[0]->type, T);
    for (size_t i = 1; fuse && i < n; i++) fuse = ws[i]->type == ws[0]->type && ws[i]->n_in == ws[0]->n_in;
    if (fuse) {
        matmul_vec(o, ws, n, x, T, ys);
        return;
    }
    for (size_t i = 0; i < n; i++) ops_matmul(o, ws[i], x, T, ys[i]);
}

/* ---- element-wise ---- */

void ops_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps, bool reference)
{
    double ss = 0;
    if (reference) {
        for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    } else {
        float s = ops_dot_f32(x, x, n);
        ss = s;
    }
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

void ops_softmax(float *x, size_t n)
{
    float max = x[0];
    for (size_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

void ops_silu_mul(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void ops_rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cos_t, const float *sin_t,
              enum rope_mode mode)
{
    size_t half = n_rot / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (size_t i = 0; i < half; i++) {
            size_t a = mode == ROPE_NEOX ? i : 2 * i, b = mode == ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cos_t[i] - x1 * sin_t[i];
            v[b] = x0 * sin_t[i] + x1 * cos_t[i];
        }
    }
}

void ops_axpy(float *y, float a, const float *x, size_t n)
{
    size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

float ops_dot_f32(const float *a, const float *b, size_t n)
{
    return quant_dot(QUANT_F32, a, b, n);
}

void ops_dot_rows(const float *q, const float *k, size_t stride, size_t n_rows, size_t d, float scale, float *out)
{
    size_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
    if (d % 8 == 0) {
        /* 4 keys at a time: 4 independent sums, reduced together by two hadds */
        const __m256 vs = _mm256_set1_ps(scale);
        for (; j + 4 <= n_rows; j += 4) {
            const float *k0 = k + j * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t i = 0; i < d; i += 8) {
                __m256 qv = _mm256_loadu_ps(q + i);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + i), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + i), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + i), a3);
            }
            __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(out + j, _mm_mul_ps(r, _mm256_castps256_ps128(vs)));
        }
    }
#endif
    for (; j < n_rows; j++) out[j] = ops_dot_f32(q, k + j * stride, d) * scale;
}

void ops_axpy_f16(float *y, float a, const uint16_t *x, size_t n)
{
    size_t i = 0;
#if defined(__F16C__) && defined(__FMA__)
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
#endif
    for (; i < n; i++) y[i] += a * quant_f16_to_f32(x[i]);
}

float ops_dot_f32_f16(const float *a, const uint16_t *b, size_t n)
{
    return quant_dot(QUANT_F16, b, a, n); /* an F16 "weight row" against F32 activations */
}

double ops_sgemm_gflops(int m, int n, int k, int reps)
{
    float *a = malloc((size_t)m * k * sizeof(float)), *b = malloc((size_t)n * k * sizeof(float)),
          *c = malloc((size_t)m * n * sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 5) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n); /* warm-up */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * (double)k * reps / s * 1e-9;
}
