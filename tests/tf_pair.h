/*
 * tf_pair.h - a standalone sequence and its own step workspace (transformer.h),
 * created and destroyed together: what the tests and benches run one sequence
 * with. Both are made from the same options.
 */
#ifndef SA_TF_PAIR_H
#define SA_TF_PAIR_H

#include "engine/transformer.h"

struct tf_pair {
    struct tf_ws *ws;
    struct tf_seq *seq;
};

static inline void tf_pair_destroy(struct tf_pair *p)
{
    tf_seq_destroy(p->seq);
    tf_ws_destroy(p->ws);
    p->seq = NULL;
    p->ws = NULL;
}

static inline int tf_pair_create(const struct model *m, const struct tf_opts *o, struct tf_pair *p)
{
    p->ws = NULL;
    p->seq = NULL;
    int rc = tf_ws_create(m, o, &p->ws);
    if (!rc) rc = tf_seq_create(m, o, &p->seq);
    if (rc) tf_pair_destroy(p);
    return rc;
}

static inline int tf_pair_forward(struct tf_pair *p, const int32_t *tokens, uint32_t n, uint32_t pos0,
                                  const float **logits)
{
    return tf_forward(p->ws, p->seq, tokens, n, pos0, logits);
}

#endif
