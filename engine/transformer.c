#include "transformer.h"

#include "attention.h"
#include "errors.h"
#include "kvpool.h"
#include "model.h"
#include "ops.h"
#include "quant.h"
#include "workers.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tf_ctx {
    const struct model *m;
    uint32_t n_ctx, n_batch;
    bool reference, all_logits, scratch;
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
    float *logits; /* [B or 1][n_vocab] */
    uint8_t *mask; /* [n_head][R][n_ctx] re-balancer mask of the current step */
    /* paged KV cache: [n_layer][max_blocks] page ids (KV_NO_PAGE: none) and their addresses */
    struct kv_pool *kv;
    bool own_kv;
    uint32_t block, max_blocks, n_blocks;
    uint32_t reserve_left; /* borrowed pool: pages this sequence may still take */
    bool kv_f16;           /* pages hold F16 elements (else F32) */
    uint32_t *kpt, *vpt;
    float **kptr, **vptr;  /* page addresses (F16 pages are read through attention.c) */
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

size_t tf_kv_page_bytes(const struct model *m, uint32_t kv_block, bool f16)
{
    if (!kv_block) kv_block = 16;
    size_t b = (size_t)kv_block * m->hp.n_head_kv * m->hp.head_dim * (f16 ? 2 : sizeof(float));
    return (b + 63) / 64 * 64;
}

uint32_t tf_kv_pages_per_block(const struct model *m, const struct share_plan *plan)
{
    uint32_t L = m->hp.n_layer;
    return 2 * L - (plan ? share_plan_n_sharing(plan) : 0);
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
    if (!o.kv_block) o.kv_block = 16;
    if (o.kv_pool && kv_pool_page_bytes(o.kv_pool) != tf_kv_page_bytes(m, o.kv_block, o.kv_f16)) return SA_ERR_INVALID_ARG;
    struct tf_ctx *c = calloc(1, sizeof *c);
    if (!c) return SA_ERR_NOMEM;
    c->m = m;
    c->n_ctx = o.n_ctx;
    c->n_batch = o.n_batch;
    c->reference = o.reference;
    c->all_logits = o.all_logits;
    c->scratch = !o.no_scratch;
    c->block = o.kv_block;
    c->kv_f16 = o.kv_f16;
    c->max_blocks = (o.n_ctx + o.kv_block - 1) / o.kv_block;
    size_t tables = (size_t)hp->n_layer * c->max_blocks;
    c->kpt = malloc(tables * sizeof *c->kpt);
    c->vpt = malloc(tables * sizeof *c->vpt);
    c->kptr = calloc(tables, sizeof *c->kptr);
    c->vptr = calloc(tables, sizeof *c->vptr);
    if (!c->kpt || !c->vpt || !c->kptr || !c->vptr) {
        tf_destroy(c);
        return SA_ERR_NOMEM;
    }
    for (size_t i = 0; i < tables; i++) c->kpt[i] = c->vpt[i] = KV_NO_PAGE;
    if (o.kv_pool) {
        c->kv = o.kv_pool;
    } else {
        int rc = kv_pool_create(tf_kv_page_bytes(m, o.kv_block, o.kv_f16), (uint32_t)(2 * tables), false, &c->kv);
        if (rc) {
            tf_destroy(c);
            return rc;
        }
        c->own_kv = true;
    }
    share_plan_init(&c->plan, hp->n_layer);
    c->rb = rebalance_default_params();
    int rc = tf_reset(c, o.plan, &o.rebalance);
    if (rc || !c->scratch) {
        if (rc) tf_destroy(c);
        else *out = c;
        return rc;
    }
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
    c->mask = malloc((size_t)hp->n_head * B * o.n_ctx);
    c->rope_cos = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    c->rope_sin = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    if (!c->pool || !c->x || !c->xb || !c->q || !c->att || !c->hb || !c->hb2 || !c->probs || !c->logits ||
        !c->mask || !c->rope_cos || !c->rope_sin || ops_init(&c->ops, c->pool, B, max_in, o.reference) != 0) {
        tf_destroy(c);
        return SA_ERR_NOMEM;
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
    if (c->kv && c->kpt && c->vpt) tf_release_kv(c);
    if (c->own_kv) kv_pool_destroy(c->kv);
    if (c->scratch) ops_cleanup(&c->ops);
    if (c->own_pool) workers_destroy(c->pool);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->probs);
    free(c->logits);
    free(c->kpt);
    free(c->vpt);
    free(c->kptr);
    free(c->vptr);
    free(c->mask);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c);
}

uint32_t tf_n_ctx(const struct tf_ctx *c) { return c->n_ctx; }
uint32_t tf_n_batch(const struct tf_ctx *c) { return c->n_batch; }

void tf_release_kv(struct tf_ctx *c)
{
    const uint32_t L = c->m->hp.n_layer;
    for (uint32_t l = 0; l < L; l++)
        for (uint32_t b = 0; b < c->n_blocks; b++) {
            size_t i = (size_t)l * c->max_blocks + b;
            if (c->kpt[i] != KV_NO_PAGE) kv_pool_unref(c->kv, c->kpt[i]);
            if (c->vpt[i] != KV_NO_PAGE) kv_pool_unref(c->kv, c->vpt[i]);
            c->kpt[i] = c->vpt[i] = KV_NO_PAGE;
            c->kptr[i] = c->vptr[i] = NULL;
        }
    c->n_blocks = 0;
}

int tf_reset(struct tf_ctx *c, const struct share_plan *plan, const struct rebalance_params *rb)
{
    const struct model_hparams *hp = &c->m->hp;
    if (plan && plan->n_layer != hp->n_layer) return SA_ERR_INVALID_ARG;
    if (rb && rb->on && !(isfinite(rb->alpha) && rb->tau >= 0 && rb->tau <= 1)) return SA_ERR_RANGE;
    tf_release_kv(c);
    if (plan)
        c->plan = *plan;
    else
        share_plan_init(&c->plan, hp->n_layer);
    c->rb = rb ? *rb : rebalance_default_params();
    c->flops_saved = 0;
    return 0;
}

void tf_set_reservation(struct tf_ctx *c, uint32_t pages) { c->reserve_left = pages; }
uint32_t tf_reservation_left(const struct tf_ctx *c) { return c->reserve_left; }

/* A page for (table entry i): fresh, from this sequence's reservation when the pool is borrowed. */
static int take_page(struct tf_ctx *c, uint32_t *pt, float **ptr, size_t i)
{
    if (!c->own_kv && !c->reserve_left) return SA_ERR_NOMEM;
    uint32_t id = kv_pool_alloc(c->kv, !c->own_kv);
    if (id == KV_NO_PAGE) return SA_ERR_NOMEM;
    if (!c->own_kv) c->reserve_left--;
    pt[i] = id;
    ptr[i] = kv_pool_page(c->kv, id);
    return 0;
}

/* Before a write into table entry i: a page shared with others is copied first. */
static int own_page(struct tf_ctx *c, uint32_t *pt, float **ptr, size_t i)
{
    if (pt[i] == KV_NO_PAGE || kv_pool_refcount(c->kv, pt[i]) == 1) return 0;
    uint32_t old = pt[i];
    int rc = take_page(c, pt, ptr, i);
    if (rc) return rc;
    memcpy(ptr[i], kv_pool_page(c->kv, old), kv_pool_page_bytes(c->kv));
    kv_pool_unref(c->kv, old);
    return 0;
}

/* Make positions [pos0, end) writable: pages for new blocks, private copies of shared ones. */
static int kv_prepare(struct tf_ctx *c, uint32_t pos0, uint32_t end)
{
    const uint32_t L = c->m->hp.n_layer;
    for (uint32_t b = pos0 / c->block; b < (end + c->block - 1) / c->block; b++) {
        bool fresh = b >= c->n_blocks;
        if (fresh) c->n_blocks = b + 1; /* its entries stay KV_NO_PAGE until taken: a failure releases cleanly */
        int (*get)(struct tf_ctx *, uint32_t *, float **, size_t) = fresh ? take_page : own_page;
        for (uint32_t l = 0; l < L; l++) {
            size_t i = (size_t)l * c->max_blocks + b;
            int rc = get(c, c->vpt, c->vptr, i);
            if (!rc && !share_plan_is_sharing(&c->plan, l)) rc = get(c, c->kpt, c->kptr, i);
            if (rc) return rc;
        }
    }
    return 0;
}

uint32_t tf_blocks_held(const struct tf_ctx *c) { return c->n_blocks; }

uint32_t tf_block_pages(const struct tf_ctx *c, uint32_t b, uint32_t *pages)
{
    uint32_t n = 0;
    if (b >= c->n_blocks) return 0;
    for (uint32_t l = 0; l < c->m->hp.n_layer; l++) {
        size_t i = (size_t)l * c->max_blocks + b;
        if (c->kpt[i] != KV_NO_PAGE) pages[n++] = c->kpt[i];
        pages[n++] = c->vpt[i];
    }
    return n;
}

int tf_adopt_block(struct tf_ctx *c, const uint32_t *pages)
{
    if (c->n_blocks >= c->max_blocks) return SA_ERR_CONTEXT_FULL;
    uint32_t b = c->n_blocks, n = 0;
    for (uint32_t l = 0; l < c->m->hp.n_layer; l++) {
        size_t i = (size_t)l * c->max_blocks + b;
        if (!share_plan_is_sharing(&c->plan, l)) {
            c->kpt[i] = pages[n++];
            c->kptr[i] = kv_pool_page(c->kv, c->kpt[i]);
            kv_pool_ref(c->kv, c->kpt[i]);
        }
        c->vpt[i] = pages[n++];
        c->vptr[i] = kv_pool_page(c->kv, c->vpt[i]);
        kv_pool_ref(c->kv, c->vpt[i]);
    }
    c->n_blocks = b + 1;
    return 0;
}

static void count_pages(const struct tf_ctx *c, uint32_t *k, uint32_t *v)
{
    *k = *v = 0;
    for (uint32_t l = 0; l < c->m->hp.n_layer; l++)
        for (uint32_t b = 0; b < c->n_blocks; b++) {
            size_t i = (size_t)l * c->max_blocks + b;
            *k += c->kpt[i] != KV_NO_PAGE;
            *v += c->vpt[i] != KV_NO_PAGE;
        }
}

void tf_kv_allocated(const struct tf_ctx *c, size_t *k_bytes, size_t *v_bytes)
{
    uint32_t k, v;
    count_pages(c, &k, &v);
    *k_bytes = (size_t)k * kv_pool_page_bytes(c->kv);
    *v_bytes = (size_t)v * kv_pool_page_bytes(c->kv);
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
    out->block_tokens = c->block;
    count_pages(c, &out->k_pages, &out->v_pages);
    out->page_bytes = kv_pool_page_bytes(c->kv);
    out->k_bytes_paged = out->k_pages * out->page_bytes;
    out->v_bytes_paged = out->v_pages * out->page_bytes;
    out->kv_bytes_paged = out->k_bytes_paged + out->v_bytes_paged;
}

/* Attention of layer l for sequence c: T query rows q at positions pos0.., into
 * out; probabilities (and the re-balancer mask) rows in ws's buffers from row r0
 * of a step of R rows. */
static struct attn_args attn_setup(const struct tf_ctx *ws, const struct tf_ctx *c, uint32_t l, uint32_t T,
                                   uint32_t pos0, uint32_t r0, uint32_t R, const float *q, float *out)
{
    const struct model_hparams *hp = &c->m->hp;
    const size_t row0 = (size_t)r0 * ws->n_ctx;
    size_t off = (size_t)l * c->max_blocks;
    struct attn_args aa = {
        .q = q, .k_pages = (const void *const *)(c->kptr + off), .v_pages = (const void *const *)(c->vptr + off),
        .block = c->block, .kv_f16 = c->kv_f16, .out = out, .probs = ws->probs + row0, .probs_stride = ws->n_ctx,
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

/* Store one K or V row (kvdim floats) at position p of layer l's pages. */
static void page_store(const struct tf_ctx *c, float *const *ptr, uint32_t l, uint32_t p, const float *src)
{
    const size_t kvdim = (size_t)c->m->hp.n_head_kv * c->m->hp.head_dim, idx = (size_t)(p % c->block) * kvdim;
    float *page = ptr[(size_t)l * c->max_blocks + p / c->block];
    if (c->kv_f16)
        quant_quantize_row(QUANT_F16, src, (uint16_t *)page + idx, kvdim);
    else
        memcpy(page + idx, src, kvdim * sizeof(float));
}

/* Q, K and V of layer l for the R rows in ws->xb: Q into ws->q, K and V rows
 * into each segment's pages (K rotated, Q rotated). */
static void qkv_rows(struct tf_ctx *ws, const struct tf_seg *segs, uint32_t n_segs, const uint32_t *seg_of,
                     uint32_t R, uint32_t l)
{
    const struct model_hparams *hp = &ws->m->hp;
    const struct model_layer *L = &ws->m->layers[l];
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim, kvdim = (size_t)hp->n_head_kv * hp->head_dim,
                 half = hp->n_rot / 2;
    /* rows whose sequence computes this layer's attention: Q and K only for them */
    static _Thread_local uint32_t idx[TF_MAX_ROWS];
    uint32_t nq = 0;
    for (uint32_t r = 0; r < R; r++)
        if (!share_plan_is_sharing(&segs[seg_of[r]].seq->plan, l)) idx[nq++] = r;
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
        struct tf_ctx *c = segs[i].seq;
        const bool sharing = share_plan_is_sharing(&c->plan, l);
        for (uint32_t t = 0; t < segs[i].T; t++, r++) {
            const uint32_t pos = segs[i].pos0 + t;
            page_store(c, c->vptr, l, pos, vtmp + (size_t)r * kvdim);
            if (sharing) {
                c->flops_saved += shared_flops(hp, pos);
                continue;
            }
            float *k = ktmp + (size_t)r * kvdim;
            const float *cs = ws->rope_cos + (size_t)pos * half, *sn = ws->rope_sin + (size_t)pos * half;
            ops_rope(ws->q + (size_t)r * qdim, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            ops_rope(k, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            page_store(c, c->kptr, l, pos, k);
        }
    }
}

int tf_step(struct tf_ctx *ws, const struct tf_seg *segs, uint32_t n_segs, float *logits)
{
    const struct model *m = ws->m;
    const struct model_hparams *hp = &m->hp;
    if (!ws->scratch || n_segs == 0 || n_segs > TF_MAX_BATCH) return SA_ERR_INVALID_ARG;
    uint32_t R = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        const struct tf_seg *sg = &segs[i];
        if (sg->seq->m != m || sg->T == 0 || sg->seq->kv_f16 != ws->kv_f16) return SA_ERR_INVALID_ARG;
        if ((uint64_t)sg->pos0 + sg->T > sg->seq->n_ctx || sg->pos0 + sg->T > ws->n_ctx) return SA_ERR_CONTEXT_FULL;
        if (sg->pos0 > sg->seq->n_blocks * sg->seq->block) return SA_ERR_INVALID_ARG; /* a gap in the cache */
        for (uint32_t t = 0; t < sg->T; t++)
            if (sg->tokens[t] < 0 || (uint32_t)sg->tokens[t] >= hp->n_vocab) return SA_ERR_INVALID_ARG;
        R += sg->T;
        if (R > ws->n_batch || R > TF_MAX_ROWS) return SA_ERR_INVALID_ARG;
        for (uint32_t k = 0; k < i; k++)
            if (segs[k].seq == sg->seq) return SA_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < n_segs; i++) {
        int rc = kv_prepare(segs[i].seq, segs[i].pos0, segs[i].pos0 + segs[i].T);
        if (rc) return rc;
    }
    const size_t dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim;
    static _Thread_local uint32_t seg_of[TF_MAX_ROWS];
    static _Thread_local struct attn_args rows[TF_MAX_BATCH];
    for (uint32_t i = 0, r = 0; i < n_segs; i++)
        for (uint32_t t = 0; t < segs[i].T; t++, r++) {
            seg_of[r] = i;
            const int32_t tok = segs[i].tokens[t];
            quant_dequantize_row(m->token_embd.type, (const char *)m->token_embd.data + (size_t)tok * m->token_embd.row_bytes,
                                 ws->x + (size_t)r * dim, dim);
        }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct model_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < R; r++)
            ops_rmsnorm(ws->xb + (size_t)r * dim, ws->x + (size_t)r * dim, L->attn_norm, dim, hp->rms_eps, ws->reference);
        qkv_rows(ws, segs, n_segs, seg_of, R, l);
        /* a sharing layer's source probabilities are still in ws->probs: no layer in between computes */
        for (uint32_t i = 0, r0 = 0; i < n_segs; r0 += segs[i].T, i++)
            rows[i] = attn_setup(ws, segs[i].seq, l, segs[i].T, segs[i].pos0, r0, R, ws->q + (size_t)r0 * qdim,
                                 ws->att + (size_t)r0 * qdim);
        struct attn_batch ab = {.rows = rows, .n = n_segs, .next = 0};
        if (ws->reference)
            attn_compute_batch(&ab, 0, 1);
        else
            workers_run(ws->pool, attn_compute_batch, &ab);
        if (ws->hook && n_segs == 1) ws->hook(ws->hook_user, l, ws->probs, R, segs[0].pos0, ws->n_ctx);
        ops_matmul(&ws->ops, &L->wo, ws->att, R, ws->xb);
        for (size_t i = 0; i < R * dim; i++) ws->x[i] += ws->xb[i];
        ffn_rows(ws, L, R);
    }
    /* logits: every row (all_logits, one segment), else each asking segment's last row */
    if (ws->all_logits && n_segs == 1 && segs[0].seq == ws) {
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

int tf_forward(struct tf_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, const float **logits)
{
    if (n == 0 || !c->scratch) return SA_ERR_INVALID_ARG;
    if ((uint64_t)pos0 + n > c->n_ctx) return SA_ERR_CONTEXT_FULL;
    if (c->all_logits && n > c->n_batch) return SA_ERR_INVALID_ARG;
    for (uint32_t done = 0; done < n;) {
        uint32_t T = n - done < c->n_batch ? n - done : c->n_batch;
        struct tf_seg sg = {.seq = c, .tokens = tokens + done, .T = T, .pos0 = pos0 + done,
                            .want_logits = done + T == n};
        int rc = tf_step(c, &sg, 1, c->logits);
        if (rc) return rc;
        done += T;
    }
    *logits = c->logits;
    return 0;
}

int tf_forward_batch(struct tf_ctx *ws, struct tf_ctx *const *ctxs, const int32_t *tokens, const uint32_t *pos,
                     uint32_t n, float *logits)
{
    if (n == 0 || n > TF_MAX_BATCH) return SA_ERR_INVALID_ARG;
    struct tf_seg segs[TF_MAX_BATCH];
    for (uint32_t i = 0; i < n; i++)
        segs[i] = (struct tf_seg){.seq = ctxs[i], .tokens = tokens + i, .T = 1, .pos0 = pos[i], .want_logits = true};
    return tf_step(ws, segs, n, logits);
}
