#include "transformer.h"

#include "attention.h"
#include "errors.h"
#include "model.h"
#include "ops.h"
#include "workers.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tf_ctx {
    const struct model *m;
    uint32_t n_ctx, n_batch;
    bool reference, all_logits;
    struct workers *pool;
    bool own_pool;
    struct ops ops;
    /* activations, shapes for one chunk of B = n_batch tokens */
    float *x;      /* [B][dim] residual stream */
    float *xb;     /* [B][dim] normed input */
    float *q;      /* [B][n_head*head_dim] */
    float *att;    /* [B][n_head*head_dim] attention output */
    float *hb;     /* [B][ffn] */
    float *hb2;    /* [B][ffn] */
    float *probs;  /* [n_head][B][n_ctx] attention probabilities */
    float *logits; /* [B or 1][n_vocab] */
    /* KV cache: one buffer per layer; k[l] is NULL for a sharing layer */
    float **k_cache; /* [n_layer] -> [n_ctx][kvdim] */
    float **v_cache; /* [n_layer] -> [n_ctx][kvdim] */
    size_t k_alloc, v_alloc; /* bytes allocated, counted where allocated */
    uint8_t *mask;   /* [n_head][B][n_ctx] re-balancer mask of the current chunk */
    struct share_plan plan;
    struct rebalance_params rb;
    uint64_t flops_saved;
    tf_attention_hook hook;
    void *hook_user;
    /* RoPE tables */
    float *rope_cos; /* [n_ctx][n_rot/2] */
    float *rope_sin;
};

static float *falloc(size_t n)
{
    return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
}

int tf_create(const struct model *m, const struct tf_opts *opts, struct tf_ctx **out)
{
    struct tf_opts o = opts ? *opts : (struct tf_opts){0};
    *out = NULL;
    const struct model_hparams *hp = &m->hp;
    if (!o.n_ctx) o.n_ctx = hp->n_ctx_train;
    if (!o.n_batch) o.n_batch = 128;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if (o.n_threads < 1) o.n_threads = 1;
    struct tf_ctx *c = calloc(1, sizeof *c);
    if (!c) return SA_ERR_NOMEM;
    c->m = m;
    c->n_ctx = o.n_ctx;
    c->n_batch = o.n_batch;
    c->reference = o.reference;
    c->all_logits = o.all_logits;
    size_t B = o.n_batch, dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim;
    size_t max_in = dim > qdim ? dim : qdim;
    if (hp->ffn > max_in) max_in = hp->ffn;
    if (o.pool) {
        c->pool = o.pool;
    } else {
        c->pool = workers_create(o.n_threads);
        c->own_pool = true;
    }
    openblas_set_num_threads(workers_count(c->pool));
    c->x = falloc(B * dim);
    c->xb = falloc(B * dim);
    c->q = falloc(B * qdim);
    c->att = falloc(B * qdim);
    c->hb = falloc(B * hp->ffn);
    c->hb2 = falloc(B * hp->ffn);
    c->probs = falloc((size_t)hp->n_head * B * o.n_ctx);
    c->logits = falloc((o.all_logits ? B : 1) * hp->n_vocab);
    c->k_cache = calloc(hp->n_layer, sizeof *c->k_cache);
    c->v_cache = calloc(hp->n_layer, sizeof *c->v_cache);
    c->mask = malloc((size_t)hp->n_head * B * o.n_ctx);
    c->rope_cos = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    c->rope_sin = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    if (!c->pool || !c->x || !c->xb || !c->q || !c->att || !c->hb || !c->hb2 || !c->probs || !c->logits ||
        !c->k_cache || !c->v_cache || !c->mask || !c->rope_cos || !c->rope_sin ||
        ops_init(&c->ops, c->pool, B, max_in, o.reference) != 0) {
        tf_destroy(c);
        return SA_ERR_NOMEM;
    }
    share_plan_init(&c->plan, hp->n_layer);
    c->rb = rebalance_default_params();
    int rc = tf_reset(c, o.plan, &o.rebalance);
    if (rc) {
        tf_destroy(c);
        return rc;
    }
    size_t half = hp->n_rot / 2;
    for (size_t i = 0; i < half; i++) {
        double theta = pow((double)hp->rope_base, -2.0 * (double)i / hp->n_rot);
        for (size_t p = 0; p < o.n_ctx; p++) {
            c->rope_cos[p * half + i] = (float)cos((double)p * theta);
            c->rope_sin[p * half + i] = (float)sin((double)p * theta);
        }
    }
    *out = c;
    return 0;
}

void tf_destroy(struct tf_ctx *c)
{
    if (!c) return;
    ops_cleanup(&c->ops);
    if (c->own_pool) workers_destroy(c->pool);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->probs);
    free(c->logits);
    for (uint32_t l = 0; c->k_cache && l < c->m->hp.n_layer; l++) free(c->k_cache[l]);
    for (uint32_t l = 0; c->v_cache && l < c->m->hp.n_layer; l++) free(c->v_cache[l]);
    free(c->k_cache);
    free(c->v_cache);
    free(c->mask);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c);
}

uint32_t tf_n_ctx(const struct tf_ctx *c) { return c->n_ctx; }
uint32_t tf_n_batch(const struct tf_ctx *c) { return c->n_batch; }

int tf_reset(struct tf_ctx *c, const struct share_plan *plan, const struct rebalance_params *rb)
{
    const struct model_hparams *hp = &c->m->hp;
    if (plan && plan->n_layer != hp->n_layer) return SA_ERR_INVALID_ARG;
    if (rb && rb->on && !(isfinite(rb->alpha) && rb->tau >= 0 && rb->tau <= 1)) return SA_ERR_RANGE;
    if (plan)
        c->plan = *plan;
    else
        share_plan_init(&c->plan, hp->n_layer);
    c->rb = rb ? *rb : rebalance_default_params();
    c->flops_saved = 0;
    size_t layer_bytes = (size_t)c->n_ctx * hp->n_head_kv * hp->head_dim * sizeof(float);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        bool need_k = !share_plan_is_sharing(&c->plan, l);
        if (need_k && !c->k_cache[l]) {
            if (!(c->k_cache[l] = falloc(layer_bytes / sizeof(float)))) return SA_ERR_NOMEM;
            c->k_alloc += layer_bytes;
        } else if (!need_k && c->k_cache[l]) {
            free(c->k_cache[l]);
            c->k_cache[l] = NULL;
            c->k_alloc -= layer_bytes;
        }
        if (!c->v_cache[l]) {
            if (!(c->v_cache[l] = falloc(layer_bytes / sizeof(float)))) return SA_ERR_NOMEM;
            c->v_alloc += layer_bytes;
        }
    }
    return 0;
}

void tf_kv_allocated(const struct tf_ctx *c, size_t *k_bytes, size_t *v_bytes)
{
    *k_bytes = c->k_alloc;
    *v_bytes = c->v_alloc;
}

const struct share_plan *tf_plan(const struct tf_ctx *c) { return &c->plan; }

void tf_set_attention_hook(struct tf_ctx *c, tf_attention_hook fn, void *user)
{
    c->hook = fn;
    c->hook_user = user;
}

void tf_cache_stats(const struct tf_ctx *c, uint32_t tokens, struct tf_cache_stats *out)
{
    const struct model_hparams *hp = &c->m->hp;
    uint64_t per_layer = (uint64_t)tokens * hp->n_head_kv * hp->head_dim * sizeof(float);
    memset(out, 0, sizeof *out);
    out->layers = hp->n_layer;
    out->tokens = tokens;
    out->sharing_layers = share_plan_n_sharing(&c->plan);
    out->k_bytes = per_layer * (hp->n_layer - out->sharing_layers);
    out->v_bytes = per_layer * hp->n_layer;
    out->kv_bytes = out->k_bytes + out->v_bytes;
    out->kv_bytes_without_sharing = 2 * per_layer * hp->n_layer;
    out->kv_bytes_saved = out->kv_bytes_without_sharing - out->kv_bytes;
    out->kv_saved_ratio = out->kv_bytes_without_sharing
                              ? (double)out->kv_bytes_saved / (double)out->kv_bytes_without_sharing
                              : 0;
    out->attention_flops_saved = c->flops_saved;
}

/* One chunk of T <= n_batch tokens. */
static void forward_chunk(struct tf_ctx *c, const int32_t *tokens, uint32_t T, uint32_t pos0, bool logits_all)
{
    const struct model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim,
                 kvdim = (size_t)hp->n_head_kv * hp->head_dim, half = hp->n_rot / 2;
    const bool ref = c->reference;

    for (uint32_t t = 0; t < T; t++)
        quant_dequantize_row(m->token_embd.type, (const char *)m->token_embd.data + (size_t)tokens[t] * m->token_embd.row_bytes,
                             c->x + t * dim, dim);

    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct model_layer *L = &m->layers[l];
        const bool sharing = share_plan_is_sharing(&c->plan, l);
        float *kc = c->k_cache[l], *vc = c->v_cache[l];
        for (uint32_t t = 0; t < T; t++) ops_rmsnorm(c->xb + t * dim, c->x + t * dim, L->attn_norm, dim, hp->rms_eps, ref);
        if (!sharing) {
            const struct model_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
            float *ys[3] = {c->q, kc + (size_t)pos0 * kvdim, vc + (size_t)pos0 * kvdim};
            ops_matmul_many(&c->ops, ws, 3, c->xb, T, ys);
        } else {
            ops_matmul(&c->ops, &L->wv, c->xb, T, vc + (size_t)pos0 * kvdim);
        }
        if (!sharing) {
            for (uint32_t t = 0; t < T; t++) {
                const float *cs = c->rope_cos + (size_t)(pos0 + t) * half, *sn = c->rope_sin + (size_t)(pos0 + t) * half;
                ops_rope(c->q + t * qdim, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
                ops_rope(kc + (size_t)(pos0 + t) * kvdim, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            }
        } else {
            /* the source's probabilities are still in c->probs: no layer in between computes */
            for (uint32_t t = 0; t < T; t++)
                c->flops_saved += 2ull * dim * (qdim + kvdim) + (uint64_t)hp->n_head * (pos0 + t + 1) * (2ull * hp->head_dim + 5);
        }
        struct attn_args aa = {
            .q = c->q, .k = kc, .v = vc, .out = c->att, .probs = c->probs, .probs_stride = c->n_ctx,
            .T = T, .pos0 = pos0, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
            .head_dim = hp->head_dim, .kv_stride = kvdim, .compute_scores = !sharing, .reference = ref,
        };
        if (c->rb.on) {
            if (l == 0) {
                aa.mask_out = c->mask;
                aa.mask_tau = c->rb.tau;
            } else {
                aa.mask = c->mask;
                aa.boost = rebalance_factor(&c->rb, l, hp->n_layer);
                aa.renormalize = c->rb.renormalize;
            }
        }
        if (ref)
            attn_compute(&aa, 0, 1);
        else
            workers_run(c->pool, attn_compute, &aa);
        if (c->hook) c->hook(c->hook_user, l, c->probs, T, pos0, c->n_ctx);
        ops_matmul(&c->ops, &L->wo, c->att, T, c->xb);
        for (size_t i = 0; i < T * dim; i++) c->x[i] += c->xb[i];

        for (uint32_t t = 0; t < T; t++) ops_rmsnorm(c->xb + t * dim, c->x + t * dim, L->ffn_norm, dim, hp->rms_eps, ref);
        const struct model_weight *gu[2] = {&L->w_gate, &L->w_up};
        float *gu_out[2] = {c->hb, c->hb2};
        ops_matmul_many(&c->ops, gu, 2, c->xb, T, gu_out);
        ops_silu_mul(c->hb, c->hb2, (size_t)T * hp->ffn);
        ops_matmul(&c->ops, &L->w_down, c->hb, T, c->xb);
        for (size_t i = 0; i < T * dim; i++) c->x[i] += c->xb[i];
    }

    uint32_t first = logits_all ? 0 : T - 1, n_out = T - first;
    for (uint32_t t = first; t < T; t++)
        ops_rmsnorm(c->xb + (t - first) * dim, c->x + t * dim, m->output_norm, dim, hp->rms_eps, ref);
    ops_matmul(&c->ops, &m->output, c->xb, n_out, c->logits);
}

int tf_forward(struct tf_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, const float **logits)
{
    const struct model_hparams *hp = &c->m->hp;
    if (n == 0) return SA_ERR_INVALID_ARG;
    if ((uint64_t)pos0 + n > c->n_ctx) return SA_ERR_CONTEXT_FULL;
    if (c->all_logits && n > c->n_batch) return SA_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab) return SA_ERR_INVALID_ARG;
    for (uint32_t done = 0; done < n;) {
        uint32_t T = n - done < c->n_batch ? n - done : c->n_batch;
        forward_chunk(c, tokens + done, T, pos0 + done, c->all_logits);
        done += T;
    }
    *logits = c->logits;
    return 0;
}
