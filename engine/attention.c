#include "attention.h"

#include "ops.h"
#include "quant.h"
#include "rebalance.h"
#include "workers.h"

#include <math.h>
#include <string.h>

/* Position j of head kvh in a paged cache (F32 or F16 elements). */
static inline const void *kv_row(const struct attn_args *a, const void *const *pages, size_t j, uint32_t kvh)
{
    size_t el = a->kv_f16 ? 2 : 4;
    return (const char *)pages[j / a->block] + ((j % a->block) * a->kv_stride + (size_t)kvh * a->head_dim) * el;
}

static inline float kv_at(const struct attn_args *a, const void *row, size_t d)
{
    return a->kv_f16 ? quant_f16_to_f32(((const uint16_t *)row)[d]) : ((const float *)row)[d];
}

static void head_scores(const struct attn_args *a, uint32_t h, uint32_t t, float *p, size_t n_pos)
{
    uint32_t kvh = h / (a->n_head / a->n_head_kv);
    const float *q = a->q + (size_t)t * a->n_head * a->head_dim + (size_t)h * a->head_dim;
    const float scale = 1.0f / sqrtf((float)a->head_dim);
    if (a->reference) {
        for (size_t j = 0; j < n_pos; j++) {
            double s = 0;
            const void *kj = kv_row(a, a->k_pages, j, kvh);
            for (uint32_t d = 0; d < a->head_dim; d++) s += (double)q[d] * kv_at(a, kj, d);
            p[j] = (float)(s / sqrt((double)a->head_dim));
        }
        double max = p[0], sum = 0;
        for (size_t j = 1; j < n_pos; j++) max = p[j] > max ? p[j] : max;
        for (size_t j = 0; j < n_pos; j++) sum += exp((double)p[j] - max);
        for (size_t j = 0; j < n_pos; j++) p[j] = (float)(exp((double)p[j] - max) / sum);
        return;
    }
    for (size_t j0 = 0; j0 < n_pos; j0 += a->block) {
        const void *k = kv_row(a, a->k_pages, j0, kvh);
        size_t n = n_pos - j0 < a->block ? n_pos - j0 : a->block;
        if (a->kv_f16)
            for (size_t j = 0; j < n; j++)
                p[j0 + j] = ops_dot_f32_f16(q, (const uint16_t *)k + j * a->kv_stride, a->head_dim) * scale;
        else
            ops_dot_rows(q, (const float *)k, a->kv_stride, n, a->head_dim, scale, p + j0);
    }
    ops_softmax(p, n_pos);
}

static void head_apply(const struct attn_args *a, uint32_t h, uint32_t t, const float *p, const uint8_t *m,
                       size_t n_pos)
{
    uint32_t kvh = h / (a->n_head / a->n_head_kv);
    float *o = a->out + (size_t)t * a->n_head * a->head_dim + (size_t)h * a->head_dim;
    double norm = 1;
    if (m && a->renormalize) {
        double s = 0;
        for (size_t j = 0; j < n_pos; j++) s += (double)p[j] * (m[j] ? a->boost : 1.0f);
        norm = s;
    }
    if (a->reference) {
        for (uint32_t d = 0; d < a->head_dim; d++) {
            double s = 0;
            for (size_t j = 0; j < n_pos; j++)
                s += (double)p[j] * (m && m[j] ? a->boost : 1.0) * kv_at(a, kv_row(a, a->v_pages, j, kvh), d);
            o[d] = (float)(s / norm);
        }
        return;
    }
    memset(o, 0, a->head_dim * sizeof(float));
    float inv = (float)(1.0 / norm);
    for (size_t j0 = 0; j0 < n_pos; j0 += a->block) {
        const void *v = kv_row(a, a->v_pages, j0, kvh);
        size_t n = n_pos - j0 < a->block ? n_pos - j0 : a->block;
        for (size_t j = 0; j < n; j++) {
            float w = m ? p[j0 + j] * (m[j0 + j] ? a->boost : 1.0f) * inv : p[j0 + j];
            if (a->kv_f16)
                ops_axpy_f16(o, w, (const uint16_t *)v + j * a->kv_stride, a->head_dim);
            else
                ops_axpy(o, w, (const float *)v + j * a->kv_stride, a->head_dim);
        }
    }
}

static void one_head(const struct attn_args *a, uint32_t h)
{
    for (uint32_t t = 0; t < a->T; t++) {
        size_t n_pos = (size_t)a->pos0 + t + 1, row = (size_t)h * a->probs_hstride + (size_t)t * a->probs_stride;
        float *p = a->probs + row;
        if (a->compute_scores) head_scores(a, h, t, p, n_pos);
        if (a->mask_out) rebalance_mask_row(p, n_pos, n_pos - 1, a->mask_tau, a->mask_out + row);
        head_apply(a, h, t, p, a->mask ? a->mask + row : NULL, n_pos);
    }
}

void attn_compute(void *args, int ith, int nth)
{
    const struct attn_args *a = args;
    long lo, hi;
    workers_split(a->n_head, ith, nth, &lo, &hi);
    for (uint32_t h = (uint32_t)lo; h < (uint32_t)hi; h++) one_head(a, h);
}

void attn_compute_batch(void *args, int ith, int nth)
{
    (void)ith;
    (void)nth;
    struct attn_batch *b = args;
    const long H = b->n ? b->rows[0].n_head : 0, n_units = (long)b->n * H;
    for (;;) {
        long k = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (k >= n_units) break;
        one_head(&b->rows[k / H], (uint32_t)(k % H));
    }
}
