/*
 * share.h - Shared Attention plans (Liao & Vargas, "Beyond KV Caching: Shared
 * Attention for Efficient LLMs", arXiv 2407.12866).
 *
 * Layers are numbered 0..L-1. A span "a-b" (1 <= a <= b <= L-1) means layers
 * a..b reuse the softmax attention weights computed by layer a-1, the source:
 *
 *   P[s][h][i][j] = softmax_j(q_i . k_j / sqrt(d) + mask)        (source s = a-1)
 *   o_l[h][i]     = sum_j P[s][h][i][j] * V_l[kvh(h)][j]          (l in a..b)
 *
 * A sharing layer computes only V_l = x W_v, stores only V in its cache (no K
 * is allocated), and skips its Q and K projections, QK^T and softmax. GQA:
 * query head h reads kv head h / (n_head / n_head_kv). Spans may not overlap
 * and a source may not itself be inside a span. "a" alone means "a-a".
 *
 * A plan is a plain value (caller-embedded struct), validated against the
 * layer count when parsed. The text form is "a-b,c-d" (sorted on output),
 * "off"/"" for no sharing, and "auto" is resolved by the caller from a
 * calibration (calibrate.h).
 */
#ifndef SA_SHARE_H
#define SA_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARE_MAX_LAYERS 1024
#define SHARE_MAX_SPANS 64

struct share_span {
    uint16_t a, b; /* first and last sharing layer; source is a-1 */
};

struct share_plan {
    uint32_t n_layer;
    uint32_t n_spans;
    struct share_span spans[SHARE_MAX_SPANS];
    int16_t source[SHARE_MAX_LAYERS]; /* per layer: -1 computes its own attention, else the source layer */
};

/* Empty plan (no sharing) for a model with n_layer layers. */
void share_plan_init(struct share_plan *p, uint32_t n_layer);

/* Parse "a-b,c-d" (or "off"/"none"/"") for n_layer layers. On error returns
 * SA_ERR_INVALID_ARG with msg naming the bad span, e.g.
 *   "span '3-7': layer 7 is out of range (the model has layers 0..4)". */
int share_plan_parse(struct share_plan *p, const char *text, uint32_t n_layer, char *msg, size_t msg_len);

/* Add one span with the same validation; used by parse and by auto plans. */
int share_plan_add(struct share_plan *p, uint32_t a, uint32_t b, char *msg, size_t msg_len);

/* The plan's spans sorted by first layer into out[SHARE_MAX_SPANS]; returns the count. */
uint32_t share_plan_sorted(const struct share_plan *p, struct share_span *out);

/* "a-b,c-d" (spans sorted) or "off". Returns the length written. */
size_t share_plan_format(const struct share_plan *p, char *buf, size_t cap);

static inline bool share_plan_is_sharing(const struct share_plan *p, uint32_t layer)
{
    return p->source[layer] >= 0;
}
uint32_t share_plan_n_sharing(const struct share_plan *p);

/* Propose spans from an L x L similarity matrix (sim[i*L + j], mean cosine
 * similarity of the attention rows of layers i and j): layer l joins a span
 * with source s when sim[s][l] >= threshold, greedily from layer 1 upwards,
 * a span extending while every member stays >= threshold against the source;
 * the layer after a span computes again (and may source the next span). */
void share_plan_auto(struct share_plan *p, const float *sim, uint32_t n_layer, float threshold);

#endif
