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
 * Everything is allocated in tf_create / tf_reset; tf_forward allocates nothing.
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

struct tf_opts {
    uint32_t n_ctx;    /* positions the KV cache holds; 0 = model's training context */
    uint32_t n_batch;  /* max tokens per chunk; 0 = 128 */
    int n_threads;     /* 0 = 1; ignored when pool is given */
    struct workers *pool; /* borrowed shared pool (contexts used from one thread), or NULL to own one */
    bool reference;    /* naive double-precision path (tests) */
    bool all_logits;   /* keep logits for every token of a forward call (perplexity) */
    const struct share_plan *plan;     /* NULL = no sharing; copied */
    struct rebalance_params rebalance; /* .on = false: off */
};

/* Exact cache figures of one sequence of `tokens` cached tokens (token-exact:
 * bytes = tokens x per-token bytes; this context stores F32). */
struct tf_cache_stats {
    uint32_t layers, sharing_layers, tokens;
    uint64_t k_bytes, v_bytes, kv_bytes;
    uint64_t kv_bytes_without_sharing, kv_bytes_saved;
    double kv_saved_ratio;
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

/* Start a new sequence with another plan / re-balancer setting: (re)allocates
 * the K buffers the plan needs, frees those it does not, clears counters. */
int tf_reset(struct tf_ctx *c, const struct share_plan *plan, const struct rebalance_params *rb);

void tf_cache_stats(const struct tf_ctx *c, uint32_t tokens, struct tf_cache_stats *out);
/* Bytes actually allocated for the K and V caches (counted at allocation). */
void tf_kv_allocated(const struct tf_ctx *c, size_t *k_bytes, size_t *v_bytes);
const struct share_plan *tf_plan(const struct tf_ctx *c);

/* Called after each layer's attention with that layer's (unboosted)
 * probabilities [n_head][T][stride] for the chunk; used for calibration. */
typedef void (*tf_attention_hook)(void *user, uint32_t layer, const float *probs, uint32_t T, uint32_t pos0,
                                  size_t stride);
void tf_set_attention_hook(struct tf_ctx *c, tf_attention_hook fn, void *user);

/* One decode step for n sequences at once: sequence i (its own context, cache,
 * plan and re-balancer) takes tokens[i] at position pos[i]. The weights are read
 * once for all n rows (matrix-vector products over the batch, or sgemm from
 * OPS_GEMM_MIN_TOKENS rows); Q and K are projected only for the rows whose
 * sequence computes attention in that layer. Scratch comes from ws (any context
 * of the same model with n_batch >= n, which may be one of ctxs); logits
 * receives [n][n_vocab]. Results equal n separate tf_forward calls exactly on
 * the matrix-vector path. Errors as tf_forward, and n > TF_MAX_BATCH. */
#define TF_MAX_BATCH 256
int tf_forward_batch(struct tf_ctx *ws, struct tf_ctx *const *ctxs, const int32_t *tokens, const uint32_t *pos,
                     uint32_t n, float *logits);

uint32_t tf_n_ctx(const struct tf_ctx *c);
uint32_t tf_n_batch(const struct tf_ctx *c);

#endif
