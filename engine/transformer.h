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
 * Everything is allocated in tf_create; tf_forward allocates nothing.
 * A context is used by one thread at a time (its worker pool does the
 * splitting).
 */
#ifndef SA_TRANSFORMER_H
#define SA_TRANSFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct model;
struct workers;
struct tf_ctx;

struct tf_opts {
    uint32_t n_ctx;    /* positions the KV cache holds; 0 = model's training context */
    uint32_t n_batch;  /* max tokens per chunk; 0 = 128 */
    int n_threads;     /* 0 = 1 */
    bool reference;    /* naive double-precision path (tests) */
    bool all_logits;   /* keep logits for every token of a forward call (perplexity) */
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

uint32_t tf_n_ctx(const struct tf_ctx *c);
uint32_t tf_n_batch(const struct tf_ctx *c);
/* KV cache bytes currently held for the cached tokens. */
size_t tf_kv_bytes(const struct tf_ctx *c, uint32_t n_tokens);

#endif
