#include "calibrate.h"

#include "errors.h"
#include "model.h"
#include "tokenizer.h"
#include "transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char calib_builtin_text[] =
    "Once upon a time, in a small town by the sea, there lived a girl named Mia. Every morning she walked to "
    "the harbour with her old dog, Pip, to watch the fishing boats come home. One day a storm came over the "
    "hills. The sky turned grey, the wind blew hard, and the boats did not come back. Mia was scared, but she "
    "had an idea. She ran up the hill to the lighthouse, where the lamp had been dark for many years. She found "
    "the old key under a stone, opened the door and climbed the long stairs. At the top she lit the lamp, and "
    "its warm light shone far over the water. Soon the first boat came out of the rain, then another, and "
    "another. When the last boat was safe, the people of the town cheered. The fishermen thanked Mia and gave "
    "Pip a big bone. From that day on, Mia kept the lamp bright every night, and nobody in the town was ever "
    "lost at sea again.";

struct calib_state {
    uint32_t n_layer, n_head, n_ctx;
    float *rows;  /* [n_layer][n_head][chunk][n_ctx] probabilities of the current chunk */
    uint32_t chunk;
    double *sum;  /* [n_layer][n_layer] */
    uint64_t count;
};

static void calib_hook(void *user, uint32_t layer, const float *probs, uint32_t T, uint32_t pos0, size_t stride)
{
    struct calib_state *s = user;
    size_t per_layer = (size_t)s->n_head * s->chunk * s->n_ctx;
    for (uint32_t h = 0; h < s->n_head; h++)
        for (uint32_t t = 0; t < T; t++)
            memcpy(s->rows + layer * per_layer + ((size_t)h * s->chunk + t) * s->n_ctx,
                   probs + ((size_t)h * T + t) * stride, (pos0 + t + 1) * sizeof(float));
    if (layer + 1 != s->n_layer) return;
    /* all layers of this chunk are in: accumulate cosine similarities */
    for (uint32_t h = 0; h < s->n_head; h++)
        for (uint32_t t = 0; t < T; t++) {
            size_t n = pos0 + t + 1, off = ((size_t)h * s->chunk + t) * s->n_ctx;
            double norm[1024];
            for (uint32_t a = 0; a < s->n_layer; a++) {
                const float *pa = s->rows + a * per_layer + off;
                double q = 0;
                for (size_t j = 0; j < n; j++) q += (double)pa[j] * pa[j];
                norm[a] = sqrt(q);
            }
            for (uint32_t a = 0; a < s->n_layer; a++)
                for (uint32_t b = a + 1; b < s->n_layer; b++) {
                    const float *pa = s->rows + a * per_layer + off, *pb = s->rows + b * per_layer + off;
                    double d = 0;
                    for (size_t j = 0; j < n; j++) d += (double)pa[j] * pb[j];
                    double c = norm[a] > 0 && norm[b] > 0 ? d / (norm[a] * norm[b]) : 0;
                    s->sum[a * s->n_layer + b] += c;
                }
            s->count++;
        }
}

int calib_similarity(const struct model *m, const int32_t *tokens, size_t n, uint32_t n_ctx, int n_threads,
                     float *sim)
{
    const uint32_t L = m->hp.n_layer;
    if (L > 1024) return SA_ERR_UNSUPPORTED;
    if (n > n_ctx) n = n_ctx;
    if (n < 2) return SA_ERR_INVALID_ARG;
    struct calib_state s = {.n_layer = L, .n_head = m->hp.n_head, .n_ctx = (uint32_t)n, .chunk = 64};
    if (s.chunk > n) s.chunk = (uint32_t)n;
    s.rows = calloc((size_t)L * s.n_head * s.chunk * n, sizeof(float));
    s.sum = calloc((size_t)L * L, sizeof(double));
    struct tf_opts o = {.n_ctx = (uint32_t)n, .n_batch = s.chunk, .n_threads = n_threads};
    struct tf_ws *ws = NULL;
    struct tf_seq *c = NULL;
    int rc = (!s.rows || !s.sum) ? SA_ERR_NOMEM : tf_ws_create(m, &o, &ws);
    if (!rc) rc = tf_seq_create(m, &o, &c);
    if (!rc) {
        tf_set_attention_hook(ws, calib_hook, &s);
        const float *logits;
        rc = tf_forward(ws, c, tokens, (uint32_t)n, 0, &logits);
    }
    if (!rc) {
        for (uint32_t a = 0; a < L; a++) {
            sim[a * L + a] = 1.0f;
            for (uint32_t b = a + 1; b < L; b++)
                sim[a * L + b] = sim[b * L + a] = (float)(s.sum[a * L + b] / (double)s.count);
        }
    }
    tf_seq_destroy(c);
    tf_ws_destroy(ws);
    free(s.rows);
    free(s.sum);
    return rc;
}

int calib_auto_plan(const struct model *m, const char *text, int n_threads, float threshold,
                    struct share_plan *plan, float *sim, char *why, size_t why_len)
{
    if (why && why_len) why[0] = 0;
    if (!m->tok) return sa_errf(SA_ERR_INVALID_ARG, why, why_len, "the model has no tokenizer");
    if (!text) text = calib_builtin_text;
    size_t len = strlen(text), n = 0, cap = len + 2;
    int32_t *ids = malloc(cap * sizeof *ids);
    const uint32_t L = m->hp.n_layer;
    float *own = sim ? NULL : malloc((size_t)L * L * sizeof *own);
    float *S = sim ? sim : own;
    int rc = (!ids || !S) ? SA_ERR_NOMEM : tok_encode(m->tok, text, len, true, false, ids, cap, &n);
    uint32_t n_ctx = m->hp.n_ctx_train < 512 ? m->hp.n_ctx_train : 512;
    if (rc)
        sa_errf(rc, why, why_len, "cannot tokenize the calibration text: %s", sa_err_str(rc));
    else if ((n < n_ctx ? n : n_ctx) < 2)
        rc = sa_errf(SA_ERR_INVALID_ARG, why, why_len,
                     "layers are compared over at least 2 tokens: the context holds %u and the text gives %zu", n_ctx,
                     n);
    if (!rc && (rc = calib_similarity(m, ids, n, n_ctx, n_threads, S)))
        sa_errf(rc, why, why_len, "the calibration pass failed: %s", sa_err_str(rc));
    if (!rc) share_plan_auto(plan, S, L, threshold);
    free(ids);
    free(own);
    return rc;
}
