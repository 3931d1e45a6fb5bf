/*
 * oneshot.c - the one-shot model tools of engine.h (saserve generate,
 * similarity, perplexity, check-model, quantize): a model without an engine,
 * one sequence and one workspace (transformer.h) per call, on the calling
 * thread. The command line (server/cli.c) parses options and prints; the
 * model, tokenizer, transformer and calibration work is done here.
 */
#include "engine.h"

#include "calibrate.h"
#include "model.h"
#include "quantize.h"
#include "tokenizer.h"
#include "transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct engine_model {
    struct model *m;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int engine_model_open(const char *path, bool use_mmap, struct engine_model **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct engine_model *em = calloc(1, sizeof *em);
    if (!em) return SA_ERR_NOMEM;
    struct model_load_opts lo = {.use_mmap = use_mmap};
    int rc = model_load(path, &lo, &em->m, msg, msg_len);
    if (rc) {
        free(em);
        return rc;
    }
    *out = em;
    return 0;
}

void engine_model_close(struct engine_model *em)
{
    if (!em) return;
    model_free(em->m);
    free(em);
}

void engine_model_describe(const struct engine_model *em, struct engine_model_desc *d)
{
    const struct model *m = em->m;
    *d = (struct engine_model_desc){.name = m->name,
                                    .n_layer = m->hp.n_layer,
                                    .dim = m->hp.dim,
                                    .n_head = m->hp.n_head,
                                    .n_head_kv = m->hp.n_head_kv,
                                    .ffn = m->hp.ffn,
                                    .n_vocab = m->hp.n_vocab,
                                    .n_ctx_train = m->hp.n_ctx_train,
                                    .n_params = model_n_params(m)};
}

int engine_model_check_values(const struct engine_model *em, char *msg, size_t msg_len)
{
    return model_check_values(em->m, msg, msg_len);
}

int32_t engine_model_bos(const struct engine_model *em) { return tok_bos(em->m->tok); }

int engine_model_tokenize(const struct engine_model *em, const char *text, size_t len, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!text) {
        text = calib_builtin_text;
        len = strlen(text);
    }
    return tok_encode_alloc(em->m->tok, text, len, true, false, ids, n);
}

int engine_model_plan(const struct engine_model *em, const char *text, float threshold, int n_threads,
                      struct share_plan *plan, char *msg, size_t msg_len)
{
    if (text && !strcmp(text, "auto"))
        return calib_auto_plan(em->m, NULL, n_threads, threshold, plan, NULL, msg, msg_len);
    if (share_plan_parse(plan, text, em->m->hp.n_layer, msg, msg_len)) return SA_ERR_INVALID_ARG;
    return 0;
}

/* The engine's cache figures of a one-shot sequence (the paged fields stay 0). */
static void cache_stats(const struct tf_seq *seq, uint32_t tokens, const struct share_plan *plan,
                        const struct rebalance_params *rb, struct engine_cache_stats *c)
{
    struct tf_cache_stats st;
    tf_cache_stats(seq, tokens, &st);
    memset(c, 0, sizeof *c);
    c->shared_attention = plan && plan->n_spans;
    c->rebalance = rb->on;
    c->n_spans = plan ? share_plan_sorted(plan, c->spans) : 0;
    c->layers = st.layers;
    c->sharing_layers = st.sharing_layers;
    c->tokens = st.tokens;
    c->k_bytes = st.k_bytes;
    c->v_bytes = st.v_bytes;
    c->kv_bytes = st.kv_bytes;
    c->kv_bytes_without_sharing = st.kv_bytes_without_sharing;
    c->kv_bytes_saved = st.kv_bytes_saved;
    c->kv_saved_ratio = st.kv_saved_ratio;
    c->attention_flops_saved = st.attention_flops_saved;
}

/* A workspace and a sequence for one-shot use. */
static int seq_open(const struct model *m, const struct tf_opts *to, struct tf_ws **ws, struct tf_seq **seq)
{
    *ws = NULL;
    *seq = NULL;
    int rc = tf_ws_create(m, to, ws);
    if (!rc) rc = tf_seq_create(m, to, seq);
    if (rc) {
        tf_seq_destroy(*seq);
        tf_ws_destroy(*ws);
        *ws = NULL;
        *seq = NULL;
    }
    return rc;
}

static void seq_close(struct tf_ws *ws, struct tf_seq *seq)
{
    tf_seq_destroy(seq);
    tf_ws_destroy(ws);
}

/* The sampling loop of engine_model_generate after the prompt's forward pass. */
static int generate_tokens(const struct model *m, struct tf_ws *ws, struct tf_seq *seq, struct sampler *smp,
                           const struct engine_generate_params *p, uint32_t n_prompt, uint32_t n_predict,
                           const float *logits, struct tok_stream *ts, uint32_t *n_cached,
                           struct engine_generate_result *r)
{
    const struct tokenizer *tok = m->tok;
    char piece[512];
    struct sampler_result res;
    int rc = 0;
    for (uint32_t pos = n_prompt; rc == 0 && r->n_generated < n_predict; pos++) {
        int32_t id = sampler_sample(smp, logits, &res);
        sampler_accept(smp, id);
        r->n_generated++;
        if (!p->no_eos && tok_is_eog(tok, id)) break;
        size_t len = tok_stream_push(ts, id, piece, sizeof piece);
        p->on_text(p->user, id, piece, len, &res);
        if (r->n_generated == n_predict) break;
        rc = tf_forward(ws, seq, &id, 1, pos, &logits);
        if (!rc) (*n_cached)++;
    }
    size_t len = tok_stream_flush(ts, piece, sizeof piece);
    p->on_text(p->user, ENGINE_GEN_FLUSH, piece, len, NULL);
    return rc;
}

int engine_model_generate(struct engine_model *em, const int32_t *prompt, size_t n_prompt,
                          const struct engine_generate_params *p, struct engine_generate_result *r)
{
    const struct model *m = em->m;
    const struct tokenizer *tok = m->tok;
    *r = (struct engine_generate_result){0};
    struct tf_opts to = {.n_ctx = p->n_ctx ? p->n_ctx : m->hp.n_ctx_train, .n_threads = p->n_threads,
                         .plan = p->plan, .rebalance = p->rebalance};
    uint32_t n_predict = p->n_predict;
    if (n_prompt + (size_t)n_predict > to.n_ctx) n_predict = to.n_ctx > n_prompt ? to.n_ctx - (uint32_t)n_prompt : 0;
    struct tf_ws *ws;
    struct tf_seq *seq;
    struct sampler *smp = NULL;
    int rc = seq_open(m, &to, &ws, &seq);
    if (!rc && (rc = sampler_create(&p->sampling, (int32_t)m->hp.n_vocab, &smp))) seq_close(ws, seq);
    if (rc) return rc;
    r->started = true;
    char *shown = tok_decode(tok, prompt, n_prompt, true); /* the prompt as the model sees it */
    if (shown) p->on_text(p->user, ENGINE_GEN_PROMPT, shown, strlen(shown), NULL);
    free(shown);
    struct tok_stream ts;
    tok_stream_init(&ts, tok, n_prompt == 1 && prompt[0] == tok_bos(tok));
    const float *logits;
    double t1 = now_s();
    rc = tf_forward(ws, seq, prompt, (uint32_t)n_prompt, 0, &logits);
    r->prompt_s = now_s() - t1;
    uint32_t n_cached = (uint32_t)n_prompt;
    double t2 = now_s();
    int grc = generate_tokens(m, ws, seq, smp, p, (uint32_t)n_prompt, rc ? 0 : n_predict, logits, &ts, &n_cached, r);
    if (!rc) rc = grc;
    r->generate_s = now_s() - t2;
    cache_stats(seq, n_cached, p->plan, &p->rebalance, &r->cache);
    sampler_destroy(smp);
    seq_close(ws, seq);
    return rc;
}

int engine_model_similarity(const struct engine_model *em, const int32_t *ids, size_t n, int n_threads, float threshold,
                            float *sim, struct share_plan *plan)
{
    int rc = calib_similarity(em->m, ids, n, (uint32_t)n, n_threads, sim);
    if (!rc) share_plan_auto(plan, sim, em->m->hp.n_layer, threshold);
    return rc;
}

/* Score the next-token predictions of one window's tokens win[0..len) (win[0] = BOS). */
static int score_window(const struct model *m, struct tf_ws *ws, struct tf_seq *seq, const int32_t *win, uint32_t len,
                        struct engine_perplexity_result *r)
{
    const uint32_t V = m->hp.n_vocab, nb = tf_ws_n_batch(ws);
    char piece[256];
    int rc = 0;
    for (uint32_t p = 0; p < len && !rc; p += nb) {
        uint32_t cnt = len - p < nb ? len - p : nb;
        const float *lg;
        rc = tf_forward(ws, seq, win + p, cnt, p, &lg);
        for (uint32_t t = 0; t < cnt && !rc; t++) {
            if (p + t + 1 >= len) break; /* the last token predicts nothing in this window */
            const float *row = lg + (size_t)t * V;
            float mx = row[0];
            for (uint32_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double z = 0;
            for (uint32_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
            int32_t next = win[p + t + 1];
            r->nll -= (double)row[next] - mx - log(z);
            r->tokens_scored++;
            r->bytes_scored += tok_token_to_bytes(m->tok, next, false, piece, sizeof piece);
        }
    }
    return rc;
}

int engine_model_perplexity(const struct engine_model *em, const int32_t *ids, size_t n,
                            const struct engine_perplexity_params *p, struct engine_perplexity_result *r)
{
    const struct model *m = em->m;
    *r = (struct engine_perplexity_result){0};
    const uint32_t W = p->window;
    if (W < 2) return SA_ERR_INVALID_ARG;
    struct tf_opts to = {.n_ctx = W, .n_batch = W < 128 ? W : 128, .n_threads = p->n_threads, .all_logits = true,
                         .plan = p->plan, .rebalance = p->rebalance};
    struct tf_ws *ws;
    struct tf_seq *seq;
    int rc = seq_open(m, &to, &ws, &seq);
    if (rc) return rc;
    r->started = true;
    int32_t *win = malloc((size_t)W * sizeof *win);
    if (!win) rc = SA_ERR_NOMEM;
    double t0 = now_s();
    /* windows: BOS + the next W-1 text tokens (ids[0] is the text's own BOS) */
    for (size_t start = 1; start + 1 < n && !rc; start += W - 1) {
        uint32_t len = (uint32_t)((n - start < W - 1) ? n - start : W - 1) + 1;
        win[0] = tok_bos(m->tok) >= 0 ? tok_bos(m->tok) : ids[0];
        memcpy(win + 1, ids + start, (len - 1) * sizeof *win);
        rc = score_window(m, ws, seq, win, len, r);
    }
    r->seconds = now_s() - t0;
    cache_stats(seq, 1, p->plan, &p->rebalance, &r->cache);
    free(win);
    seq_close(ws, seq);
    return rc;
}

int engine_quantize_file(const char *in, const char *out, const char *type, struct engine_quantize_stats *st,
                         char *msg, size_t msg_len)
{
    struct quantize_stats qs = {0};
    int rc = quantize_file(in, out, type, &qs, msg, msg_len);
    if (st)
        *st = (struct engine_quantize_stats){.n_tensors = qs.n_tensors, .n_quantized = qs.n_quantized,
                                             .bytes_in = qs.bytes_in, .bytes_out = qs.bytes_out};
    return rc;
}
