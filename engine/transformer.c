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

/* Attention of layer l for c's sequence: T query rows q at positions pos0.. into out. */
static struct attn_args attn_setup(const struct tf_ctx *c, uint32_t l, uint32_t T, uint32_t pos0, const float *q,
                                   float *out)
{
    const struct model_hparams *hp = &c->m->hp;
    struct attn_args aa = {
        .q = q, .k = c->k_cache[l], .v = c->v_cache[l], .out = out, .probs = c->probs, .probs_stride = c->n_ctx,
        .T = T, .pos0 = pos0, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
        .kv_stride = (size_t)hp->n_head_kv * hp->head_dim, .compute_scores = !share_plan_is_sharing(&c->plan, l),
        .reference = c->reference,
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
    return aa;
}

/* FLOPs a sharing layer skips for one token at position pos (see tf_cache_stats). */
static uint64_t shared_flops(const struct model_hparams *hp, uint32_t pos)
{
    const uint64_t dim = hp->dim, qdim = (uint64_t)hp->n_head * hp->head_dim, kvdim = (uint64_t)hp->n_head_kv * hp->head_dim;
    return 2 * dim * (qdim + kvdim) + (uint64_t)hp->n_head * (pos + 1) * (2ull * hp->head_dim + 5);
}

/* The feed-forward block on T rows of x (residual added), scratch from c. */
static void ffn_rows(struct tf_ctx *c, const struct model_layer *L, uint32_t T)
{
    const struct model_hparams *hp = &c->m->hp;
    const size_t dim = hp->dim;
    for (uint32_t t = 0; t < T; t++) ops_rmsnorm(c->xb + t * dim, c->x + t * dim, L->ffn_norm, dim, hp->rms_eps, c->reference);
    const struct model_weight *gu[2] = {&L->w_gate, &L->w_up};
    float *gu_out[2] = {c->hb, c->hb2};
    ops_matmul_many(&c->ops, gu, 2, c->xb, T, gu_out);
    ops_silu_mul(c->hb, c->hb2, (size_t)T * hp->ffn);
    ops_matmul(&c->ops, &L->w_down, c->hb, T, c->xb);
    for (size_t i = 0; i < T * dim; i++) c->x[i] += c->xb[i];
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
            for (uint32_t t = 0; t < T; t++) c->flops_saved += shared_flops(hp, pos0 + t);
        }
        struct attn_args aa = attn_setup(c, l, T, pos0, c->q, c->att);
        if (ref)
            attn_compute(&aa, 0, 1);
        else
            workers_run(c->pool, attn_compute, &aa);
        if (c->hook) c->hook(c->hook_user, l, c->probs, T, pos0, c->n_ctx);
        ops_matmul(&c->ops, &L->wo, c->att, T, c->xb);
        for (size_t i = 0; i < T * dim; i++) c->x[i] += c->xb[i];
        ffn_rows(c, L, T);
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

int tf_forward_batch(struct tf_ctx *ws, struct tf_ctx *const *ctxs, const int32_t *tokens, const uint32_t *pos,
                     uint32_t n, float *logits)
{
    const struct model *m = ws->m;
    const struct model_hparams *hp = &m->hp;
    if (n == 0 || n > ws->n_batch) return SA_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < n; i++) {
        if (ctxs[i]->m != m) return SA_ERR_INVALID_ARG;
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab) return SA_ERR_INVALID_ARG;
        if (pos[i] >= ctxs[i]->n_ctx) return SA_ERR_CONTEXT_FULL;
    }
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim, kvdim = (size_t)hp->n_head_kv * hp->head_dim,
                 half = hp->n_rot / 2;
    struct attn_args rows[TF_MAX_BATCH];
    if (n > TF_MAX_BATCH) return SA_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < n; i++)
        quant_dequantize_row(m->token_embd.type, (const char *)m->token_embd.data + (size_t)tokens[i] * m->token_embd.row_bytes,
                             ws->x + i * dim, dim);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct model_layer *L = &m->layers[l];
        for (uint32_t i = 0; i < n; i++)
            ops_rmsnorm(ws->xb + i * dim, ws->x + i * dim, L->attn_norm, dim, hp->rms_eps, ws->reference);
        /* rows whose sequence computes this layer's attention: Q and K only for them */
        uint32_t idx[TF_MAX_BATCH], nq = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!share_plan_is_sharing(&ctxs[i]->plan, l)) idx[nq++] = i;
        float *vtmp = ws->hb, *ktmp = ws->hb2; /* [n][kvdim] each; the FFN overwrites them later */
        if (nq == n) {
            const struct model_weight *w3[3] = {&L->wq, &L->wk, &L->wv};
            float *y3[3] = {ws->q, ktmp, vtmp};
            ops_matmul_many(&ws->ops, w3, 3, ws->xb, n, y3);
        } else {
            ops_matmul(&ws->ops, &L->wv, ws->xb, n, vtmp);
            if (nq) { /* gather the computing rows, project, scatter back (backwards: idx[k] >= k) */
                for (uint32_t k = 0; k < nq; k++) memcpy(ws->att + k * dim, ws->xb + (size_t)idx[k] * dim, dim * sizeof(float));
                const struct model_weight *w2[2] = {&L->wq, &L->wk};
                float *y2[2] = {ws->q, ktmp};
                ops_matmul_many(&ws->ops, w2, 2, ws->att, nq, y2);
                for (uint32_t k = nq; k-- > 0;) {
                    memmove(ws->q + (size_t)idx[k] * qdim, ws->q + k * qdim, qdim * sizeof(float));
                    memmove(ktmp + (size_t)idx[k] * kvdim, ktmp + k * kvdim, kvdim * sizeof(float));
                }
            }
        }
        for (uint32_t i = 0; i < n; i++) {
            struct tf_ctx *c = ctxs[i];
            memcpy(c->v_cache[l] + (size_t)pos[i] * kvdim, vtmp + i * kvdim, kvdim * sizeof(float));
            if (share_plan_is_sharing(&c->plan, l)) {
                c->flops_saved += shared_flops(hp, pos[i]);
            } else {
                float *k = c->k_cache[l] + (size_t)pos[i] * kvdim;
                memcpy(k, ktmp + i * kvdim, kvdim * sizeof(float));
                const float *cs = ws->rope_cos + (size_t)pos[i] * half, *sn = ws->rope_sin + (size_t)pos[i] * half;
                ops_rope(ws->q + i * qdim, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
                ops_rope(k, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            }
            rows[i] = attn_setup(c, l, 1, pos[i], ws->q + i * qdim, ws->att + i * qdim);
        }
        struct attn_batch ab = {.rows = rows, .n = n};
        if (ws->reference)
            attn_compute_batch(&ab, 0, 1);
        else
            workers_run(ws->pool, attn_compute_batch, &ab);
        ops_matmul(&ws->ops, &L->wo, ws->att, n, ws->xb);
        for (size_t i = 0; i < n * dim; i++) ws->x[i] += ws->xb[i];
        ffn_rows(ws, L, n);
    }
    for (uint32_t i = 0; i < n; i++)
        ops_rmsnorm(ws->xb + i * dim, ws->x + i * dim, m->output_norm, dim, hp->rms_eps, ws->reference);
    ops_matmul(&ws->ops, &m->output, ws->xb, n, logits);
    return 0;
}
