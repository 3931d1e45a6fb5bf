/* test_attention.c - one layer's attention (attention.h) against an independent naive
 * implementation: contiguous K/V arrays, double precision, written from the formulas.
 * Paged F32 and F16 caches, pages of 16 and 7 positions, GQA, several query rows at an
 * offset, probabilities reused by a sharing layer, the re-balancer's mask and boost
 * (with and without renormalising), the batched entry on a 2-thread pool. Tolerance:
 * 2e-5 absolute on outputs and probabilities for F32 (float sums of ~40 terms in [-3, 3]);
 * the F16 cache is compared with the reference fed the same F16-rounded K and V. */
#include "../test.h"

#include "engine/attention.h"
#include "engine/quant.h"
#include "engine/rebalance.h"
#include "engine/workers.h"

#include <stdint.h>

#define NH 8
#define NKV 2
#define HD 16
#define KVS (NKV * HD)
#define MAXP 64

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2 - 1);
}

struct cache {
    float k[MAXP][KVS], v[MAXP][KVS]; /* contiguous: the naive side */
    uint32_t block;
    bool f16;
    void *kp[MAXP], *vp[MAXP];        /* pages: the engine side */
    unsigned char store[2][MAXP][16 * KVS * 4];
};

static void cache_fill(struct cache *c, uint32_t n_pos, uint32_t block, bool f16)
{
    c->block = block;
    c->f16 = f16;
    for (uint32_t j = 0; j < n_pos; j++)
        for (uint32_t i = 0; i < KVS; i++) {
            c->k[j][i] = frand() * 1.5f;
            c->v[j][i] = frand() * 2.0f;
            if (f16) { /* the reference sees what an F16 cache holds */
                c->k[j][i] = quant_f16_to_f32(quant_f32_to_f16(c->k[j][i]));
                c->v[j][i] = quant_f16_to_f32(quant_f32_to_f16(c->v[j][i]));
            }
        }
    for (uint32_t b = 0; b * block < n_pos; b++) {
        c->kp[b] = c->store[0][b];
        c->vp[b] = c->store[1][b];
        for (uint32_t t = 0; t < block && b * block + t < n_pos; t++)
            for (uint32_t i = 0; i < KVS; i++) {
                uint32_t j = b * block + t;
                if (f16) {
                    ((uint16_t *)c->kp[b])[t * KVS + i] = quant_f32_to_f16(c->k[j][i]);
                    ((uint16_t *)c->vp[b])[t * KVS + i] = quant_f32_to_f16(c->v[j][i]);
                } else {
                    ((float *)c->kp[b])[t * KVS + i] = c->k[j][i];
                    ((float *)c->vp[b])[t * KVS + i] = c->v[j][i];
                }
            }
    }
}

/* The formulas of attention.h, rebalance.h, in double. probs_in: use these probabilities
 * (a sharing layer) instead of computing them. mask_in/boost: the re-balancer. */
static void naive(const struct cache *c, const float *q, uint32_t T, uint32_t pos0, const double *probs_in,
                  const uint8_t *mask_in, double boost, bool renorm, double *probs_out, double *out)
{
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t h = 0; h < NH; h++) {
            uint32_t kvh = h / (NH / NKV), n = pos0 + t + 1;
            double *p = probs_out + ((size_t)h * T + t) * MAXP;
            if (probs_in) {
                for (uint32_t j = 0; j < n; j++) p[j] = probs_in[((size_t)h * T + t) * MAXP + j];
            } else {
                double mx = -1e300, z = 0;
                for (uint32_t j = 0; j < n; j++) {
                    double s = 0;
                    for (uint32_t d = 0; d < HD; d++) s += (double)q[(t * NH + h) * HD + d] * c->k[j][kvh * HD + d];
                    p[j] = s / sqrt((double)HD);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (uint32_t j = 0; j < n; j++) z += exp(p[j] - mx);
                for (uint32_t j = 0; j < n; j++) p[j] = exp(p[j] - mx) / z;
            }
            double w[MAXP], sum = 0;
            for (uint32_t j = 0; j < n; j++) {
                const uint8_t *m = mask_in ? mask_in + ((size_t)h * T + t) * MAXP : NULL;
                w[j] = p[j] * (m && m[j] ? boost : 1.0);
                sum += w[j];
            }
            for (uint32_t d = 0; d < HD; d++) {
                double s = 0;
                for (uint32_t j = 0; j < n; j++) s += w[j] * c->v[j][kvh * HD + d];
                out[(t * NH + h) * HD + d] = renorm && mask_in ? s / sum : s;
            }
        }
}

static struct attn_args args_for(const struct cache *c, const float *q, uint32_t T, uint32_t pos0, float *probs,
                                 float *out)
{
    return (struct attn_args){.q = q, .k_pages = (const void *const *)c->kp, .v_pages = (const void *const *)c->vp,
                              .block = c->block, .kv_f16 = c->f16, .out = out, .probs = probs,
                              .probs_stride = MAXP, .probs_hstride = (size_t)T * MAXP, .T = T, .pos0 = pos0,
                              .n_head = NH, .n_head_kv = NKV, .head_dim = HD, .kv_stride = KVS,
                              .compute_scores = true};
}

static double max_diff_out(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static double max_diff_probs(const float *a, const double *b, uint32_t T, uint32_t pos0)
{
    double m = 0;
    for (uint32_t h = 0; h < NH; h++)
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t j = 0; j <= pos0 + t; j++)
                m = fmax(m, fabs((double)a[((size_t)h * T + t) * MAXP + j] - b[((size_t)h * T + t) * MAXP + j]));
    return m;
}

static float q[MAXP * NH * HD], out[MAXP * NH * HD], probs[NH * MAXP * MAXP];
static double r_out[MAXP * NH * HD], r_probs[NH * MAXP * MAXP];
static struct cache cache;

static void test_scores_match_naive(void)
{
    const uint32_t shapes[][2] = {{1, 0}, {1, 33}, {3, 5}, {17, 0}, {9, 40}};
    for (int f16 = 0; f16 < 2; f16++)
        for (uint32_t block = 7; block <= 16; block += 9)
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                uint32_t T = shapes[k][0], pos0 = shapes[k][1];
                cache_fill(&cache, pos0 + T, block, f16);
                for (size_t i = 0; i < (size_t)T * NH * HD; i++) q[i] = frand() * 2;
                for (int ref = 0; ref < 2; ref++) {
                    struct attn_args a = args_for(&cache, q, T, pos0, probs, out);
                    a.reference = ref;
                    attn_compute(&a, 0, 1);
                    naive(&cache, q, T, pos0, NULL, NULL, 1, false, r_probs, r_out);
                    double dp = max_diff_probs(probs, r_probs, T, pos0), dout = max_diff_out(out, r_out, (size_t)T * NH * HD);
                    if (!(dp <= 2e-6 && dout <= 2e-5))
                        TEST_FAIL_("f16 %d block %u T %u pos0 %u ref %d: probs %g out %g", f16, block, T, pos0, ref, dp, dout);
                }
            }
}

/* A sharing layer: compute_scores false reads the probabilities left in probs. */
static void test_shared_probabilities(void)
{
    uint32_t T = 4, pos0 = 20;
    cache_fill(&cache, pos0 + T, 16, false);
    for (size_t i = 0; i < (size_t)T * NH * HD; i++) q[i] = frand();
    struct attn_args a = args_for(&cache, q, T, pos0, probs, out);
    attn_compute(&a, 0, 1); /* the source layer */
    naive(&cache, q, T, pos0, NULL, NULL, 1, false, r_probs, r_out);
    cache_fill(&cache, pos0 + T, 16, false); /* the sharing layer's own V (and K it must not read) */
    for (size_t i = 0; i < (size_t)T * NH * HD; i++) q[i] = NAN; /* not read either */
    a = args_for(&cache, q, T, pos0, probs, out);
    a.compute_scores = false;
    attn_compute(&a, 0, 1);
    naive(&cache, NULL, T, pos0, r_probs, NULL, 1, false, r_probs, r_out);
    ASSERT_TRUE(max_diff_out(out, r_out, (size_t)T * NH * HD) <= 2e-5);
}

/* Re-balancer: layer 0 writes the mask (weight > tau, the token itself excluded), a later
 * layer boosts the masked weights, optionally renormalised. */
static void test_rebalance_mask_and_boost(void)
{
    static uint8_t mask[NH * MAXP * MAXP];
    uint32_t T = 5, pos0 = 12;
    const float tau = 0.05f;
    for (int renorm = 0; renorm < 2; renorm++) {
        cache_fill(&cache, pos0 + T, 7, false);
        for (size_t i = 0; i < (size_t)T * NH * HD; i++) q[i] = frand() * 3;
        memset(mask, 0, sizeof mask);
        struct attn_args a = args_for(&cache, q, T, pos0, probs, out);
        a.mask_out = mask;
        a.mask_tau = tau;
        attn_compute(&a, 0, 1);
        naive(&cache, q, T, pos0, NULL, NULL, 1, false, r_probs, r_out);
        long wrong = 0, set = 0;
        for (uint32_t h = 0; h < NH; h++)
            for (uint32_t t = 0; t < T; t++)
                for (uint32_t j = 0; j <= pos0 + t; j++) {
                    size_t i = ((size_t)h * T + t) * MAXP + j;
                    bool want = j != pos0 + t && r_probs[i] > tau;
                    wrong += (mask[i] != 0) != want && fabs(r_probs[i] - tau) > 1e-6;
                    set += mask[i] != 0;
                }
        ASSERT_EQ(wrong, 0);
        ASSERT_TRUE(set > 0);
        /* a later layer: new q and cache, boost 1.15 where masked */
        cache_fill(&cache, pos0 + T, 7, false);
        for (size_t i = 0; i < (size_t)T * NH * HD; i++) q[i] = frand() * 3;
        a = args_for(&cache, q, T, pos0, probs, out);
        a.mask = mask;
        a.boost = 1.15f;
        a.renormalize = renorm;
        attn_compute(&a, 0, 1);
        naive(&cache, q, T, pos0, NULL, mask, 1.15, renorm, r_probs, r_out);
        ASSERT_TRUE(max_diff_out(out, r_out, (size_t)T * NH * HD) <= 2e-5);
        ASSERT_TRUE(max_diff_probs(probs, r_probs, T, pos0) <= 2e-6); /* probabilities stay unboosted */
    }
}

/* The batched entry on a 2-thread pool equals each attention alone. */
static void test_batch_equals_single(void)
{
    static struct cache caches[3];
    static float qs[3][8 * NH * HD], outs[3][8 * NH * HD], outs1[3][8 * NH * HD];
    static float pb[3][NH * 8 * MAXP];
    const uint32_t T[3] = {1, 8, 3}, pos0[3] = {30, 0, 11};
    struct attn_args rows[3];
    for (int i = 0; i < 3; i++) {
        cache_fill(&caches[i], pos0[i] + T[i], 16, i == 2);
        for (size_t k = 0; k < (size_t)T[i] * NH * HD; k++) qs[i][k] = frand();
        rows[i] = args_for(&caches[i], qs[i], T[i], pos0[i], pb[i], outs1[i]);
        attn_compute(&rows[i], 0, 1);
        rows[i].out = outs[i];
    }
    struct workers *w = workers_create(2);
    struct attn_batch b = {.rows = rows, .n = 3, .next = 0};
    workers_run(w, attn_compute_batch, &b);
    workers_destroy(w);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(memcmp(outs[i], outs1[i], (size_t)T[i] * NH * HD * sizeof(float)) == 0); /* same order: exact */
}

int main(void)
{
    TEST_RUN(test_scores_match_naive);
    TEST_RUN(test_shared_probabilities);
    TEST_RUN(test_rebalance_mask_and_boost);
    TEST_RUN(test_batch_equals_single);
    TEST_DONE();
}
