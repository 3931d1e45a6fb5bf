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
    /* KV cache */
    float *k_cache; /* [n_layer][n_ctx][kvdim] */
    float *v_cache; /* [n_layer][n_ctx][kvdim] */
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
    size_t B = o.n_batch, dim = hp->dim, qdim = (size_t)hp->n_head * hp->head_dim,
           kvdim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t max_in = dim > qdim ? dim : qdim;
    if (hp->ffn > max_in) max_in = hp->ffn;
    c->pool = workers_create(o.n_threads);
    openblas_set_num_threads(o.n_threads);
    c->x = falloc(B * dim);
    c->xb = falloc(B * dim);
    c->q = falloc(B * qdim);
    c->att = falloc(B * qdim);
    c->hb = falloc(B * hp->ffn);
    c->hb2 = falloc(B * hp->ffn);
    c->probs = falloc((size_t)hp->n_head * B * o.n_ctx);
    c->logits = falloc((o.all_logits ? B : 1) * hp->n_vocab);
    c->k_cache = falloc((size_t)hp->n_layer * o.n_ctx * kvdim);
    c->v_cache = falloc((size_t)hp->n_layer * o.n_ctx * kvdim);
    c->rope_cos = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    c->rope_sin = falloc((size_t)o.n_ctx * (hp->n_rot / 2));
    if (!c->pool || !c->x || !c->xb || !c->q || !c->att || !c->hb || !c->hb2 || !c->probs || !c->logits ||
        !c->k_cache || !c->v_cache || !c->rope_cos || !c->rope_sin ||
        ops_init(&c->ops, c->pool, B, max_in, o.reference) != 0) {
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
    ops_cleanup(&c->ops);
    workers_destroy(c->pool);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->probs);
    free(c->logits);
    free(c->k_cache);
    free(c->v_cache);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c);
}

uint32_t tf_n_ctx(const struct tf_ctx *c) { return c->n_ctx; }
uint32_t tf_n_batch(const struct tf_ctx *c) { return c->n_batch; }

size_t tf_kv_bytes(const struct tf_ctx *c, uint32_t n_tokens)
{
    const struct model_hparams *hp = &c->m->hp;
    return (size_t)2 * hp->n_layer * n_tokens * hp->n_head_kv * hp->head_dim * sizeof(float);
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
        float *kc = c->k_cache + (size_t)l * c->n_ctx * kvdim, *vc = c->v_cache + (size_t)l * c->n_ctx * kvdim;
        for (uint32_t t = 0; t < T; t++) ops_rmsnorm(c->xb + t * dim, c->x + t * dim, L->attn_norm, dim, hp->rms_eps, ref);
        ops_matmul(&c->ops, &L->wq, c->xb, T, c->q);
        ops_matmul(&c->ops, &L->wk, c->xb, T, kc + (size_t)pos0 * kvdim);
        ops_matmul(&c->ops, &L->wv, c->xb, T, vc + (size_t)pos0 * kvdim);
        for (uint32_t t = 0; t < T; t++) {
            const float *cs = c->rope_cos + (size_t)(pos0 + t) * half, *sn = c->rope_sin + (size_t)(pos0 + t) * half;
            ops_rope(c->q + t * qdim, hp->n_head, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
            ops_rope(kc + (size_t)(pos0 + t) * kvdim, hp->n_head_kv, hp->head_dim, hp->n_rot, cs, sn, hp->rope);
        }
        struct attn_args aa = {
            .q = c->q, .k = kc, .v = vc, .out = c->att, .probs = c->probs, .probs_stride = c->n_ctx,
            .T = T, .pos0 = pos0, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
            .head_dim = hp->head_dim, .kv_stride = kvdim, .reference = ref,
        };
        if (ref)
            attn_compute(&aa, 0, 1);
        else
            workers_run(c->pool, attn_compute, &aa);
        ops_matmul(&c->ops, &L->wo, c->att, T, c->xb);
        for (size_t i = 0; i < T * dim; i++) c->x[i] += c->xb[i];

        for (uint32_t t = 0; t < T; t++) ops_rmsnorm(c->xb + t * dim, c->x + t * dim, L->ffn_norm, dim, hp->rms_eps, ref);
        ops_matmul(&c->ops, &L->w_gate, c->xb, T, c->hb);
        ops_matmul(&c->ops, &L->w_up, c->xb, T, c->hb2);
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
