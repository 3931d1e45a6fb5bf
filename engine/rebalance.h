/*
 * rebalance.h - the attention re-balancer (Liao & Vargas, "Attention-Driven
 * Reasoning: Unlocking the Potential of Large Language Models" / "Extending
 * Token Computation for LLM Reasoning", arXiv 2403.14932; reference code
 * metacarbon/attentionReasoning-llm).
 *
 * Late layers put outlier attention on non-semantic tokens. The re-balancer
 * takes the tokens the first layer attends to and boosts them downstream:
 *
 *   mask (layer 0, after softmax):  M[h][i][j] = A_0[h][i][j] > tau,  j != i
 *   boost (every layer l >= 1):     A_l[h][i][j] *= 1 + alpha * (1 - l / (L-1))   where M[h][i][j]
 *
 * Rows are not renormalised (as in the reference code) unless renormalize is
 * set. With Shared Attention on, a sharing layer boosts its source's
 * unboosted weights with its own layer factor: the engine keeps every layer's
 * probabilities unboosted and applies the factor while summing P . V.
 * Defaults: SA_DEFAULT_REBALANCE_ALPHA and SA_DEFAULT_REBALANCE_TAU (defaults.h).
 */
#ifndef SA_REBALANCE_H
#define SA_REBALANCE_H

#include "defaults.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REBALANCE_DEFAULT_ALPHA ((float)SA_DEFAULT_REBALANCE_ALPHA)
#define REBALANCE_DEFAULT_TAU ((float)SA_DEFAULT_REBALANCE_TAU)

struct rebalance_params {
    bool on;
    float alpha;
    float tau;
    bool renormalize;
};

struct rebalance_params rebalance_default_params(void);

/* Boost factor of layer l in an L-layer model (1 for layer 0). */
float rebalance_factor(const struct rebalance_params *r, uint32_t layer, uint32_t n_layer);

/* Mask of one attention row p[0..n_pos) whose own position is self. */
void rebalance_mask_row(const float *p, size_t n_pos, size_t self, float tau, uint8_t *mask);

#endif
