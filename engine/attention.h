/*
 * attention.h - one layer's causal self-attention over cached positions.
 *
 * For query head h, query row t (absolute position pos0 + t) and cached
 * positions j = 0 .. pos0 + t:
 *
 *   P[h][t][j] = softmax_j( q[t][h] . k[j][kvh(h)] / sqrt(head_dim) )
 *   out[t][h]  = sum_j P[h][t][j] * v[j][kvh(h)]
 *
 * with the GQA mapping kvh(h) = h / (n_head / n_head_kv). P is written to
 * the caller's probs buffer ([n_head][T][probs_stride]) and kept there after
 * the call, so a later layer can reuse it (Shared Attention) or read it
 * (re-balancer mask, similarity calibration).
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
    const float *q;       /* [T][n_head * head_dim] (rotated) */
    const float *k;       /* [pos0 + T][kv_stride] this layer's K cache (rotated) */
    const float *v;       /* [pos0 + T][kv_stride] this layer's V cache */
    float *out;           /* [T][n_head * head_dim] */
    float *probs;         /* [n_head][T][probs_stride] */
    size_t probs_stride;  /* >= pos0 + T */
    uint32_t T, pos0;
    uint32_t n_head, n_head_kv, head_dim;
    size_t kv_stride;     /* floats between consecutive positions (n_head_kv * head_dim) */
    bool reference;
};

void attn_compute(void *args, int ith, int nth);

#endif
