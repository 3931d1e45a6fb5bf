/*
 * transformer.h - the Llama forward pass: one batched step over several sequences.
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
 * Shared Attention (share.h): a layer inside a span of a sequence's plan
 * computes only v = h Wv^T and reuses its source layer's probabilities; it has
 * no K cache at all (it never takes a K page). The source's probabilities stay
 * in the workspace until the span's last layer has used them: no layer in
 * between computes scores for that sequence. tf_step asserts this (always on)
 * for every sharing layer of every segment. The re-balancer (rebalance.h)
 * takes its mask from layer 0 and boosts layers >= 1.
 *
 * Two objects, one job each:
 *   - struct tf_seq: one sequence. Its KV cache (kvseq.h: page tables,
 *     reservation, copy-on-write, prefix blocks), its Shared Attention plan,
 *     re-balancer setting and FLOP counter. A standalone sequence owns a pool
 *     that holds n_ctx positions; an engine's sequences share the engine's
 *     pool and draw on reservations made at admission.
 *   - struct tf_ws: the step workspace, ALL scratch of a forward step
 *     (activations, attention probabilities, re-balancer masks, the ops
 *     buffers, RoPE tables, per-row indices) for up to n_batch rows of
 *     sequences of up to n_ctx positions. Allocated in tf_ws_create;
 *     tf_step allocates nothing but KV pages.
 * tf_step(ws, segments) is the one forward entry point; tf_forward is a loop
 * of tf_step calls over one sequence in chunks of n_batch tokens.
 *
 * Threads: a workspace and the sequences in a step are used by one thread at
 * a time (the caller's); the worker pool (borrowed, or owned by a standalone
 * workspace) splits each product and attention. A workspace that owns its
 * pool sets OpenBLAS to the pool's thread count; an engine sets it once at
 * creation for its borrowed pool.
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
struct tf_ws;
struct tf_seq;
struct kv_pool;

/* Options of both creators; each reads its own fields. */
struct tf_opts {
    uint32_t n_ctx;    /* positions (sequence: its cache; workspace: the longest sequence it steps);
                        * 0 = model's training context */
    /* workspace */
    uint32_t n_batch;  /* max rows per step (tokens over all segments); 0 = SA_DEFAULT_PREFILL_CHUNK */
    int n_threads;     /* 0 = 1; ignored when pool is given */
    struct workers *pool; /* borrowed shared pool, or NULL to own one */
    bool reference;    /* naive double-precision path (tests) */
    bool all_logits;   /* a one-segment step returns logits for every row (perplexity) */
    /* sequence */
    const struct share_plan *plan;     /* NULL = no sharing; copied */
    struct rebalance_params rebalance; /* .on = false: off */
    uint32_t kv_block;         /* positions per KV page; 0 = SA_DEFAULT_KV_BLOCK (defaults.h) */
    struct kv_pool *kv_pool;   /* borrowed pool of tf_kv_page_bytes pages, allocating from
                                * reservations; NULL = own a pool that holds n_ctx positions */
    bool kv_f16;               /* store K and V as F16 (half the bytes; attention reads them back to F32) */
};

/* Bytes of one KV page of the model (kv_block positions of one layer's K or V). */
size_t tf_kv_page_bytes(const struct model *m, uint32_t kv_block, bool f16);
/* Pages one block of positions takes under a plan (NULL = no sharing): V in
 * every layer, K in every computing layer. */
uint32_t tf_kv_pages_per_block(const struct model *m, const struct share_plan *plan);

/* Exact cache figures of one sequence of `tokens` cached tokens, token-exact
 * (bytes = tokens x per-token bytes; 4 per element, 2 with kv_f16) and page-exact (pages the sequence
 * holds x page bytes; shared prefix pages included). */
struct tf_cache_stats {
    uint32_t layers, sharing_layers, tokens;
    uint64_t k_bytes, v_bytes, kv_bytes;
    uint64_t kv_bytes_without_sharing, kv_bytes_saved;
    double kv_saved_ratio;
    uint32_t block_tokens, k_pages, v_pages;
    uint64_t page_bytes, k_bytes_paged, v_bytes_paged, kv_bytes_paged;
    /* FLOPs this sequence skipped in sharing layers so far: per token and
     * sharing layer, 2*dim*(q_dim + kv_dim) for the Q and K projections plus
     * n_head*(pos+1)*(2*head_dim + 5) for QK^T and the softmax (5 operations
     * per score: max, subtract, exp, sum, scale). */
    uint64_t attention_flops_saved;
};

int tf_ws_create(const struct model *m, const struct tf_opts *opts, struct tf_ws **out);
void tf_ws_destroy(struct tf_ws *ws); /* accepts NULL */
uint32_t tf_ws_n_ctx(const struct tf_ws *ws);
uint32_t tf_ws_n_batch(const struct tf_ws *ws);

int tf_seq_create(const struct model *m, const struct tf_opts *opts, struct tf_seq **out);
void tf_seq_destroy(struct tf_seq *s); /* accepts NULL */

/* Start a new sequence with another plan / re-balancer setting: releases
 * every page, clears counters. */
int tf_reset(struct tf_seq *s, const struct share_plan *plan, const struct rebalance_params *rb);
/* Release every page (the sequence then holds no cache). */
void tf_release_kv(struct tf_seq *s);
const struct share_plan *tf_plan(const struct tf_seq *s);

void tf_cache_stats(const struct tf_seq *s, uint32_t tokens, struct tf_cache_stats *out);
/* Bytes of the K and V pages the sequence holds. */
void tf_kv_allocated(const struct tf_seq *s, size_t *k_bytes, size_t *v_bytes);

/* Prefix blocks and the reservation: the sequence's kv_seq (kvseq.h) under its plan. */
uint32_t tf_blocks_held(const struct tf_seq *s);
uint32_t tf_block_pages(const struct tf_seq *s, uint32_t b, uint32_t *pages);
int tf_adopt_block(struct tf_seq *s, const uint32_t *pages);
void tf_set_reservation(struct tf_seq *s, uint32_t pages);
uint32_t tf_reservation_left(const struct tf_seq *s);

/* Called after each layer's attention of a one-segment step with that layer's
 * (unboosted) probabilities [n_head][T][stride]; used for calibration. */
typedef void (*tf_attention_hook)(void *user, uint32_t layer, const float *probs, uint32_t T, uint32_t pos0,
                                  size_t stride);
void tf_set_attention_hook(struct tf_ws *ws, tf_attention_hook fn, void *user);

/* One forward step over several sequences at once: segment i appends T
 * tokens at positions pos0 .. pos0+T-1 to its own sequence (cache, plan,
 * re-balancer): a prefill chunk, or one decode token. All rows of all
 * segments go through each weight matrix together (one read of the weights:
 * matrix-vector products over the rows, or sgemm from OPS_GEMM_MIN_TOKENS
 * rows); Q and K are projected only for rows whose sequence computes that
 * layer; attention runs per (segment, head). Rows <= n_batch, every segment
 * within the workspace's n_ctx and its own. Each segment with want_logits
 * gets its last row's [n_vocab] logits in the next row of logits (in segment
 * order); a one-segment step on an all_logits workspace gets every row's.
 * pos0 must equal the positions already cached (or less, to rewind).
 * Errors: SA_ERR_CONTEXT_FULL past a context, SA_ERR_INVALID_ARG for a token id
 * out of range, a gap in a cache, a sequence twice, too many rows or more than
 * TF_MAX_BATCH segments; SA_ERR_NOMEM if a reservation or the pool has no page. */
#define TF_MAX_BATCH 256  /* segments per step */
#define TF_MAX_ROWS 8192  /* rows (tokens) per step */
struct tf_seg {
    struct tf_seq *seq;
    const int32_t *tokens;
    uint32_t T, pos0;
    bool want_logits;
    float *hidden; /* NULL, or [T][dim]: each row's final hidden state, after output_norm (embeddings, scored prompts) */
};
int tf_step(struct tf_ws *ws, const struct tf_seg *segs, uint32_t n_segs, float *logits);

/* The logits of n rows of final hidden states that tf_step wrote to a segment's
 * `hidden` (already through output_norm): logits [n][n_vocab] = rows Wout^T, the
 * same product tf_step applies to its want_logits rows. n <= the workspace's
 * n_batch. Uses the workspace's thread pool (same thread rules as tf_step).
 * SA_ERR_INVALID_ARG for n out of range. */
int tf_output_logits(struct tf_ws *ws, const float *rows, uint32_t n, float *logits);

/* n tokens of one sequence through tf_step in chunks of n_batch; *logits gets
 * the workspace's [n_vocab] logits of the last token (all_logits: [n][n_vocab],
 * then n <= n_batch), valid until the next call. */
int tf_forward(struct tf_ws *ws, struct tf_seq *s, const int32_t *tokens, uint32_t n, uint32_t pos0,
               const float **logits);

#endif
