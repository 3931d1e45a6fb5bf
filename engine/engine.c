/*
 * engine.c - request queue, sequence slots and the step thread.
 *
 * Threading: engine_submit/engine_cancel/engine_get_metrics run on any thread
 * and touch only the queue, the cancel flags and the counters, under e->mu.
 * Everything else (slots, transformer contexts, samplers, detokenizers) is
 * owned by the step thread. The step thread takes e->mu only to admit queued
 * requests, to publish counters and to retire finished sequences; it never
 * holds the lock while computing or while calling a request's callback.
 */
#include "engine.h"

#include "calibrate.h"
#include "gguf.h"
#include "grammar.h"
#include "hf.h"
#include "kvpool.h"
#include "log.h"
#include "model.h"
#include "prefix.h"
#include "tokenizer.h"
#include "transformer.h"
#include "vision.h"
#include "workers.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct seq {
    uint64_t id;
    struct seq *next; /* queue link */
    int32_t *prompt; /* [n_prompt + max_tokens]: the prompt, then the accepted tokens */
    size_t n_prompt;
    uint32_t max_tokens;
    struct sampler *smp;
    struct sampler_params sampling;
    bool share;
    struct share_plan plan;
    struct rebalance_params rb;
    char *stop[ENGINE_MAX_STOP];
    size_t n_stop, max_stop_len;
    int32_t stop_ids[ENGINE_MAX_STOP_IDS];
    size_t n_stop_ids;
    enum engine_task task;
    enum engine_pooling pooling;
    double *embd; /* ENGINE_TASK_EMBED: [dim] sum (mean) or the last row (last) of the final hidden states */
    bool prompt_lp;             /* prompt_logprobs: PROMPT events during prefill (engine.h) */
    struct tok_stream pts;      /* the prompt's detokenizer for those events (step thread) */
    struct grammar_matcher *gm; /* structured output, or NULL (step thread) */
    uint32_t *allowed;          /* [(n_vocab + 31) / 32] the grammar's mask of this step */
    void (*cb)(void *user, const struct engine_event *ev);
    void *user;
    atomic_bool cancelled;
    /* progress (step thread) */
    uint64_t key;            /* attention configuration (prefix.h) */
    uint32_t cached_tokens;  /* prompt tokens adopted from the prefix cache */
    uint32_t n_past, n_gen;
    int32_t last;
    struct tok_stream ts;
    char *held;      /* generated text not yet emitted: it could start a stop string */
    size_t n_held, cap_held;
    double t_submit, t_start, t_prompt_done;
};

struct slot {
    struct tf_seq *tf; /* the slot's sequence on the model side: KV pages, plan, counters */
    struct seq *seq;   /* the request it serves, NULL when free */
};

struct engine {
    struct engine_config cfg;
    struct model *m;
    struct engine_model_info info;
    int32_t eog[SAMPLER_MAX_EOG]; /* end-of-generation ids, for min_tokens / ignore_eos */
    int32_t n_eog;
    struct share_plan auto_plan;    /* calibrated once at start-up: "auto" in any request */
    struct share_plan default_plan; /* the configured plan (auto_plan when it says "auto") */
    float *layer_sim; /* [n_layer * n_layer] from the calibration of auto_plan; NULL when it failed */
    struct workers *pool;
    struct kv_pool *kv;         /* the paged KV cache (step thread) */
    struct prefix_cache *prefix; /* NULL when disabled */
    struct tf_ws *ws;           /* the step workspace: all scratch of a forward step */
    uint32_t block;
    uint64_t published_version; /* kv_pool_version at the last publish of the prefix figures */
    struct slot *slots;
    uint32_t n_ctx;
    char chat_template[16384];
    char *piece;      /* scratch for detokenized text (step thread) */
    float *batch_logits; /* [n_slots][n_vocab] logits of a batched decode step */
    float *hidden;       /* [n_batch][dim] final hidden states of a step's embedding and scored prompt rows */
    float *lp_logits;    /* [ENGINE_PROMPT_LOGPROB_ROWS][n_vocab] prompt rows' logits, allocated at first use */
    size_t piece_cap;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct seq *q_head, *q_tail;
    uint32_t q_len;
    bool stopping;
    uint64_t next_id;
    struct engine_metrics stats;
    struct vision *vis; /* optional phiDNN model and its queue (vision.h); NULL = none */
    struct grammar_vocab *gvocab; /* the vocabulary's byte trie for grammar masks (immutable) */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* vision.h's wake-up: the step thread waits on cv under mu and checks vision_pending there */
static void vision_wake(void *ctx)
{
    struct engine *e = ctx;
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

struct engine_config engine_default_config(void)
{
    return (struct engine_config){
        .n_threads = SA_DEFAULT_THREADS,
        .n_slots = SA_DEFAULT_SLOTS,
        .queue_max = SA_DEFAULT_QUEUE_MAX,
        .prefill_chunk = SA_DEFAULT_PREFILL_CHUNK,
        .use_mmap = false, /* make bench: weights read into memory decode faster here */
        .share_spans = "auto",
        .share_threshold = CALIB_DEFAULT_THRESHOLD,
        .kv_block = SA_DEFAULT_KV_BLOCK,
        .prefix_cache = true,
        .rebalance = rebalance_default_params(),
    };
}

const char *engine_finish_name(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_STOP: return "stop";
    case ENGINE_FINISH_LENGTH: return "length";
    case ENGINE_FINISH_CANCELLED: return "cancelled";
    default: return "none";
    }
}

static void seq_free(struct seq *s)
{
    if (!s) return;
    sampler_destroy(s->smp);
    grammar_matcher_destroy(s->gm);
    free(s->allowed);
    free(s->prompt);
    free(s->embd);
    for (size_t i = 0; i < s->n_stop; i++) free(s->stop[i]);
    free(s->held);
    free(s);
}

/* Queue counters after s left the queue (under mu). */
static void dequeued(struct engine *e, const struct seq *s)
{
    e->q_len--;
    e->stats.queue_depth = e->q_len;
    e->stats.queue_tokens -= s->n_prompt;
}

/* Unlink the head of the queue (under mu). */
static struct seq *pop_head(struct engine *e)
{
    struct seq *s = e->q_head;
    e->q_head = s->next;
    if (!e->q_head) e->q_tail = NULL;
    dequeued(e, s);
    return s;
}

/* ---- step thread ---- */

/* Publish the cache figures of the active sequences and the pool (step thread, under mu). */
static void publish_kv(struct engine *e)
{
    uint64_t k = 0, v = 0, saved_k = 0, held = 0;
    for (uint32_t i = 0; i < e->cfg.n_slots; i++) {
        const struct slot *sl = &e->slots[i];
        if (!sl->seq || !sl->seq->n_past) continue;
        struct tf_cache_stats st;
        tf_cache_stats(sl->tf, sl->seq->n_past, &st);
        k += st.k_bytes;
        v += st.v_bytes;
        saved_k += st.kv_bytes_saved;
        held += st.k_pages + st.v_pages;
    }
    e->stats.kv_k_bytes_used = k;
    e->stats.kv_v_bytes_used = v;
    e->stats.kv_bytes_used = k + v;
    e->stats.kv_bytes_saved = saved_k;
    e->stats.kv_k_bytes_saved = saved_k; /* sharing saves K only */
    struct kv_pool_stats ps;
    kv_pool_stats(e->kv, &ps);
    e->stats.kv_pages_total = ps.total;
    e->stats.kv_pages_used = ps.used;
    e->stats.kv_pages_reserved = ps.reserved;
    e->stats.kv_pages_held = held;
    /* the prefix cache's figures walk its entries: only when a reference changed */
    if (e->prefix && kv_pool_version(e->kv) != e->published_version) {
        struct prefix_stats pst;
        prefix_get_stats(e->prefix, &pst);
        e->stats.kv_pages_cached = pst.pages_only_cached;
        e->published_version = kv_pool_version(e->kv);
    }
}

/* Keep the sequence's computed full blocks for later requests (prefix.h): the
 * prompt's and the generated tokens' (the next turn of a chat repeats the
 * answer). Position p holds token s->prompt[p] (prompt, then generated). */
static void remember_prefix(struct engine *e, struct slot *sl)
{
    struct seq *s = sl->seq;
    uint32_t n_full = s->n_past / e->block;
    uint32_t pages[2 * SHARE_MAX_LAYERS], parent = PREFIX_NONE;
    for (uint32_t b = 0; b < n_full && b < tf_blocks_held(sl->tf); b++) {
        uint32_t n = tf_block_pages(sl->tf, b, pages);
        parent = prefix_insert(e->prefix, s->key, parent, s->prompt + (size_t)b * e->block, pages, n);
        if (parent == PREFIX_NONE) break;
    }
}

/* Free a finished sequence's slot and pages (its unused reservation goes back).
 * The slot pointer changes under the lock because engine_cancel reads it from
 * other threads. */
static void retire(struct engine *e, struct slot *sl, bool keep_prefix)
{
    struct seq *s = sl->seq;
    if (keep_prefix && e->prefix) remember_prefix(e, sl);
    kv_pool_unreserve(e->kv, tf_reservation_left(sl->tf));
    tf_set_reservation(sl->tf, 0);
    tf_release_kv(sl->tf);
    pthread_mutex_lock(&e->mu);
    e->stats.active_sequences--;
    sl->seq = NULL;
    publish_kv(e);
    pthread_mutex_unlock(&e->mu);
    seq_free(s);
}

static void emit_done(struct engine *e, struct slot *sl, enum engine_finish finish, const float *embd, uint32_t n_embd)
{
    struct seq *s = sl->seq;
    struct engine_event ev = {.type = ENGINE_EV_DONE, .id = s->id, .finish = finish,
                              .prompt_tokens = (uint32_t)s->n_prompt, .completion_tokens = s->n_gen,
                              .embedding = embd, .n_embd = n_embd};
    struct tf_cache_stats st;
    tf_cache_stats(sl->tf, s->n_past, &st);
    struct engine_cache_stats *c = &ev.cache;
    c->shared_attention = s->share;
    c->rebalance = s->rb.on;
    c->n_spans = share_plan_sorted(&s->plan, c->spans);
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
    size_t kb, vb;
    tf_kv_allocated(sl->tf, &kb, &vb);
    c->k_bytes_allocated = kb;
    c->v_bytes_allocated = vb;
    c->block_tokens = st.block_tokens;
    c->k_pages = st.k_pages;
    c->v_pages = st.v_pages;
    c->kv_bytes_paged = st.kv_bytes_paged;
    ev.cached_tokens = s->cached_tokens;
    double t_end = now_ms(), t_start = s->t_start ? s->t_start : t_end;
    double t_pd = s->t_prompt_done ? s->t_prompt_done : t_end;
    ev.timings.queued_ms = t_start - s->t_submit;
    ev.timings.prompt_ms = t_pd - t_start;
    ev.timings.generation_ms = t_end - t_pd;
    ev.timings.prompt_per_second = ev.timings.prompt_ms > 0 ? (double)s->n_prompt * 1e3 / ev.timings.prompt_ms : 0;
    ev.timings.generation_per_second =
        ev.timings.generation_ms > 0 && s->n_gen ? (double)s->n_gen * 1e3 / ev.timings.generation_ms : 0;
    /* release first, so a client that sees DONE also sees the cache freed in the metrics */
    void (*cb)(void *, const struct engine_event *) = s->cb;
    void *user = s->user;
    retire(e, sl, s->task != ENGINE_TASK_EMBED); /* an embedding keeps no KV */
    cb(user, &ev);
}

static void emit_text(struct seq *s, int32_t token, const char *text, size_t len, const struct sampler_result *lp)
{
    struct engine_event ev = {.type = ENGINE_EV_TOKEN, .id = s->id, .token = token, .text = text, .text_len = len};
    if (lp) ev.logprobs = *lp;
    s->cb(s->user, &ev);
}

static bool held_append(struct seq *s, const char *p, size_t n)
{
    if (s->n_held + n + 1 > s->cap_held) {
        size_t cap = (s->n_held + n + 1) * 2;
        char *h = realloc(s->held, cap);
        if (!h) return false;
        s->held = h;
        s->cap_held = cap;
    }
    memcpy(s->held + s->n_held, p, n);
    s->n_held += n;
    s->held[s->n_held] = 0;
    return true;
}

/* Longest suffix of held that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const struct seq *s)
{
    size_t best = 0;
    for (size_t k = 0; k < s->n_stop; k++) {
        size_t sl = strlen(s->stop[k]);
        for (size_t n = sl - 1; n > best; n--)
            if (n <= s->n_held && memcmp(s->held + s->n_held - n, s->stop[k], n) == 0) {
                best = n;
                break;
            }
    }
    return best;
}

/* ---- structured output: the grammar's mask before sampling, its matcher after ---- */

/* The tokens s's grammar allows now, in s->allowed: the trie mask plus the
 * end-of-generation and stop ids where the grammar may end. Returns how many,
 * or a negative code. */
static int32_t grammar_allow(struct engine *e, struct seq *s)
{
    int32_t n = grammar_mask(s->gm, e->gvocab, s->allowed);
    if (n < 0) return n;
    bool end = grammar_can_end(s->gm);
    for (int32_t k = 0; k < e->n_eog; k++) {
        uint32_t id = (uint32_t)e->eog[k], bit = 1u << (id & 31);
        n += end && !(s->allowed[id >> 5] & bit);
        s->allowed[id >> 5] = end ? s->allowed[id >> 5] | bit : s->allowed[id >> 5] & ~bit;
    }
    for (size_t k = 0; k < s->n_stop_ids; k++) {
        uint32_t id = (uint32_t)s->stop_ids[k], bit = 1u << (id & 31);
        n += end && !(s->allowed[id >> 5] & bit);
        s->allowed[id >> 5] = end ? s->allowed[id >> 5] | bit : s->allowed[id >> 5] & ~bit;
    }
    return n;
}

/* Feed an accepted token's bytes to the matcher; true when the grammar is now
 * complete and nothing can follow. The mask allowed the token, so the bytes fit;
 * if they did not (a bug), the grammar stops constraining rather than loop. */
static bool grammar_advance(struct engine *e, struct seq *s, int32_t tok)
{
    uint32_t len = 0;
    const uint8_t *b = grammar_vocab_bytes(e->gvocab, tok, &len);
    int rc = b ? grammar_accept_bytes(s->gm, b, len) : SA_ERR_INVALID_ARG;
    if (rc) {
        SA_LOGE("request %llu: token %d does not fit its grammar (%s): finishing", (unsigned long long)s->id, tok,
                sa_err_str(rc));
        return true;
    }
    return grammar_is_done(s->gm);
}

/* Handle one sampled token. Returns the finish reason, or NONE to continue. */
static enum engine_finish accept_token(struct engine *e, struct seq *s, int32_t tok, const struct sampler_result *lp)
{
    sampler_accept(s->smp, tok);
    s->prompt[s->n_prompt + s->n_gen++] = tok;
    s->last = tok;
    if (tok_is_eog(e->m->tok, tok)) return ENGINE_FINISH_STOP;
    for (size_t k = 0; k < s->n_stop_ids; k++)
        if (tok == s->stop_ids[k]) return ENGINE_FINISH_STOP;
    bool grammar_done = s->gm && grammar_advance(e, s, tok);
    size_t n = tok_stream_push(&s->ts, tok, e->piece, e->piece_cap);
    if (!s->n_stop) {
        emit_text(s, tok, e->piece, n, lp);
    } else {
        held_append(s, e->piece, n);
        for (size_t k = 0; k < s->n_stop; k++) {
            char *hit = strstr(s->held, s->stop[k]);
            if (hit) {
                emit_text(s, tok, s->held, (size_t)(hit - s->held), lp);
                s->n_held = 0;
                return ENGINE_FINISH_STOP;
            }
        }
        size_t keep = stop_prefix_tail(s), out = s->n_held - keep;
        emit_text(s, tok, s->held, out, lp);
        memmove(s->held, s->held + out, keep);
        s->n_held = keep;
    }
    if (grammar_done) return ENGINE_FINISH_STOP;
    if (s->n_gen >= s->max_tokens || s->n_past + 1 > e->n_ctx) return ENGINE_FINISH_LENGTH;
    return ENGINE_FINISH_NONE;
}

static void finish(struct engine *e, struct slot *sl, enum engine_finish f)
{
    struct seq *s = sl->seq;
    if (f != ENGINE_FINISH_CANCELLED) {
        /* release text held back for stop strings and any split character */
        size_t n = tok_stream_flush(&s->ts, e->piece, e->piece_cap);
        if (s->n_held || n) {
            if (n) held_append(s, e->piece, n);
            if (s->n_held) emit_text(s, -1, s->held, s->n_held, NULL);
        }
    }
    emit_done(e, sl, f, NULL, 0);
}

static void fail_seq(struct engine *e, struct slot *sl, int err)
{
    struct seq *s = sl->seq;
    struct engine_event ev = {.type = ENGINE_EV_ERROR, .id = s->id, .error = err};
    void (*cb)(void *, const struct engine_event *) = s->cb;
    void *user = s->user;
    retire(e, sl, false);
    cb(user, &ev);
}

/* After a forward pass that ended the prompt or fed the last token: sample the next one. */
static void sample_next(struct engine *e, struct slot *sl, const float *logits)
{
    struct seq *s = sl->seq;
    struct sampler_result res;
    for (uint32_t i = 0; i < e->info.n_vocab; i++)
        if (!isfinite(logits[i])) { /* weights that overflow, or a bad file: this sequence only */
            SA_LOGE("request %llu: logit %u is %g: failing the sequence", (unsigned long long)s->id, i,
                    (double)logits[i]);
            fail_seq(e, sl, SA_ERR_NUMERIC);
            return;
        }
    if (s->gm) {
        if (grammar_is_done(s->gm)) { /* a grammar that matches only the empty text */
            finish(e, sl, ENGINE_FINISH_STOP);
            return;
        }
        int32_t n_ok = grammar_allow(e, s);
        if (n_ok == 0 && grammar_can_end(s->gm)) { /* may end, and no token (not even an EOG) goes on */
            finish(e, sl, ENGINE_FINISH_STOP);
            return;
        }
        if (n_ok <= 0) {
            SA_LOGE("request %llu: its grammar allows no token here (%s)", (unsigned long long)s->id,
                    n_ok ? sa_err_str(n_ok) : "dead end");
            fail_seq(e, sl, n_ok ? n_ok : SA_ERR_INVALID_ARG);
            return;
        }
    }
    int32_t tok = sampler_sample_masked(s->smp, logits, s->gm ? s->allowed : NULL,
                                        s->sampling.n_logprobs ? &res : NULL);
    if (tok < 0) {
        fail_seq(e, sl, tok);
        return;
    }
    enum engine_finish f = accept_token(e, s, tok, s->sampling.n_logprobs ? &res : NULL);
    if (f != ENGINE_FINISH_NONE) finish(e, sl, f);
}

/* An embedding sequence's prefill rows: pool them; at the prompt's end, the
 * L2-normalised vector goes out with DONE and the sequence ends (no KV kept). */
static void embed_rows(struct engine *e, struct slot *sl, float *hidden, uint32_t T)
{
    struct seq *s = sl->seq;
    const uint32_t dim = e->info.dim;
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t d = 0; d < dim; d++) {
            double v = hidden[(size_t)t * dim + d];
            s->embd[d] = s->pooling == ENGINE_POOLING_LAST ? v : s->embd[d] + v;
        }
    if (s->n_past < s->n_prompt) return;
    if (!s->t_prompt_done) s->t_prompt_done = now_ms();
    double norm = 0;
    for (uint32_t d = 0; d < dim; d++) norm += s->embd[d] * s->embd[d];
    norm = sqrt(norm);
    float *out = hidden; /* this segment's rows of the step's scratch: consumed */
    for (uint32_t d = 0; d < dim; d++) out[d] = norm > 0 ? (float)(s->embd[d] / norm) : 0.0f;
    bool finite = true;
    for (uint32_t d = 0; d < dim; d++) finite = finite && isfinite(out[d]);
    if (!finite) {
        fail_seq(e, sl, SA_ERR_NUMERIC);
        return;
    }
    emit_done(e, sl, ENGINE_FINISH_STOP, out, dim);
}

/* A scored prompt's chunk (prompt_logprobs): the rows of positions pos0 ..
 * pos0+T-1 (final hidden states, after output_norm) give the log-probabilities
 * of the tokens at pos0+1 .. pos0+T (those inside the prompt), in blocks of
 * ENGINE_PROMPT_LOGPROB_ROWS rows of logits; position 0 has none. One PROMPT
 * event per token, in order. False when the sequence failed (no memory, or
 * logits that are not finite) and was retired. */
static bool score_prompt(struct engine *e, struct slot *sl, const float *hidden, uint32_t pos0, uint32_t T)
{
    struct seq *s = sl->seq;
    const uint32_t V = e->info.n_vocab, dim = e->info.dim;
    struct engine_event ev = {.type = ENGINE_EV_PROMPT, .id = s->id};
    if (pos0 == 0) { /* the first token: nothing before it to predict it */
        ev.token = s->prompt[0];
        ev.text = e->piece;
        ev.text_len = tok_stream_push(&s->pts, s->prompt[0], e->piece, e->piece_cap);
        if (s->n_prompt == 1) ev.text_len += tok_stream_flush(&s->pts, e->piece + ev.text_len, e->piece_cap - ev.text_len);
        ev.logprobs = (struct sampler_result){.token = s->prompt[0]};
        s->cb(s->user, &ev);
    }
    uint32_t n = pos0 + T < s->n_prompt ? T : (uint32_t)(s->n_prompt - 1 - pos0); /* rows that predict a prompt token */
    if (n && !e->lp_logits && !(e->lp_logits = malloc((size_t)ENGINE_PROMPT_LOGPROB_ROWS * V * sizeof(float)))) {
        fail_seq(e, sl, SA_ERR_NOMEM);
        return false;
    }
    for (uint32_t t0 = 0; t0 < n; t0 += ENGINE_PROMPT_LOGPROB_ROWS) {
        uint32_t nb = n - t0 < ENGINE_PROMPT_LOGPROB_ROWS ? n - t0 : ENGINE_PROMPT_LOGPROB_ROWS;
        int rc = tf_output_logits(e->ws, hidden + (size_t)t0 * dim, nb, e->lp_logits);
        if (rc) {
            fail_seq(e, sl, SA_ERR_INTERNAL);
            return false;
        }
        for (uint32_t t = 0; t < nb; t++) {
            const float *lg = e->lp_logits + (size_t)t * V;
            for (uint32_t k = 0; k < V; k++)
                if (!isfinite(lg[k])) {
                    SA_LOGE("request %llu: prompt logit %u at position %u is %g: failing the sequence",
                            (unsigned long long)s->id, k, pos0 + t0 + t, (double)lg[k]);
                    fail_seq(e, sl, SA_ERR_NUMERIC);
                    return false;
                }
            uint32_t pos = pos0 + t0 + t + 1;
            ev.token = s->prompt[pos];
            ev.pos = pos;
            sampler_logprobs(s->smp, lg, ev.token, &ev.logprobs);
            ev.text = e->piece;
            ev.text_len = tok_stream_push(&s->pts, ev.token, e->piece, e->piece_cap);
            if (pos == s->n_prompt - 1) { /* the prompt's end: a split character's tail is U+FFFD */
                size_t tail = tok_stream_flush(&s->pts, e->piece + ev.text_len, e->piece_cap - ev.text_len);
                ev.text_len += tail;
            }
            s->cb(s->user, &ev);
        }
    }
    return true;
}

/* One step: a decode row for every sequence past its prompt, then prefill
 * chunks for the others in admission order within prefill_chunk tokens, all
 * in one batched forward pass (tf_step). */
static void run_step(struct engine *e, struct slot **act, uint32_t n_act)
{
    struct tf_seg segs[TF_MAX_BATCH];
    struct slot *of[TF_MAX_BATCH];
    uint32_t n = 0, n_dec = 0, budget = e->cfg.prefill_chunk, prompt_rows = 0;
    for (uint32_t i = 0; i < n_act; i++) {
        struct seq *s = act[i]->seq;
        if (s->n_past < s->n_prompt) continue;
        of[n] = act[i];
        segs[n++] = (struct tf_seg){.seq = act[i]->tf, .tokens = &s->last, .T = 1, .pos0 = s->n_past,
                                    .want_logits = true};
        n_dec++;
    }
    for (uint32_t i = 0; i < n_act && budget; i++) { /* act[] is in admission order */
        struct seq *s = act[i]->seq;
        if (s->n_past >= s->n_prompt) continue;
        uint32_t T = (uint32_t)(s->n_prompt - s->n_past);
        if (T > budget) T = budget;
        budget -= T;
        prompt_rows += T;
        of[n] = act[i];
        bool rows = s->task == ENGINE_TASK_EMBED || s->prompt_lp; /* every row's final state */
        segs[n++] = (struct tf_seg){.seq = act[i]->tf, .tokens = s->prompt + s->n_past, .T = T, .pos0 = s->n_past,
                                    .want_logits = s->task == ENGINE_TASK_GENERATE && s->n_past + T == s->n_prompt,
                                    .hidden = rows ? e->hidden + (size_t)(prompt_rows - T) * e->info.dim : NULL};
    }
    if (!n) return;
    int rc = tf_step(e->ws, segs, n, e->batch_logits);
    if (rc) { /* inputs were validated at submit: whatever failed is the server's fault */
        SA_LOGE("forward step failed: %s", sa_err_str(rc));
        for (uint32_t i = 0; i < n; i++) fail_seq(e, of[i], rc == SA_ERR_NOMEM ? rc : SA_ERR_INTERNAL);
        return;
    }
    pthread_mutex_lock(&e->mu);
    e->stats.generated_tokens_total += n_dec;
    e->stats.prompt_tokens_total += prompt_rows;
    pthread_mutex_unlock(&e->mu);
    const float *logits = e->batch_logits; /* one row per segment that asked, in order */
    for (uint32_t i = 0; i < n; i++) {
        struct seq *s = of[i]->seq;
        s->n_past += segs[i].T;
        if (s->task == ENGINE_TASK_EMBED) {
            embed_rows(e, of[i], segs[i].hidden, segs[i].T);
            continue;
        }
        const float *row = logits; /* this segment's row, if it asked */
        if (segs[i].want_logits) logits += e->info.n_vocab;
        if (s->prompt_lp && segs[i].hidden && !score_prompt(e, of[i], segs[i].hidden, segs[i].pos0, segs[i].T))
            continue; /* failed: the sequence is gone */
        if (s->n_past < s->n_prompt) continue; /* more prompt to go */
        if (!s->t_prompt_done) s->t_prompt_done = now_ms(); /* the prompt's last chunk */
        if (s->task == ENGINE_TASK_SCORE)
            finish(e, of[i], ENGINE_FINISH_LENGTH);
        else
            sample_next(e, of[i], row);
    }
}

/* Reserve the pages s can ever need (prompt + max_tokens, less the prefix
 * blocks it adopts read-only) and set up its slot; false (nothing changed) if
 * the pool cannot hold it yet. Step thread, under mu. */
static bool try_admit(struct engine *e, struct slot *sl, struct seq *s)
{
    const struct share_plan *plan = s->share ? &s->plan : NULL;
    uint32_t positions = (uint32_t)s->n_prompt + s->max_tokens - 1;
    uint32_t blocks = (positions + e->block - 1) / e->block, ppb = tf_kv_pages_per_block(e->m, plan);
    uint32_t chain[4096], n_chain = 0, matched = 0;
    s->key = prefix_config_key(plan, &s->rb);
    /* an embedding needs every row's state, a scored prompt every row's logits */
    if (e->prefix && s->n_prompt > 1 && s->task != ENGINE_TASK_EMBED && !s->prompt_lp) {
        uint32_t limit = (uint32_t)s->n_prompt - 1; /* the last prompt token is always computed: its logits */
        if (limit / e->block + 1 > sizeof chain / sizeof *chain) limit = (uint32_t)(sizeof chain / sizeof *chain - 1) * e->block;
        matched = prefix_lookup(e->prefix, s->key, s->prompt, limit, chain, &n_chain);
    }
    uint32_t need = (blocks - matched / e->block) * ppb;
    if (!kv_pool_reserve(e->kv, need)) {
        bool ok = e->prefix && prefix_evict(e->prefix, need, chain, n_chain) && kv_pool_reserve(e->kv, need);
        if (!ok && e->prefix && e->stats.active_sequences == 0) {
            /* alone and still short (the adopted chain itself is in the way): start cold */
            n_chain = matched = 0;
            need = blocks * ppb;
            ok = prefix_evict(e->prefix, need, NULL, 0) && kv_pool_reserve(e->kv, need);
        }
        if (!ok) return false;
    }
    /* neither fails for a request engine_submit accepted (plan and re-balancer validated there,
     * the chain shorter than the context); if one did, the request stays queued */
    int rc = tf_reset(sl->tf, plan, &s->rb);
    for (uint32_t i = 0; i < n_chain && !rc; i++) {
        uint32_t np;
        rc = tf_adopt_block(sl->tf, prefix_pages(e->prefix, chain[i], &np));
    }
    if (rc) {
        SA_LOGE("request %llu: cannot set up its sequence: %s", (unsigned long long)s->id, sa_err_str(rc));
        tf_release_kv(sl->tf);
        kv_pool_unreserve(e->kv, need);
        return false;
    }
    tf_set_reservation(sl->tf, need);
    s->n_past = s->cached_tokens = matched;
    e->stats.prefix_tokens_total += matched;
    e->stats.prefix_hits_total += matched > 0;
    s->t_start = now_ms();
    if (!s->share) share_plan_init(&s->plan, e->info.n_layer);
    /* a generation from BOS alone starts with the word's SPM space: drop it, as the CLI does */
    tok_stream_init(&s->ts, e->m->tok, s->n_prompt == 1 && s->prompt[0] == e->info.bos && !s->gm);
    tok_stream_init(&s->pts, e->m->tok, false);
    return true;
}

/* Debug builds and tests: the pool's books balance after every step. Every
 * page reference is a sequence's page-table entry or a prefix-cache entry's,
 * and every reserved page belongs to an admitted sequence's reservation. */
static void check_pool(struct engine *e)
{
    uint64_t left = 0, refs = 0;
    for (uint32_t i = 0; i < e->cfg.n_slots; i++) {
        if (!e->slots[i].seq) continue;
        struct tf_cache_stats st;
        tf_cache_stats(e->slots[i].tf, 0, &st);
        left += tf_reservation_left(e->slots[i].tf);
        refs += st.k_pages + st.v_pages;
    }
    struct prefix_stats pst = {0};
    if (e->prefix) prefix_get_stats(e->prefix, &pst);
    refs += pst.pages;
    struct kv_pool_stats ps;
    kv_pool_stats(e->kv, &ps);
    if (kv_pool_check(e->kv) != 0 || left != ps.reserved || ps.used > ps.total || refs != ps.refs) {
        SA_LOGE("KV pool books do not balance: used %u of %u, reserved %u vs sequences' %llu, references %llu vs "
                "page tables' and prefix entries' %llu",
                ps.used, ps.total, ps.reserved, (unsigned long long)left, (unsigned long long)ps.refs,
                (unsigned long long)refs);
        abort();
    }
}

static void *step_main(void *arg)
{
    struct engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        for (;;) {
            bool any_active = false;
            for (uint32_t i = 0; i < e->cfg.n_slots; i++) any_active |= e->slots[i].seq != NULL;
            if (any_active || e->q_head || e->stopping || vision_pending(e->vis)) break;
            pthread_cond_wait(&e->cv, &e->mu);
        }
        bool stopping = e->stopping, admitted = false;
        /* admit FIFO while a slot is free and the pool can hold the head's pages */
        for (uint32_t i = 0; i < e->cfg.n_slots && e->q_head && !stopping; i++) {
            if (e->slots[i].seq) continue;
            if (!try_admit(e, &e->slots[i], e->q_head)) break;
            e->slots[i].seq = pop_head(e);
            admitted = true;
            if (++e->stats.active_sequences > e->stats.active_sequences_peak)
                e->stats.active_sequences_peak = e->stats.active_sequences;
        }
        /* nothing running and the head still does not fit: it never will (engine_create
         * checked that a full context fits an empty pool), so refuse it rather than spin */
        struct seq *refused = NULL;
        if (!admitted && e->q_head && !stopping && e->stats.active_sequences == 0) refused = pop_head(e);
        pthread_mutex_unlock(&e->mu);
        if (refused) {
            SA_LOGE("request %llu cannot fit in the KV pool", (unsigned long long)refused->id);
            struct engine_event ev = {.type = ENGINE_EV_ERROR, .id = refused->id, .error = SA_ERR_CONTEXT_FULL};
            refused->cb(refused->user, &ev);
            seq_free(refused);
        }
        /* cancellations at the step boundary, then one step for everyone else */
        struct slot *act[256];
        uint32_t n_act = 0;
        for (uint32_t i = 0; i < e->cfg.n_slots; i++) {
            struct slot *sl = &e->slots[i];
            if (!sl->seq) continue;
            if (stopping || atomic_load(&sl->seq->cancelled))
                finish(e, sl, ENGINE_FINISH_CANCELLED);
            else
                act[n_act++] = sl;
        }
        /* admission order = submission order (FIFO), i.e. by id; insertion sort: n is small */
        for (uint32_t i = 1; i < n_act; i++)
            for (uint32_t k = i; k > 0 && act[k]->seq->id < act[k - 1]->seq->id; k--) {
                struct slot *t = act[k];
                act[k] = act[k - 1];
                act[k - 1] = t;
            }
        if (n_act) run_step(e, act, n_act);
        if (!stopping) vision_run_one(e->vis); /* at most one chunk of an image job between two steps */
        if (e->cfg.debug_checks) check_pool(e);
        pthread_mutex_lock(&e->mu);
        e->stats.steps++;
        publish_kv(e);
        bool done = e->stopping && !e->q_head;
        for (uint32_t i = 0; i < e->cfg.n_slots; i++) done = done && !e->slots[i].seq;
        pthread_mutex_unlock(&e->mu);
        if (done) break;
    }
    return NULL;
}

/* ---- public ---- */

int engine_create(const struct engine_config *cfg_in, struct engine **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct engine *e = calloc(1, sizeof *e);
    if (!e) return SA_ERR_NOMEM;
    e->cfg = cfg_in ? *cfg_in : engine_default_config();
    struct engine_config *cfg = &e->cfg;
    if (cfg->n_threads < 1) cfg->n_threads = 1;
    if (cfg->n_slots < 1) cfg->n_slots = 1;
    if (cfg->n_slots > 256) cfg->n_slots = 256;
    if (cfg->prefill_chunk < 1) cfg->prefill_chunk = SA_DEFAULT_PREFILL_CHUNK;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->next_id = 1;
    struct model_load_opts lo = {.use_mmap = cfg->use_mmap};
    int rc = model_load(cfg->model_path, &lo, &e->m, msg, msg_len);
    if (rc) goto fail;
    const struct model_hparams *hp = &e->m->hp;
    e->n_ctx = cfg->n_ctx ? cfg->n_ctx : hp->n_ctx_train;
    struct engine_model_info *info = &e->info;
    info->name = e->m->name;
    info->n_layer = hp->n_layer;
    info->n_vocab = hp->n_vocab;
    info->n_ctx = e->n_ctx;
    info->n_ctx_train = hp->n_ctx_train;
    info->dim = hp->dim;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->n_params = model_n_params(e->m);
    info->bos = tok_bos(e->m->tok);
    info->eos = tok_eos(e->m->tok);
    for (uint32_t t = 0; t < hp->n_vocab && e->n_eog < SAMPLER_MAX_EOG; t++)
        if (tok_is_eog(e->m->tok, (int32_t)t)) e->eog[e->n_eog++] = (int32_t)t;
    info->share_default = cfg->share_default;
    info->rebalance_default = cfg->rebalance;
    info->chat_template = e->m->gguf && gguf_get_cstr(e->m->gguf, "tokenizer.chat_template", e->chat_template,
                                        sizeof e->chat_template) == 0 ? e->chat_template : NULL;
    if (!e->m->gguf && hf_chat_template(e->m->hf)) { /* a Hugging Face checkpoint */
        snprintf(e->chat_template, sizeof e->chat_template, "%s", hf_chat_template(e->m->hf));
        info->chat_template = e->chat_template;
    }
    e->pool = workers_create(cfg->n_threads);
    /* OpenBLAS runs on the step thread between pool tasks, with as many threads as the pool:
     * set once, here */
    if (e->pool) openblas_set_num_threads(workers_count(e->pool));
    if (cfg->vision_model_path && cfg->vision_model_path[0] &&
        (rc = vision_create(cfg->vision_model_path, cfg->vision_queue_max ? cfg->vision_queue_max : 16,
                            cfg->vision_max_images ? cfg->vision_max_images : 64, vision_wake, e, &e->vis, msg,
                            msg_len)))
        goto fail;
    if ((rc = grammar_vocab_create(e->m->tok, &e->gvocab))) goto fail;
    e->slots = calloc(cfg->n_slots, sizeof *e->slots);
    e->piece_cap = 3 * (tok_max_piece_len(e->m->tok) + 3) + 64;
    e->piece = malloc(e->piece_cap);
    e->batch_logits = malloc((size_t)cfg->n_slots * hp->n_vocab * sizeof(float));
    e->hidden = malloc(((size_t)cfg->prefill_chunk + cfg->n_slots) * hp->dim * sizeof(float));
    if (!e->pool || !e->slots || !e->piece || !e->batch_logits || !e->hidden) {
        rc = SA_ERR_NOMEM;
        goto fail;
    }
    /* "auto" is calibrated once, here, not per request */
    char why[256];
    if (!(e->layer_sim = malloc((size_t)hp->n_layer * hp->n_layer * sizeof *e->layer_sim))) {
        rc = SA_ERR_NOMEM;
        goto fail;
    }
    rc = calib_auto_plan(e->m, NULL, cfg->n_threads, cfg->share_threshold, &e->auto_plan, e->layer_sim, why,
                         sizeof why);
    if (rc) { /* a model that loads also serves: "auto" then shares nothing */
        SA_LOGW("share_spans auto: calibration failed (%s); the auto plan is off", why);
        share_plan_init(&e->auto_plan, hp->n_layer);
        free(e->layer_sim);
        e->layer_sim = NULL;
        rc = 0;
    }
    const char *spans = cfg->share_spans ? cfg->share_spans : "auto";
    if ((rc = engine_parse_plan(e, spans, &e->default_plan, msg, msg_len))) goto fail;
    share_plan_format(&e->default_plan, info->default_spans, sizeof info->default_spans);
    /* the paged pool: kv_budget bytes of pages (default: n_slots full contexts without sharing),
     * which must hold at least one full context without sharing */
    e->block = cfg->kv_block ? cfg->kv_block : SA_DEFAULT_KV_BLOCK;
    const size_t page_bytes = tf_kv_page_bytes(e->m, e->block, cfg->kv_f16);
    const uint64_t max_blocks = (e->n_ctx + e->block - 1) / e->block,
                   per_seq_pages = max_blocks * tf_kv_pages_per_block(e->m, NULL);
    uint64_t n_pages = cfg->kv_budget ? cfg->kv_budget / page_bytes : per_seq_pages * cfg->n_slots;
    if (n_pages < per_seq_pages) {
        rc = sa_errf(SA_ERR_RANGE, msg, msg_len,
                     "kv_budget: %llu bytes cannot hold one sequence of %u tokens (%llu pages of %zu bytes = %llu bytes)",
                     (unsigned long long)cfg->kv_budget, e->n_ctx, (unsigned long long)per_seq_pages, page_bytes,
                     (unsigned long long)(per_seq_pages * page_bytes));
        goto fail;
    }
    if (n_pages > UINT32_MAX - 1) n_pages = UINT32_MAX - 1;
    if ((rc = kv_pool_create(page_bytes, (uint32_t)n_pages, true, &e->kv))) {
        snprintf(msg, msg_len, "kv_budget: cannot map %llu bytes of KV pages", (unsigned long long)(n_pages * page_bytes));
        goto fail;
    }
    if (cfg->prefix_cache && prefix_create(e->kv, e->block, &e->prefix) != 0) {
        rc = SA_ERR_NOMEM;
        goto fail;
    }
    /* n_batch bounds a step: one decode row per slot plus a prefill chunk */
    struct tf_opts wo = {.n_ctx = e->n_ctx, .n_batch = cfg->prefill_chunk + cfg->n_slots, .pool = e->pool};
    if ((rc = tf_ws_create(e->m, &wo, &e->ws))) {
        snprintf(msg, msg_len, "cannot allocate the step scratch for %u rows: %s", wo.n_batch, sa_err_str(rc));
        goto fail;
    }
    for (uint32_t i = 0; i < cfg->n_slots; i++) {
        struct tf_opts to = {.n_ctx = e->n_ctx, .kv_block = e->block, .kv_pool = e->kv,
                             .kv_f16 = cfg->kv_f16};
        if ((rc = tf_seq_create(e->m, &to, &e->slots[i].tf))) {
            snprintf(msg, msg_len, "cannot allocate %u sequence slots: %s", cfg->n_slots, sa_err_str(rc));
            goto fail;
        }
    }
    e->stats.n_slots = cfg->n_slots;
    e->stats.queue_max = cfg->queue_max;
    e->stats.kv_page_bytes = page_bytes;
    e->stats.kv_bytes_capacity = n_pages * page_bytes;
    publish_kv(e);
    if (pthread_create(&e->thread, NULL, step_main, e) != 0) {
        rc = SA_ERR_NOMEM;
        goto fail;
    }
    e->thread_started = true;
    *out = e;
    return 0;
fail:
    engine_destroy(e);
    return rc ? rc : SA_ERR_INTERNAL;
}

void engine_destroy(struct engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        /* queued requests end now: they never started */
        struct seq *q = e->q_head;
        e->q_head = e->q_tail = NULL;
        e->q_len = 0;
        e->stats.queue_tokens = 0;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        while (q) {
            struct seq *n = q->next;
            struct engine_event ev = {.type = ENGINE_EV_DONE, .id = q->id, .finish = ENGINE_FINISH_CANCELLED,
                                      .prompt_tokens = (uint32_t)q->n_prompt};
            q->cb(q->user, &ev);
            seq_free(q);
            q = n;
        }
        pthread_join(e->thread, NULL);
    }
    vision_destroy(e->vis); /* after the join: queued image jobs end with SA_ERR_CANCELLED */
    if (e->slots)
        for (uint32_t i = 0; i < e->cfg.n_slots; i++) tf_seq_destroy(e->slots[i].tf);
    tf_ws_destroy(e->ws);
    prefix_destroy(e->prefix);
    kv_pool_destroy(e->kv);
    free(e->slots);
    free(e->piece);
    free(e->batch_logits);
    free(e->hidden);
    free(e->layer_sim);
    free(e->lp_logits);
    grammar_vocab_destroy(e->gvocab);
    workers_destroy(e->pool);
    model_free(e->m);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const struct engine_model_info *engine_info(const struct engine *e) { return &e->info; }

int engine_tokenize(const struct engine *e, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t **ids, size_t *n)
{
    return tok_encode_alloc(e->m->tok, text, len, add_bos, parse_special, ids, n);
}

char *engine_token_piece(const struct engine *e, int32_t id)
{
    if (id < 0 || (uint32_t)id >= e->info.n_vocab) return NULL;
    size_t cap = tok_max_piece_len(e->m->tok) + 8;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    size_t n = tok_token_to_bytes(e->m->tok, id, true, buf, cap);
    buf[n < cap ? n : cap] = 0;
    return buf;
}

char *engine_detokenize(const struct engine *e, const int32_t *ids, size_t n)
{
    return tok_decode(e->m->tok, ids, n, false);
}

int engine_parse_plan(const struct engine *e, const char *text, struct share_plan *plan, char *msg, size_t msg_len)
{
    if (text && !strcmp(text, "auto")) {
        *plan = e->auto_plan;
        return 0;
    }
    return share_plan_parse(plan, text, e->info.n_layer, msg, msg_len);
}

int engine_grammar_compile(const struct engine *e, const char *text, size_t len, struct grammar **out, char *msg,
                           size_t msg_len)
{
    int rc = grammar_compile(text, len, out, msg, msg_len);
    if (rc) return rc;
    /* a grammar whose first character no token can produce would fail at the first step */
    struct grammar_matcher *m = NULL;
    uint32_t *bits = malloc(((size_t)e->info.n_vocab + 31) / 32 * sizeof *bits);
    rc = bits ? grammar_matcher_create(*out, &m) : SA_ERR_NOMEM;
    int32_t n = rc ? rc : grammar_mask(m, e->gvocab, bits);
    if (!rc && n <= 0 && !grammar_can_end(m))
        rc = n < 0 ? n : sa_errf(SA_ERR_INVALID_ARG, msg, msg_len,
                                 "grammar: no token of this model's vocabulary can start it");
    grammar_matcher_destroy(m);
    free(bits);
    if (rc) {
        grammar_unref(*out);
        *out = NULL;
    }
    return rc;
}

void engine_grammar_free(struct grammar *g) { grammar_unref(g); }

int engine_submit(struct engine *e, const struct engine_request *req, uint64_t *id)
{
    if (!req->cb || req->n_prompt == 0) return SA_ERR_INVALID_ARG;
    if (req->n_prompt >= e->n_ctx) return SA_ERR_CONTEXT_FULL;
    for (size_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || (uint32_t)req->prompt[i] >= e->info.n_vocab) return SA_ERR_INVALID_ARG;
    if (req->share && req->plan.n_layer != e->info.n_layer) return SA_ERR_INVALID_ARG;
    if (req->n_stop > ENGINE_MAX_STOP) return SA_ERR_RANGE;
    if (req->rebalance.on && !(isfinite(req->rebalance.alpha) && req->rebalance.tau >= 0 && req->rebalance.tau <= 1))
        return SA_ERR_RANGE;
    if (req->n_stop_ids > ENGINE_MAX_STOP_IDS) return SA_ERR_RANGE;
    for (size_t i = 0; i < req->n_stop_ids; i++)
        if (req->stop_ids[i] < 0 || (uint32_t)req->stop_ids[i] >= e->info.n_vocab) return SA_ERR_INVALID_ARG;
    struct seq *s = calloc(1, sizeof *s);
    if (!s) return SA_ERR_NOMEM;
    struct sampler_params sp = req->sampling; /* with the model's end-of-generation ids */
    memcpy(sp.eog, e->eog, sizeof sp.eog);
    sp.n_eog = e->n_eog;
    int rc = sampler_create(&sp, (int32_t)e->info.n_vocab, &s->smp);
    if (rc) {
        free(s);
        return rc;
    }
    memcpy(s->stop_ids, req->stop_ids, req->n_stop_ids * sizeof *s->stop_ids);
    s->n_stop_ids = req->n_stop_ids;
    if (req->grammar && ((rc = grammar_matcher_create(req->grammar, &s->gm)) ||
                         !(s->allowed = malloc(((size_t)e->info.n_vocab + 31) / 32 * sizeof *s->allowed)))) {
        seq_free(s);
        return rc ? rc : SA_ERR_NOMEM;
    }
    uint32_t room = e->n_ctx - (uint32_t)req->n_prompt;
    s->max_tokens = req->max_tokens && req->max_tokens < room ? req->max_tokens : room;
    s->task = req->task;
    s->pooling = req->pooling;
    s->prompt_lp = req->prompt_logprobs && s->task != ENGINE_TASK_EMBED;
    if (s->task == ENGINE_TASK_SCORE) s->max_tokens = 1; /* the prompt's positions only, as an embedding */
    if (s->task == ENGINE_TASK_EMBED) { /* the prompt's positions only: one "token" of reservation */
        s->max_tokens = 1;
        if (!(s->embd = calloc(e->info.dim, sizeof *s->embd))) {
            seq_free(s);
            return SA_ERR_NOMEM;
        }
    }
    /* the prompt, then the generated tokens as they are accepted (for the prefix cache) */
    s->prompt = malloc((req->n_prompt + s->max_tokens) * sizeof *s->prompt);
    if (!s->prompt) {
        seq_free(s);
        return SA_ERR_NOMEM;
    }
    memcpy(s->prompt, req->prompt, req->n_prompt * sizeof *s->prompt);
    s->n_prompt = req->n_prompt;
    s->sampling = sp;
    s->sampling.bias = NULL; /* the sampler holds its own copy; req's memory is not ours */
    s->share = req->share;
    s->plan = req->plan;
    s->rb = req->rebalance;
    for (size_t i = 0; i < req->n_stop; i++) {
        size_t len = strlen(req->stop[i]);
        if (len == 0 || len > ENGINE_MAX_STOP_LEN || !(s->stop[i] = strdup(req->stop[i]))) {
            s->n_stop = i;
            seq_free(s);
            return len ? SA_ERR_NOMEM : SA_ERR_RANGE;
        }
        s->n_stop = i + 1;
    }
    s->cb = req->cb;
    s->user = req->user;
    s->t_submit = now_ms();
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->q_len >= e->cfg.queue_max ||
        (e->cfg.queue_max_tokens && e->q_len && e->stats.queue_tokens + s->n_prompt > e->cfg.queue_max_tokens)) {
        pthread_mutex_unlock(&e->mu);
        seq_free(s);
        return SA_ERR_BUSY;
    }
    s->id = e->next_id++;
    if (e->q_tail)
        e->q_tail->next = s;
    else
        e->q_head = s;
    e->q_tail = s;
    e->q_len++;
    e->stats.queue_depth = e->q_len;
    e->stats.queue_tokens += s->n_prompt;
    *id = s->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void engine_cancel(struct engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    /* queued: unlink and finish now (it never touched a slot) */
    struct seq **pp = &e->q_head, *prev = NULL, *found = NULL;
    while (*pp) {
        if ((*pp)->id == id) {
            found = *pp;
            *pp = found->next;
            if (e->q_tail == found) e->q_tail = prev;
            dequeued(e, found);
            break;
        }
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!found)
        for (uint32_t i = 0; i < e->cfg.n_slots; i++)
            if (e->slots[i].seq && e->slots[i].seq->id == id) atomic_store(&e->slots[i].seq->cancelled, true);
    pthread_mutex_unlock(&e->mu);
    if (found) {
        struct engine_event ev = {.type = ENGINE_EV_DONE, .id = found->id, .finish = ENGINE_FINISH_CANCELLED,
                                  .prompt_tokens = (uint32_t)found->n_prompt};
        found->cb(found->user, &ev);
        seq_free(found);
    }
}

void engine_get_metrics(struct engine *e, struct engine_metrics *m)
{
    pthread_mutex_lock(&e->mu);
    *m = e->stats;
    pthread_mutex_unlock(&e->mu);
    m->vision_queue_depth = vision_queue_depth(e->vis);
}

/* ---- the phiDNN image classifier (vision.h) ---- */

const float *engine_layer_similarity(const struct engine *e, uint32_t *n_layers)
{
    if (n_layers) *n_layers = e && e->layer_sim ? e->info.n_layer : 0;
    return e ? e->layer_sim : NULL;
}

const struct phidnn_info *engine_vision_info(const struct engine *e) { return vision_info(e->vis); }

int engine_vision_submit(struct engine *e, const struct engine_vision_request *req, uint64_t *id)
{
    pthread_mutex_lock(&e->mu);
    const bool stopping = e->stopping;
    pthread_mutex_unlock(&e->mu);
    if (stopping) return SA_ERR_BUSY;
    return vision_submit(e->vis, req, id);
}

uint32_t engine_vision_queue_depth(struct engine *e) { return vision_queue_depth(e->vis); }
