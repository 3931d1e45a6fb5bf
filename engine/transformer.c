#include "transformer.h"

#include "attention.h"
#include "defaults.h"
#include "errors.h"
#include "kvpool.h"
#include "kvseq.h"
#include "log.h"
#include "model.h"
#include "ops.h"
#include "quant.h"
#include "workers.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tf_seq {
    const struct model *m;
    uint32_t n_ctx;
    bool kv_f16;           /* pages hold F16 elements (else F32) */
    struct kv_seq kv;      /* page tables and reservation */
    struct kv_pool *own_pool; /* standalone: a pool for n_ctx positions */
    struct share_plan plan;
    struct rebalance_params rb;
    uint64_t flops_saved;
};

struct tf_ws {
    const struct model *m;
    uint32_t n_ctx, n_batch;
    bool reference, all_logits;
    struct workers *pool;
    bool own_pool;
    struct ops ops;
    /* activations, shapes for one step of B = n_batch rows */
    float *x;      /* [B][dim] residual stream */
    float *xb;     /* [B][dim] normed input */
    float *q;      /* [B][n_head*head_dim] */
    float *att;    /* [B][n_head*head_dim] attention output */
    float *hb;     /* [B][ffn] */
    float *hb2;    /* [B][ffn] */
    float *probs;  /* [n_head][R][n_ctx] attention probabilities of the R rows of a step */
    float *logits; /* [B or 1][n_vocab] (tf_forward's) */
    uint8_t *mask; /* [n_head][R][n_ctx] re-balancer mask of the current step */
    float *rope_cos; /* [n_ctx][n_rot/2] */
    float *rope_sin;
    /* per-row and per-segment indices of a step */
    uint32_t *seg_of;  /* [B] segment of each row */
    uint32_t *qrows;   /* [B] rows that compute Q/K in the current layer */
    struct attn_args rows[TF_MAX_BATCH];
    int32_t probs_of[TF_MAX_BATCH]; /* layer whose probabilities segment i's rows of probs hold, -1 none */
    tf_attention_hook hook;
    void *hook_user;
};

static float *falloc(size_t n)
{
    return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
}

size_t tf_kv_page_bytes(const struct model *m, uint32_t kv_block, bool f16)
{
    if (!kv_block) kv_block = SA_DEFAULT_KV_BLOCK;
    size_t b = (size_t)kv_block * m->hp.n_head_kv * m->hp.head_dim * (f16 ? 2 : sizeof(float));
    return (b + 63) / 64 * 64;
}

uint32_t tf_kv_pages_per_block(const struct model *m, const struct share_plan *plan)
{
    uint32_t L = m->hp.n_layer;
    return 2 * L - (plan ? share_plan_n_sharing(plan) : 0);
}

int tf_seq_create(const struct model *m, const struct tf_opts *opts, struct tf_seq **out)
{
    struct tf_opts o = opts ? *opts : (struct tf_opts){0};
    *out = NULL;
    const struct model_hparams *hp = &m->hp;
    if (!o.n_ctx) o.n_ctx = hp->n_ctx_train;
    if (!o.kv_block) o.kv_block = SA_DEFAULT_KV_BLOCK;
    size_t page_bytes = tf_kv_page_bytes(m, o.kv_block, o.kv_f16);
    if (o.kv_pool && kv_pool_page_bytes(o.kv_pool) != page_bytes) return SA_ERR_INVALID_ARG;
    struct tf_seq *s = calloc(1, sizeof *s);
    if (!s) return SA_ERR_NOMEM;
    s->m = m;
    s->n_ctx = o.n_ctx;
    s->kv_f16 = o.kv_f16;
    struct kv_pool *pool = o.kv_pool;
    int rc = 0;
    if (!pool) {
        uint32_t blocks = (o.n_ctx + o.kv_block - 1) / o.kv_block;
        rc = kv_pool_create(page_bytes, 2 * hp->n_layer * blocks, false, &s->own_pool);
        pool = s->own_pool;
    }
    if (!rc) rc = kv_seq_init(&s->kv, pool, hp->n_layer, o.n_ctx, o.kv_block, o.kv_pool != NULL);
    share_plan_init(&s->plan, hp->n_layer);
    s->rb = rebalance_default_params();
    if (!rc) rc = tf_reset(s, o.plan, &o.rebalance);
    if (rc) {
        tf_seq_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

void tf_seq_destroy(struct tf_seq *s)
{
    if (!s) return;
    kv_seq_cleanup(&s->kv);
    kv_pool_destroy(s->own_pool);
    free(s);
}

int tf_ws_create(const struct model *m, const struct tf_opts *opts, struct tf_ws **out)
{
    struct tf_opts o = opts ? *opts : (struct tf_opts){0};
    *out = NULL;
    const struct model_hparams *hp = &m->hp;
    if (!o.n_ctx) o.n_ctx = hp->n_ctx_train;
    if (!o.n_batch) o.n_batch = SA_DEFAULT_PREFILL_CHUNK;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if (o.n_batch > TF_MAX_ROWS) o.n_batch = TF_MAX_ROWS;
    if (o.n_threads < 1) o.n_threads = 1;
    struct tf_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return SA_ERR_NOMEM;
    ws->m = m;
    ws->n_ctx = o.n_ctx;
    ws->n_batch = o.n_batch;
    ws->reference = o.reference;
    ws->all_logits = o.all_logits;
    size_t B = o.n_batch, dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim;
    size_t max_in = dim > qdim ? dim : qdim;
    if (hp->ffn > max_in) max_in = hp->ffn;
    if (o.pool) {
        ws->pool = o.pool;
    } else {
        ws->pool = workers_create(o.n_threads);
        ws->own_pool = true;
        if (ws->pool) openblas_set_num_threads(workers_count(ws->pool)); /* standalone: the process's only pool */
    }
    ws->x = falloc(B * dim);
    ws->xb = falloc(B * dim);
    ws->q = falloc(B * qdim);
    ws->att = falloc(B * qdim);
    ws->hb = falloc(B * hp->ffn);
    ws->hb2 = falloc(B * hp->ffn);
    ws->probs = falloc((size_t)hp->n_head * B * o.n_ctx);
    ws->logits = falloc((o.all_logits ? B : 1) * hp->n_vocab);
    ws->mask = malloc((size_t)hp->n_head * B * o.n_ctx);
    ws->rope_cos = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    ws->rope_sin = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    ws->seg_of = malloc(B * sizeof *ws->seg_of);
    ws->qrows = malloc(B * sizeof *ws->qrows);
    if (!ws->pool || !ws->x || !ws->xb || !ws->q || !ws->att || !ws->hb || !ws->hb2 || !ws->probs || !ws->logits ||
        !ws->mask || !ws->rope_cos || !ws->rope_sin || !ws->seg_of || !ws->qrows ||
        ops_init(&ws->ops, ws->pool, B, max_in, o.reference) != 0) {
        tf_ws_destroy(ws);
        return SA_ERR_NOMEM;
    }
    size_t half = hp->n_rot / 2;
    for (size_t i = 0; i < half; i++) {
        double theta = pow((double)hp->rope_base, -2.0 * (double)i / hp->n_rot);
        for (size_t p = 0; p < o.n_ctx; p++) {
            ws->rope_cos[p * half + i] = (float)cos((double)p * theta);
            ws->rope_sin[p * half + i] = (float)sin((double)p * theta);
        }
    }
    *out = ws;
    return 0;
}

void tf_ws_destroy(struct tf_ws *ws)
{
    if (!ws) return;
    ops_cleanup(&ws->ops);
    if (ws->own_pool) workers_destroy(ws->pool);
    free(ws->x);
    free(ws->xb);
    free(ws->q);
    free(ws->att);
    free(ws->hb);
    free(ws->hb2);
    free(ws->probs);
    free(ws->logits);
    free(ws->mask);
    free(ws->rope_cos);
    free(ws->rope_sin);
    free(ws->seg_of);
    free(ws->qrows);
    free(ws);
}

uint32_t tf_ws_n_ctx(const struct tf_ws *ws) { return ws->n_ctx; }
uint32_t tf_ws_n_batch(const struct tf_ws *ws) { return ws->n_batch; }

void tf_release_kv(struct tf_seq *s) { kv_seq_release(&s->kv); }

int tf_reset(struct tf_seq *s, const struct share_plan *plan, const struct rebalance_params *rb)
{
    const struct model_hparams *hp = &s->m->hp;
    if (plan && plan->n_layer != hp->n_layer) return SA_ERR_INVALID_ARG;
    if (rb && rb->on && !(isfinite(rb->alpha) && rb->tau >= 0 && rb->tau <= 1)) return SA_ERR_RANGE;
    kv_seq_release(&s->kv);
    if (plan)
        s->plan = *plan;
    else
        share_plan_init(&s->plan, hp->n_layer);
    s->rb = rb ? *rb : rebalance_default_params();
    s->flops_saved = 0;
    return 0;
}

void tf_set_reservation(struct tf_seq *s, uint32_t pages) { kv_seq_set_reservation(&s->kv, pages); }
uint32_t tf_reservation_left(const struct tf_seq *s) { return kv_seq_reservation_left(&s->kv); }
uint32_t tf_blocks_held(const struct tf_seq *s) { return s->kv.n_blocks; }
uint32_t tf_block_pages(const struct tf_seq *s, uint32_t b, uint32_t *pages) { return kv_seq_block_pages(&s->kv, b, pages); }
int tf_adopt_block(struct tf_seq *s, const uint32_t *pages) { return kv_seq_adopt_block(&s->kv, &s->plan, pages); }

void tf_kv_allocated(const struct tf_seq *s, size_t *k_bytes, size_t *v_bytes)
{
    uint32_t k, v;
    kv_seq_count_pages(&s->kv, &k, &v);
    *k_bytes = (size_t)k * kv_pool_page_bytes(s->kv.pool);
    *v_bytes = (size_t)v * kv_pool_page_bytes(s->kv.pool);
}

const struct share_plan *tf_plan(const struct tf_seq *s) { return &s->plan; }

void tf_set_attention_hook(struct tf_ws *ws, tf_attention_hook fn, void *user)
{
    ws->hook = fn;
    ws->hook_user = user;
}

void tf_cache_stats(const struct tf_seq *c, uint32_t tokens, struct tf_cache_stats *out)
{
    const struct model_hparams *hp = &c->m->hp;
    uint64_t per_layer = (uint64_t)tokens * hp->n_head_kv * hp->head_dim * (c->kv_f16 ? 2 : sizeof(float));
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
    out->block_tokens = c->kv.block;
    kv_seq_count_pages(&c->kv, &out->k_pages, &out->v_pages);
    out->page_bytes = kv_pool_page_bytes(c->kv.pool);
    out->k_bytes_paged = out->k_pages * out->page_bytes;
    out->v_bytes_paged = out->v_pages * out->page_bytes;
    out->kv_bytes_paged = out->k_bytes_paged + out->v_bytes_paged;
}

/* Attention of layer l for sequence c: T query rows q at positions pos0.., into
 * out; probabilities (and the re-balancer mask) rows in ws's buffers from row r0
 * of a step of R rows. */
static struct attn_args attn_setup(const struct tf_ws *ws, const struct tf_seq *c, uint32_t l, uint32_t T,
                                   uint32_t pos0, uint32_t r0, uint32_t R, const float *q, float *out)
{
    const struct model_hparams *hp = &c->m->hp;
    const size_t row0 = (size_t)r0 * ws->n_ctx;
    struct attn_args aa = {
        .q = q, .k_pages = (const void *const *)kv_seq_k_pages(&c->kv, l),
        .v_pages = (const void *const *)kv_seq_v_pages(&c->kv, l), .block = c->kv.block, .kv_f16 = c->kv_f16,
        .out = out, .probs = ws->probs + row0, .probs_stride = ws->n_ctx,
        .probs_hstride = (size_t)R * ws->n_ctx, .T = T, .pos0 = pos0, .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .kv_stride = (size_t)hp->n_head_kv * hp->head_dim,
        .compute_scores = !share_plan_is_sharing(&c->plan, l), .reference = ws->reference,
    };
    if (c->rb.on) {
        if (l == 0) {
            aa.mask_out = ws->mask + row0;
            aa.mask_tau = c->rb.tau;
        } else {
            aa.mask = ws->mask + row0;
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

/* The feed-forward block on T rows of x (residual added). */
static void ffn_rows(struct tf_ws *ws, const struct model_layer *L, uint32_t T)
{
    const struct model_hparams *hp = &ws->m->hp;
    const size_t dim = hp->dim;
    for (uint32_t t = 0; t < T; t++)
        ops_rmsnorm(ws->xb + t * dim, ws->x + t * dim, L->ffn_norm, dim, hp->rms_eps, ws->reference);
    const struct model_weight *gu[2] = {&L->w_gate, &L->w_up};
    float *gu_out[2] = {ws->hb, ws->hb2};
    ops_matmul_many(&ws->ops, gu, 2, ws->xb, T, gu_out);
    ops_silu_mul(ws->hb, ws->hb2, (size_t)T * hp->ffn);
    ops_matmul(&ws->ops, &L->w_down, ws->hb, T, ws->xb);
    for (size_t i = 0; i < T * dim; i++) ws->x[i] += ws->xb[i];
}

/* Store one K or V row (kvdim floats) at position p of a layer's pages. */
static void page_store(const struct tf_seq *c, void *const *pages, uint32_t p, const float *src)
{
    const size_t kvdim = (size_t)c->m->hp.n_head_kv * c->m->hp.head_dim, idx = (size_t)(p % c->kv.block) * kvdim;
    void *page = pages[p / c->kv.block];
    if (c->kv_f16)
        quant_quantize_row(QUANT_F16, src, (uint16_t *)page + idx, kvdim);
    else
        memcpy((float *)page + idx, src, kvdim * sizeof(float));
}

/* Q, K and V of layer l for the R rows in ws->xb: Q into ws->q, K and V rows
 * into each segment's pages (K rotated, Q rotated). */
static void qkv_rows(struct tf_ws *ws, const struct tf_seg *segs, uint32_t n_segs, uint32_t R, uint32_t l)
{
    const struct model_hparams *hp = &ws->m->hp;
    const struct model_layer *L = &ws->m->layers[l];
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim, kvdim = (size_t)hp->n_head_kv * hp->head_dim,
                 half = hp->n_rot / 2;
    /* rows whose sequence computes this layer's attention: Q and K only for them */
    uint32_t *idx = ws->qrows, nq = 0;
    for (uint32_t r = 0; r < R; r++)
        if (!share_plan_is_sharing(&segs[ws->seg_of[r]].seq->plan, l)) idx[nq++] = r;
    float *vtmp = ws->hb, *ktmp = ws->hb2; /* [R][kvdim] each; the FFN overwrites them later */
    if (nq == R) {
        const struct model_weight *w3[3] = {&L->wq, &L->wk, &L->wv};
        float *y3[3] = {ws->q, ktmp, vtmp};
        ops_matmul_many(&ws->ops, w3, 3, ws->xb, R, y3);
    } else {
        ops_matmul(&ws->ops, &L->wv, ws->xb, R, vtmp);
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
    uint32_t r = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        struct tf_seq *c = segs[i].seq;
        const bool sharing = share_plan_is_sharing(&c->plan, l);
        void *const *vp = kv_seq_v_pages(&c->kv, l), *const *kp = kv_seq_k_pages(&c->kv, l);
        for (uint32_t t = 0; t < segs[i].T; t++, r++) {
            const uint32_t pos = segs[i].pos0 + t;
            page_store(c, vp, pos, vtmp + (size_t)r * kvdim);
            if (sharing) {
                c->flops_saved += shared_flops(hp, pos);
                continue;
            }
            float *k = ktmp + (size_t)r * kvdim;
            const float *cs = ws->rope_cos + (size_t)pos * half, *sn = ws->rope_sin + (size_t)pos * half;
            ops_rope(ws->q + (size_t)r * qdim, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            ops_rope(k, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            page_store(c, kp, pos, k);
        }
    }
}

int tf_step(struct tf_ws *ws, const struct tf_seg *segs, uint32_t n_segs, float *logits)
{
    const struct model *m = ws->m;
    const struct model_hparams *hp = &m->hp;
    if (n_segs == 0 || n_segs > TF_MAX_BATCH) return SA_ERR_INVALID_ARG;
    uint32_t R = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        const struct tf_seg *sg = &segs[i];
        const struct tf_seq *c = sg->seq;
        if (c->m != m || sg->T == 0) return SA_ERR_INVALID_ARG;
        if ((uint64_t)sg->pos0 + sg->T > c->n_ctx || sg->pos0 + sg->T > ws->n_ctx) return SA_ERR_CONTEXT_FULL;
        if (sg->pos0 > c->kv.n_blocks * c->kv.block) return SA_ERR_INVALID_ARG; /* a gap in the cache */
        for (uint32_t t = 0; t < sg->T; t++)
            if (sg->tokens[t] < 0 || (uint32_t)sg->tokens[t] >= hp->n_vocab) return SA_ERR_INVALID_ARG;
        R += sg->T;
        if (R > ws->n_batch) return SA_ERR_INVALID_ARG;
        for (uint32_t k = 0; k < i; k++)
            if (segs[k].seq == c) return SA_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < n_segs; i++) {
        int rc = kv_seq_prepare(&segs[i].seq->kv, &segs[i].seq->plan, segs[i].pos0, segs[i].pos0 + segs[i].T);
        if (rc) return rc;
    }
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim;
    for (uint32_t i = 0, r = 0; i < n_segs; i++) {
        ws->probs_of[i] = -1;
        for (uint32_t t = 0; t < segs[i].T; t++, r++) {
            ws->seg_of[r] = i;
            const int32_t tok = segs[i].tokens[t];
            quant_dequantize_row(m->token_embd.type, (const char *)m->token_embd.data + (size_t)tok * m->token_embd.row_bytes,
                                 ws->x + (size_t)r * dim, dim);
        }
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct model_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < R; r++)
            ops_rmsnorm(ws->xb + (size_t)r * dim, ws->x + (size_t)r * dim, L->attn_norm, dim, hp->rms_eps, ws->reference);
        qkv_rows(ws, segs, n_segs, R, l);
        for (uint32_t i = 0, r0 = 0; i < n_segs; r0 += segs[i].T, i++) {
            const struct share_plan *plan = &segs[i].seq->plan;
            /* Shared Attention: a sharing layer reads its source's probabilities, which must
             * still be the ones in ws->probs (no layer in between computed this segment's) */
            if (share_plan_is_sharing(plan, l))
                SA_ASSERT(ws->probs_of[i] == plan->source[l]);
            else
                ws->probs_of[i] = (int32_t)l;
            ws->rows[i] = attn_setup(ws, segs[i].seq, l, segs[i].T, segs[i].pos0, r0, R, ws->q + (size_t)r0 * qdim,
                                     ws->att + (size_t)r0 * qdim);
        }
        struct attn_batch ab = {.rows = ws->rows, .n = n_segs, .next = 0};
        if (ws->reference)
            attn_compute_batch(&ab, 0, 1);
        else
            workers_run(ws->pool, attn_compute_batch, &ab);
        if (ws->hook && n_segs == 1) ws->hook(ws->hook_user, l, ws->probs, R, segs[0].pos0, ws->n_ctx);
        ops_matmul(&ws->ops, &L->wo, ws->att, R, ws->xb);
        for (size_t i = 0; i < R * dim; i++) ws->x[i] += ws->xb[i];
        ffn_rows(ws, L, R);
    }
    /* final hidden states of the segments that want them (embeddings) */
    for (uint32_t i = 0, r = 0; i < n_segs; r += segs[i].T, i++)
        for (uint32_t t = 0; segs[i].hidden && t < segs[i].T; t++)
            ops_rmsnorm(segs[i].hidden + (size_t)t * dim, ws->x + (size_t)(r + t) * dim, m->output_norm, dim, hp->rms_eps,
                        ws->reference);
    /* logits: every row (all_logits, one segment), else each asking segment's last row */
    if (ws->all_logits && n_segs == 1) {
        for (uint32_t t = 0; t < R; t++)
            ops_rmsnorm(ws->xb + (size_t)t * dim, ws->x + (size_t)t * dim, m->output_norm, dim, hp->rms_eps, ws->reference);
        ops_matmul(&ws->ops, &m->output, ws->xb, R, logits);
        return 0;
    }
    uint32_t n_out = 0;
    for (uint32_t i = 0, r = 0; i < n_segs; i++) {
        r += segs[i].T;
        if (segs[i].want_logits)
            ops_rmsnorm(ws->xb + (size_t)n_out++ * dim, ws->x + (size_t)(r - 1) * dim, m->output_norm, dim, hp->rms_eps,
                        ws->reference);
    }
    if (n_out) ops_matmul(&ws->ops, &m->output, ws->xb, n_out, logits);
    return 0;
}

int tf_output_logits(struct tf_ws *ws, const float *rows, uint32_t n, float *logits)
{
    if (n == 0 || n > ws->n_batch) return SA_ERR_INVALID_ARG;
    ops_matmul(&ws->ops, &ws->m->output, rows, n, logits);
    return 0;
}

int tf_forward(struct tf_ws *ws, struct tf_seq *s, const int32_t *tokens, uint32_t n, uint32_t pos0,
               const float **logits)
{
    if (n == 0) return SA_ERR_INVALID_ARG;
    if ((uint64_t)pos0 + n > s->n_ctx) return SA_ERR_CONTEXT_FULL;
    if (ws->all_logits && n > ws->n_batch) return SA_ERR_INVALID_ARG;
    for (uint32_t done = 0; done < n;) {
        uint32_t T = n - done < ws->n_batch ? n - done : ws->n_batch;
        struct tf_seg sg = {.seq = s, .tokens = tokens + done, .T = T, .pos0 = pos0 + done,
                            .want_logits = done + T == n};
        int rc = tf_step(ws, &sg, 1, ws->logits);
        if (rc) return rc;
        done += T;
    }
    *logits = ws->logits;
    return 0;
}
