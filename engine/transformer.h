/*
 * transformer.h - the Llama forward pass for one sequence.
 *
 * Per layer l, for a chunk of T tokens at positions pos0 .. pos0+T-1:
 *
 *   h  = rmsnorm(x) * attn_norm
 *   q  = h Wq^T, k = h Wk^T, v = h Wv^T   (k, v written straight into the cache)
 *   q, k rotated by RoPE (adjacent pairs for GGUF llama, halves for NeoX)
 *   x += attention(q, K[0..pos], V[0..pos]) Wo^T          (see attention.h)
 *   h  = rmsnorm(x) * ffn_norm
 *   x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
 *
 * then logits = (rmsnorm(x) * output_norm) Wout^T, for the last token only
 * unless all_logits is set. Prompts longer than n_batch are run in chunks of
 * n_batch tokens, which bounds every scratch buffer (the attention
 * probabilities are n_head x n_batch x n_ctx floats).
 *
 * Shared Attention (share.h): a layer inside a span of the context's plan
 * computes only v = h Wv^T and reuses its source layer's probabilities; it has
 * no K cache at all (its K buffer is never allocated). The re-balancer
 * (rebalance.h) takes its mask from layer 0 and boosts layers >= 1.
 *
 * The KV cache is paged (kvpool.h): per layer a table of pages of kv_block
 * positions each, for V always and for K only in layers that compute
 * attention. Pages are taken from the pool as positions are written; a
 * standalone context owns a pool sized for n_ctx, an engine's contexts share
 * the engine's pool and draw on reservations made at admission. A page that
 * is shared (refcount > 1, a read-only prefix page, see prefix.h) is copied
 * before its first write (copy-on-write at the prefix boundary).
 *
 * Scratch is allocated in tf_create; tf_forward allocates nothing but pages.
 * A context is used by one thread at a time (its worker pool does the
 * splitting).
 */
#ifndef SA_TRANSFORMER_H
#define SA_TRANSFORMER_H

#include "rebalance.h"
#include "share.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model;
struct workers;
struct tf_ctx;
struct kv_pool;

struct tf_opts {
    uint32_t n_ctx;    /* positions the KV cache holds; 0 = model's training context */
    uint32_t n_batch;  /* max tokens per chunk; 0 = 128 */
    int n_threads;     /* 0 = 1; ignored when pool is given */
    struct workers *pool; /* borrowed shared pool (contexts used from one thread), or NULL to own one */
    bool reference;    /* naive double-precision path (tests) */
    bool all_logits;   /* keep logits for every token of a forward call (perplexity) */
    const struct share_plan *plan;     /* NULL = no sharing; copied */
    struct rebalance_params rebalance; /* .on = false: off */
    uint32_t kv_block;         /* positions per KV page; 0 = 16 */
    struct kv_pool *kv_pool;   /* borrowed pool of tf_kv_page_bytes pages, allocating from
                                * reservations; NULL = own a pool that holds n_ctx positions */
    bool no_scratch;           /* a sequence only, computed by another context's tf_step */
    bool kv_f16;               /* store K and V as F16 (half the bytes; attention reads them back to F32) */
};

/* Bytes of one KV page of the model (kv_block positions of one layer's K or V). */
size_t tf_kv_page_bytes(const struct model *m, uint32_t kv_block, bool f16);
/* Pages one block of positions takes under a plan (NULL = no sharing): V in
 * every layer, K in every computing layer. */
uint32_t tf_kv_pages_per_block(const struct model *m, const struct share_plan *plan);

/* Exact cache figures of one sequence of `tokens` cached tokens, token-exact
 * (bytes = tokens x per-token bytes; 4 per element, 2 with kv_f16) and page-exact (pages the context
 * holds x page bytes; shared prefix pages included). */
struct tf_cache_stats {
    uint32_t layers, sharing_layers, tokens;
    uint64_t k_bytes, v_bytes, kv_bytes;
    uint64_t kv_bytes_without_sharing, kv_bytes_saved;
    double kv_saved_ratio;
    uint32_t block_tokens, k_pages, v_pages;
    uint64_t page_bytes, k_bytes_paged, v_bytes_paged, kv_bytes_paged;
    /* FLOPs this context skipped in sharing layers so far: per token and
     * sharing layer, 2*dim*(q_dim + kv_dim) for the Q and K projections plus
     * n_head*(pos+1)*(2*head_dim + 5) for QK^T and the softmax (5 operations
     * per score: max, subtract, exp, sum, scale). */
    uint64_t attention_flops_saved;
};

int tf_create(const struct model *m, const struct tf_opts *opts, struct tf_ctx **out);
void tf_destroy(struct tf_ctx *c); /* accepts NULL */

/* Run n tokens at positions pos0 .. pos0+n-1, appending them to the cache.
 * pos0 must equal the number of tokens already cached (or less, to rewind).
 * *logits receives [n_vocab] floats for the last token, or [n][n_vocab] with
 * all_logits (then n <= n_batch). The pointer stays valid until the next call.
 * Errors: SA_ERR_CONTEXT_FULL if pos0 + n > n_ctx, SA_ERR_INVALID_ARG for a
 * token id out of range or an all_logits call longer than n_batch. */
int tf_forward(struct tf_ctx *c, const int32_t *tokens, uint32_t n, uint32_t pos0, const float **logits);

/* Start a new sequence with another plan / re-balancer setting: releases
 * every page, clears counters. */
int tf_reset(struct tf_ctx *c, const struct share_plan *plan, const struct rebalance_params *rb);
/* Release every page (the context then holds no cache). */
void tf_release_kv(struct tf_ctx *c);

void tf_cache_stats(const struct tf_ctx *c, uint32_t tokens, struct tf_cache_stats *out);
/* Bytes of the K and V pages the context holds. */
void tf_kv_allocated(const struct tf_ctx *c, size_t *k_bytes, size_t *v_bytes);

/* Prefix pages. A block's pages are listed layer by layer: K (computing
 * layers only), then V. tf_block_pages copies block b's ids (b < blocks held);
 * tf_adopt_block appends a block of pages held elsewhere (taking a reference
 * on each) to a context holding exactly b blocks. Both return the count. */
uint32_t tf_blocks_held(const struct tf_ctx *c);
/* With a borrowed pool: the pages this sequence may take from the pool's
 * reservations (set at admission); a write needing more fails SA_ERR_NOMEM. */
void tf_set_reservation(struct tf_ctx *c, uint32_t pages);
uint32_t tf_reservation_left(const struct tf_ctx *c);
uint32_t tf_block_pages(const struct tf_ctx *c, uint32_t b, uint32_t *pages);
int tf_adopt_block(struct tf_ctx *c, const uint32_t *pages);
const struct share_plan *tf_plan(const struct tf_ctx *c);

/* Called after each layer's attention with that layer's (unboosted)
 * probabilities [n_head][T][stride] for the chunk; used for calibration. */
typedef void (*tf_attention_hook)(void *user, uint32_t layer, const float *probs, uint32_t T, uint32_t pos0,
                                  size_t stride);
void tf_set_attention_hook(struct tf_ctx *c, tf_attention_hook fn, void *user);

/* One forward step over several sequences at once: segment i appends T
 * tokens at positions pos0 .. pos0+T-1 to its own context (cache, plan,
 * re-balancer): a prefill chunk, or one decode token. All rows of all
 * segments go through each weight matrix together (one read of the weights:
 * matrix-vector products over the rows, or sgemm from OPS_GEMM_MIN_TOKENS
 * rows); Q and K are projected only for rows whose sequence computes that
 * layer; attention runs per (segment, head). Scratch comes from ws (a context
 * of the same model with scratch, n_batch >= total rows, n_ctx >= every
 * segment's; it may be one of the segments). Each segment with want_logits
 * gets its last row's [n_vocab] logits in the next row of logits (in segment
 * order). Errors as tf_forward, and more than TF_MAX_BATCH segments;
 * SA_ERR_NOMEM if the pool has no page. */
#define TF_MAX_BATCH 256  /* segments per step */
#define TF_MAX_ROWS 8192  /* rows (tokens) per step */
struct tf_seg {
    struct tf_ctx *seq;
    const int32_t *tokens;
    uint32_t T, pos0;
    bool want_logits;
};
int tf_step(struct tf_ctx *ws, const struct tf_seg *segs, uint32_t n_segs, float *logits);

/* n decode rows (sequence i takes tokens[i] at pos[i]); logits [n][n_vocab]. */
int tf_forward_batch(struct tf_ctx *ws, struct tf_ctx *const *ctxs, const int32_t *tokens, const uint32_t *pos,
                     uint32_t n, float *logits);

uint32_t tf_n_ctx(const struct tf_ctx *c);
uint32_t tf_n_batch(const struct tf_ctx *c);

#endif
