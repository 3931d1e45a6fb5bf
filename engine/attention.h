/*
 * attention.h - one layer's causal self-attention over cached positions.
 *
 * For query head h, query row t (absolute position pos0 + t) and cached
 * positions j = 0 .. pos0 + t:
 *
 *   P[h][t][j] = softmax_j( q[t][h] . k[j][kvh(h)] / sqrt(head_dim) )
 *   out[t][h]  = sum_j w[h][t][j] * v[j][kvh(h)]
 *   w          = P, times `boost` where mask[h][t][j] (re-balancer, see
 *                rebalance.h), divided by sum_j w when renormalize is set
 *
 * with the GQA mapping kvh(h) = h / (n_head / n_head_kv). The cache is paged
 * (kvpool.h): position j of K lives at k_pages[j / block] + (j % block) *
 * kv_stride, likewise V. P is written to the caller's probs buffer (row t of
 * head h at h * probs_hstride + t * probs_stride), unboosted, and kept
 * there after the call. A Shared Attention layer sets compute_scores = false:
 * then q and k are not read and P is taken as it is in probs (its source
 * layer's weights, see share.h); only its own v is used.
 *
 * attn_compute is a workers_fn: heads are split among the threads. With
 * reference = true the dot products and sums are plain double loops.
 */
#ifndef SA_ATTENTION_H
#define SA_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct attn_args {
    const float *q;       /* [T][n_head * head_dim] (rotated); unused when !compute_scores */
    const void *const *k_pages; /* this layer's K pages; unused when !compute_scores */
    const void *const *v_pages; /* this layer's V pages */
    uint32_t block;       /* positions per page */
    bool kv_f16;          /* pages hold F16 (else F32) */
    float *out;           /* [T][n_head * head_dim] */
    float *probs;         /* probabilities, written (compute_scores) or read */
    size_t probs_stride;  /* floats between query rows, >= pos0 + T */
    size_t probs_hstride; /* floats between heads, >= T * probs_stride */
    uint32_t T, pos0;
    uint32_t n_head, n_head_kv, head_dim;
    size_t kv_stride;     /* floats between consecutive positions (n_head_kv * head_dim) */
    bool compute_scores;
    bool reference;
    /* re-balancer */
    uint8_t *mask_out;    /* layer 0: write the mask here (laid out like probs) or NULL */
    float mask_tau;
    const uint8_t *mask;  /* layers >= 1: boost where set, or NULL for no boost */
    float boost;
    bool renormalize;
};

void attn_compute(void *args, int ith, int nth);

/* Several independent attentions (one per sequence of a batched step, each
 * with its own cache, plan, re-balancer and number of query rows); the
 * (sequence, head) units are handed out to the threads dynamically, since a
 * prefill chunk's unit costs far more than a decode row's. All rows have the
 * same n_head. `next` is zeroed by the caller before workers_run. */
struct attn_batch {
    const struct attn_args *rows;
    uint32_t n;
    long next; /* atomic work counter */
};
void attn_compute_batch(void *args, int ith, int nth);

#endif
