#define _DEFAULT_SOURCE
#include "api.h"

#include "config/config.h"
#include "engine/chat.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "http.h"
#include "infer.h"
#include "metrics.h"
#include "request.h"
#include "response.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

struct job;
struct vjob;
static void on_vision_async(struct api *a);
static bool vision_on_closed(struct api *a, struct http_request *r, bool client_gone);
static void handle_v2(struct api *a, struct http_request *r, const char *path, const char *method);
struct job_seq;

/* One engine event on its way from the step thread to the loop (api->q_head). */
struct ev_item {
    struct ev_item *next;
    struct job_seq *seq;
    struct engine_event ev;
    char *text;
    bool embedded; /* the sequence's own final item (job_seq.final), not malloc'd */
};

struct job_seq {
    struct job *job;
    uint32_t index;
    size_t prompt_index;
    uint64_t engine_id;
    bool submitted, done;
    char *text;
    size_t len, cap;
    struct response_token_logprob *lps;
    size_t n_lps, cap_lps;
    const char *finish;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    struct engine_cache_stats cache;
    struct engine_timings timings;
    bool role_sent, cancelled;
    /* The DONE/ERROR event's item, allocated with the sequence, so the final event
     * always reaches the loop and the job is always freed. A TOKEN event whose item
     * cannot be allocated sets token_lost (step thread; read by the loop after the
     * final event, which the queue's mutex orders after it): the answer would be
     * missing text, so the request fails with out_of_memory instead. */
    struct ev_item final;
    bool token_lost;
};

struct job {
    struct api *api;
    struct http_request *http; /* NULL once the HTTP side closed */
    int refs;
    enum request_kind kind;
    enum metrics_endpoint ep;
    bool stream, include_usage, share, rebalance, client_gone;
    int32_t logprobs;
    char id[48];
    int64_t created;
    char *model;
    struct job_seq *seqs;
    size_t n_seqs, remaining;
    bool first_token_seen, failed;
    bool stream_started; /* the 200 and the SSE headers went out */
    double born;         /* uv_hrtime seconds when the request arrived */
    struct api_error err;
    struct job *prev, *next; /* jobs with engine work */
};

struct api {
    uv_loop_t *loop;
    struct engine *e;
    const struct config *cfg;
    struct http_server *http;
    struct metrics *metrics;
    struct request_limits limits;
    enum chat_format chat;
    bool draining;
    uv_async_t async;
    pthread_mutex_t mu; /* guards the event queue */
    struct ev_item *q_head, *q_tail;
    struct job *jobs;
    unsigned n_jobs;
    uint64_t seed_counter, id_counter;
    /* phiDNN /v2 jobs (see "Open Inference Protocol" below) */
    struct vjob *vjobs;           /* in flight (loop thread) */
    unsigned n_vjobs;
    struct vjob *vq_head, *vq_tail; /* finished by the engine, under mu */
    int vision_default_mode;
    /* test hook, environment SA_FAULT_EVENT_ALLOC=N (not a setting, so not SASERVE_*):
     * every N-th allocation of the event path fails; 0 = off. Step thread only. */
    uint64_t fail_every, ev_allocs;
};

/* ---- small helpers ---- */

static double now_s(void) { return (double)uv_hrtime() * 1e-9; }

/* The status a client saw: STATUS_CLIENT_CLOSED (499) when it left before the answer. */
#define STATUS_CLIENT_CLOSED 499

static void send_json(struct api *a, struct http_request *r, enum metrics_endpoint ep, int status, char *json,
                      size_t len, const char *const *headers)
{
    http_respond(r, status, "application/json", json ? json : "{}", json ? len : 2, headers);
    metrics_request_done(a->metrics, ep, http_client_gone(r) ? STATUS_CLIENT_CLOSED : status, http_age_s(r));
    free(json);
}

static void send_error(struct api *a, struct http_request *r, enum metrics_endpoint ep, const struct api_error *err)
{
    size_t len;
    char *json = response_error_json(err, &len);
    static const char *const retry[] = {"Retry-After: 1", NULL};
    send_json(a, r, ep, err->status, json, len, err->status == 503 ? retry : NULL);
}

static void send_http_error(struct api *a, struct http_request *r, enum metrics_endpoint ep,
                            enum response_http_error kind, const char *param, const char *message)
{
    struct api_error err;
    response_error_http(kind, param, message, &err);
    send_error(a, r, ep, &err);
}

static bool key_equal_ct(const char *given, const char *want)
{
    /* constant time in the length of the expected key */
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = (unsigned char)(lg != lw);
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)(want[i] ^ (i < lg ? given[i] : 0));
    return diff == 0;
}

static bool authorized(struct api *a, struct http_request *r)
{
    if (!a->cfg->api_key[0]) return true;
    const char *h = http_header(r, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    return key_equal_ct(h + 7, a->cfg->api_key);
}

/* ---- job lifetime ---- */

static void seq_free_contents(struct job_seq *s)
{
    free(s->text);
    for (size_t i = 0; i < s->n_lps; i++) {
        free((char *)(uintptr_t)s->lps[i].token);
        for (size_t k = 0; k < s->lps[i].n_top; k++) free((char *)(uintptr_t)s->lps[i].top[k].token);
        free((void *)(uintptr_t)s->lps[i].top);
    }
    free(s->lps);
}

static void job_unref(struct job *j)
{
    if (--j->refs > 0) return;
    for (size_t i = 0; i < j->n_seqs; i++) seq_free_contents(&j->seqs[i]);
    free(j->seqs);
    free(j->model);
    free(j);
}

static void job_unlink(struct job *j)
{
    struct api *a = j->api;
    if (j->prev)
        j->prev->next = j->next;
    else if (a->jobs == j)
        a->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->prev = j->next = NULL;
    a->n_jobs--;
}

static void job_cancel_all(struct job *j)
{
    for (size_t i = 0; i < j->n_seqs; i++)
        if (j->seqs[i].submitted && !j->seqs[i].done) engine_cancel(j->api->e, j->seqs[i].engine_id);
}

/* ---- engine -> loop ---- */

/* Allocation in the event path (step thread), with the fault-injection hook. */
static void *ev_alloc(struct api *a, size_t n)
{
    if (a->fail_every && ++a->ev_allocs % a->fail_every == 0) return NULL;
    return malloc(n);
}

static void on_engine_event(void *user, const struct engine_event *ev)
{
    struct job_seq *s = user;
    struct api *a = s->job->api;
    struct ev_item *it;
    if (ev->type == ENGINE_EV_TOKEN) {
        it = ev_alloc(a, sizeof *it);
        char *text = ev->text_len ? ev_alloc(a, ev->text_len) : NULL;
        if (!it || (ev->text_len && !text)) {
            free(it);
            free(text);
            s->token_lost = true;
            return;
        }
        memset(it, 0, sizeof *it);
        if (text) memcpy(text, ev->text, ev->text_len);
        it->text = text;
    } else {
        it = &s->final; /* never fails: the last event of the sequence */
        memset(it, 0, sizeof *it);
        it->embedded = true;
    }
    it->seq = s;
    it->ev = *ev;
    it->ev.text = NULL;
    pthread_mutex_lock(&a->mu);
    if (a->q_tail)
        a->q_tail->next = it;
    else
        a->q_head = it;
    a->q_tail = it;
    pthread_mutex_unlock(&a->mu);
    uv_async_send(&a->async);
}

static void append_text(struct job_seq *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2 + 64;
        char *t = realloc(s->text, cap);
        if (!t) return;
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = 0;
}

static char *token_text(struct api *a, int32_t id)
{
    char *t = engine_detokenize(a->e, &id, 1);
    return t ? t : strdup("");
}

/* Record the logprobs of one token; returns the new entry or NULL. */
static struct response_token_logprob *add_logprob(struct job_seq *s, const struct engine_event *ev, uint32_t offset)
{
    struct api *a = s->job->api;
    if (s->n_lps == s->cap_lps) {
        size_t cap = s->cap_lps ? s->cap_lps * 2 : 32;
        struct response_token_logprob *n = realloc(s->lps, cap * sizeof *n);
        if (!n) return NULL;
        s->lps = n;
        s->cap_lps = cap;
    }
    struct response_token_logprob *lp = &s->lps[s->n_lps];
    memset(lp, 0, sizeof *lp);
    char *tt = token_text(a, ev->token);
    lp->token = tt;
    lp->token_len = tt ? strlen(tt) : 0;
    lp->logprob = ev->logprobs.logprob;
    lp->text_offset = offset;
    size_t n_top = (size_t)ev->logprobs.n_top;
    if (n_top > (size_t)s->job->logprobs) n_top = (size_t)s->job->logprobs;
    struct response_top_logprob *top = n_top ? calloc(n_top, sizeof *top) : NULL;
    for (size_t k = 0; top && k < n_top; k++) {
        char *t = token_text(a, ev->logprobs.top[k].id);
        top[k].token = t;
        top[k].token_len = t ? strlen(t) : 0;
        top[k].logprob = ev->logprobs.top[k].logprob;
    }
    lp->top = top;
    lp->n_top = top ? n_top : 0;
    s->n_lps++;
    return lp;
}

static void fill_choice(const struct job_seq *s, struct response_choice *c)
{
    memset(c, 0, sizeof *c);
    c->index = s->index;
    c->text = s->text ? s->text : "";
    c->text_len = s->len;
    c->finish_reason = s->finish;
    c->has_logprobs = s->job->logprobs >= 0;
    c->n_logprobs = s->n_lps;
    c->logprobs = s->lps;
    c->prompt_tokens = s->prompt_tokens;
    c->completion_tokens = s->completion_tokens;
    c->cached_tokens = s->cached_tokens;
    c->cache = s->cache;
    c->timings = s->timings;
}

/* Builds the whole-request view; choices must hold n_seqs entries. */
static void fill_completion(const struct job *j, struct response_choice *choices, struct response_completion *c)
{
    memset(c, 0, sizeof *c);
    c->id = j->id;
    c->created = j->created;
    c->model = j->model;
    c->n_choices = j->n_seqs;
    c->choices = choices;
    size_t last_prompt = (size_t)-1;
    for (size_t i = 0; i < j->n_seqs; i++) {
        fill_choice(&j->seqs[i], &choices[i]);
        if (j->seqs[i].prompt_index != last_prompt) {
            c->usage.prompt_tokens += j->seqs[i].prompt_tokens;
            c->usage.cached_tokens += j->seqs[i].cached_tokens;
        }
        last_prompt = j->seqs[i].prompt_index;
        c->usage.completion_tokens += j->seqs[i].completion_tokens;
    }
}

static void stream_json(struct job *j, char *json, size_t len)
{
    if (!json) return;
    size_t n;
    char *ev = response_sse_event(json, len, &n);
    if (ev && j->http) http_stream_write(j->http, ev, n);
    free(ev);
    free(json);
}

static void stream_chunk(struct job *j, struct response_chunk *ch)
{
    size_t len;
    char *json = j->kind == REQUEST_CHAT ? response_chat_chunk_json(ch, &len) : response_completion_chunk_json(ch, &len);
    stream_json(j, json, len);
}

/* One line per generation request: id, endpoint, status, tokens, latency, sharing, KV bytes. No prompt text. */
static void log_job(const struct job *j, int status, double seconds, uint64_t prompt, uint64_t gen)
{
    uint64_t kv = 0, saved = 0;
    for (size_t i = 0; i < j->n_seqs; i++) {
        kv += j->seqs[i].cache.kv_bytes;
        saved += j->seqs[i].cache.kv_bytes_saved;
    }
    SA_LOGI("%s %s %d prompt=%llu generated=%llu %.1fms share=%s rebalance=%s kv_bytes=%llu kv_saved=%llu%s", j->id,
            j->kind == REQUEST_CHAT ? "/v1/chat/completions" : "/v1/completions", status, (unsigned long long)prompt,
            (unsigned long long)gen, seconds * 1e3, j->share ? "on" : "off", j->rebalance ? "on" : "off",
            (unsigned long long)kv, (unsigned long long)saved, j->client_gone ? " client_gone" : "");
}

static void job_finish(struct job *j)
{
    struct api *a = j->api;
    uint64_t prompt = 0, gen = 0;
    for (size_t i = 0; i < j->n_seqs; i++) {
        prompt += j->seqs[i].prompt_tokens;
        gen += j->seqs[i].completion_tokens;
    }
    metrics_tokens(a->metrics, prompt, gen);
    metrics_sharing(a->metrics, j->share, j->rebalance);
    bool cancelled = false;
    for (size_t i = 0; i < j->n_seqs; i++) cancelled |= j->seqs[i].cancelled;
    if (cancelled && !j->failed) {
        response_error_from_code(SA_ERR_CANCELLED, NULL, "the server is shutting down; the request was cancelled", &j->err);
        j->failed = true;
    }
    if (!j->http) { /* the client went away: counted once, as 499 */
        log_job(j, STATUS_CLIENT_CLOSED, now_s() - j->born, prompt, gen);
        metrics_request_done(a->metrics, j->ep, STATUS_CLIENT_CLOSED, now_s() - j->born);
        return;
    }
    /* a stream that began has sent 200; a failure then is an error event, not a status */
    int status = j->failed && !j->stream_started ? j->err.status : 200;
    if (http_client_gone(j->http)) status = STATUS_CLIENT_CLOSED;
    log_job(j, status, http_age_s(j->http), prompt, gen);
    if (j->stream && j->stream_started) {
        if (j->failed) {
            size_t n;
            char *ev = response_sse_error(&j->err, &n);
            if (ev) http_stream_write(j->http, ev, n);
            free(ev);
        } else if (j->include_usage) {
            struct response_choice *ch = calloc(j->n_seqs, sizeof *ch);
            struct response_completion c;
            if (ch) {
                fill_completion(j, ch, &c);
                size_t len;
                char *json = j->kind == REQUEST_CHAT ? response_chat_usage_chunk_json(&c, &len)
                                                     : response_completion_usage_chunk_json(&c, &len);
                stream_json(j, json, len);
            }
            free(ch);
        }
        const char *done = response_sse_done();
        http_stream_write(j->http, done, strlen(done));
        http_stream_end(j->http);
        metrics_request_done(a->metrics, j->ep, status, http_age_s(j->http));
        return;
    }
    if (j->failed) {
        send_error(a, j->http, j->ep, &j->err);
        return;
    }
    struct response_choice *ch = calloc(j->n_seqs, sizeof *ch);
    struct response_completion c;
    if (!ch) {
        send_http_error(a, j->http, j->ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    fill_completion(j, ch, &c);
    size_t len;
    char *json = j->kind == REQUEST_CHAT ? response_chat_json(&c, &len) : response_completion_json(&c, &len);
    free(ch);
    send_json(a, j->http, j->ep, 200, json, len, NULL);
}

static void handle_event(struct api *a, struct ev_item *it)
{
    struct job_seq *s = it->seq;
    struct job *j = s->job;
    const struct engine_event *ev = &it->ev;
    if (ev->type == ENGINE_EV_TOKEN) {
        if (!j->first_token_seen && j->http) {
            j->first_token_seen = true;
            metrics_first_token(a->metrics, http_age_s(j->http));
        }
        uint32_t offset = (uint32_t)s->len;
        append_text(s, it->text ? it->text : "", ev->text_len);
        struct response_token_logprob *lp = NULL;
        if (j->logprobs >= 0 && ev->token >= 0) lp = add_logprob(s, ev, offset);
        if (j->stream && j->http && !j->failed && (ev->text_len || lp)) {
            struct response_chunk ch = {.id = j->id, .created = j->created, .model = j->model, .index = s->index,
                                        .text = it->text ? it->text : "", .text_len = ev->text_len,
                                        .role = j->kind == REQUEST_CHAT && !s->role_sent,
                                        .has_logprobs = j->logprobs >= 0, .n_logprobs = lp ? 1 : 0, .logprobs = lp};
            s->role_sent = true;
            stream_chunk(j, &ch);
        }
        return;
    }
    /* DONE or ERROR: this sequence is over */
    s->done = true;
    if (ev->type == ENGINE_EV_ERROR) {
        if (!j->failed) {
            response_error_from_code(ev->error, NULL, NULL, &j->err);
            j->failed = true;
            job_cancel_all(j);
        }
    } else if (s->token_lost && !j->failed) {
        response_error_from_code(SA_ERR_NOMEM, NULL, "out of memory while streaming the answer", &j->err);
        j->failed = true;
        job_cancel_all(j);
    } else {
        s->finish = engine_finish_name(ev->finish);
        s->cancelled = ev->finish == ENGINE_FINISH_CANCELLED && !j->client_gone;
        s->prompt_tokens = ev->prompt_tokens;
        s->completion_tokens = ev->completion_tokens;
        s->cached_tokens = ev->cached_tokens;
        s->cache = ev->cache;
        s->timings = ev->timings;
    }
    j->remaining--;
    if (j->stream && j->http && !j->failed && ev->type == ENGINE_EV_DONE && !s->cancelled) {
        struct response_choice done;
        fill_choice(s, &done);
        struct response_choice *all = NULL;
        struct response_completion summary;
        struct response_chunk ch = {.id = j->id, .created = j->created, .model = j->model, .index = s->index,
                                    .text = "", .role = j->kind == REQUEST_CHAT && !s->role_sent,
                                    .has_logprobs = j->logprobs >= 0, .finish_reason = s->finish, .done = &done};
        s->role_sent = true;
        if (j->remaining == 0 && !j->include_usage && (all = calloc(j->n_seqs, sizeof *all))) {
            fill_completion(j, all, &summary);
            ch.summary = &summary;
        }
        stream_chunk(j, &ch);
        free(all);
    }
    if (j->remaining == 0) {
        job_finish(j);
        job_unlink(j);
    }
    job_unref(j);
}

static void on_async(uv_async_t *h)
{
    struct api *a = h->data;
    pthread_mutex_lock(&a->mu);
    struct ev_item *it = a->q_head;
    a->q_head = a->q_tail = NULL;
    pthread_mutex_unlock(&a->mu);
    while (it) {
        struct ev_item *next = it->next;
        bool embedded = it->embedded;
        char *text = it->text;
        handle_event(a, it); /* may free the job, and with it an embedded item */
        free(text);
        if (!embedded) free(it);
        it = next;
    }
    on_vision_async(a);
}

/* ---- completions / chat ---- */

static int query_cb(void *ctx, const char *key, const char *value)
{
    void **p = ctx;
    return request_query_arg(p[0], key, value, p[1]);
}

static uint64_t pick_seed(struct api *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20)) + 0x9e3779b97f4a7c15ull * ++a->seed_counter;
}

static void handle_generate(struct api *a, struct http_request *r, enum request_kind kind)
{
    enum metrics_endpoint ep = kind == REQUEST_CHAT ? METRICS_EP_CHAT : METRICS_EP_COMPLETIONS;
    if (a->draining) {
        send_http_error(a, r, ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "the server is shutting down");
        return;
    }
    struct api_request req;
    struct api_error err = {0};
    request_init(&req);
    void *qctx[2] = {&req, &err};
    size_t blen;
    const char *body = http_body(r, &blen);
    if (http_query_each(r, query_cb, qctx) != 0 || request_parse(kind, body, blen, &a->limits, &req, &err) != 0) {
        send_error(a, r, ep, &err);
        request_free(&req);
        return;
    }
    /* prompts -> token ids */
    size_t n_prompts = kind == REQUEST_CHAT ? 1 : req.n_prompts;
    int32_t **ids = calloc(n_prompts, sizeof *ids);
    size_t *n_ids = calloc(n_prompts, sizeof *n_ids);
    char **echo_text = calloc(n_prompts, sizeof *echo_text);
    struct job *j = calloc(1, sizeof *j);
    int rc = (!ids || !n_ids || !echo_text || !j) ? SA_ERR_NOMEM : 0;
    for (size_t p = 0; p < n_prompts && !rc; p++) {
        if (kind == REQUEST_CHAT) {
            struct chat_message *msgs = calloc(req.n_messages, sizeof *msgs);
            char *prompt = NULL;
            if (!msgs) {
                rc = SA_ERR_NOMEM;
                break;
            }
            for (size_t m = 0; m < req.n_messages; m++) msgs[m] = (struct chat_message){req.messages[m].role, req.messages[m].content};
            rc = chat_render(a->chat, msgs, req.n_messages, true, &prompt);
            free(msgs);
            if (!rc) rc = engine_tokenize(a->e, prompt, strlen(prompt), true, true, &ids[p], &n_ids[p]);
            free(prompt);
            if (rc) request_error(&err, "messages", "the messages cannot be rendered with the chat template");
        } else if (req.prompts) {
            rc = engine_tokenize(a->e, req.prompts[p], strlen(req.prompts[p]), true, true, &ids[p], &n_ids[p]);
            if (!rc && req.echo) echo_text[p] = strdup(req.prompts[p]);
        } else {
            n_ids[p] = req.prompt_id_lens[p];
            ids[p] = malloc(n_ids[p] * sizeof **ids);
            if (!ids[p]) rc = SA_ERR_NOMEM;
            else memcpy(ids[p], req.prompt_ids[p], n_ids[p] * sizeof **ids);
            if (!rc && req.echo) echo_text[p] = engine_detokenize(a->e, ids[p], n_ids[p]);
        }
        if (!rc && n_ids[p] == 0) {
            rc = SA_ERR_INVALID_ARG;
            request_error(&err, "prompt", "the prompt is empty and the model has no BOS token");
        }
        if (!rc && n_ids[p] >= engine_info(a->e)->n_ctx) {
            rc = SA_ERR_CONTEXT_FULL;
            response_error_from_code(rc, kind == REQUEST_CHAT ? "messages" : "prompt", NULL, &err);
            snprintf(err.message, sizeof err.message, "the prompt is %zu tokens; the context holds %u", n_ids[p],
                     engine_info(a->e)->n_ctx);
        }
    }
    /* the Shared Attention plan and the re-balancer for this request */
    const struct engine_model_info *info = engine_info(a->e);
    struct share_plan plan;
    bool share = req.share_query >= 0 ? req.share_query == 1
                                       : (req.share_spans ? strcmp(req.share_spans, "off") != 0 : a->cfg->share);
    char pmsg[256] = "";
    if (!rc) {
        rc = engine_parse_plan(a->e, req.share_spans ? req.share_spans : a->cfg->share_spans, &plan, pmsg, sizeof pmsg);
        if (rc) {
            response_error_from_code(SA_ERR_INVALID_ARG, "share_spans", pmsg, &err);
            rc = SA_ERR_INVALID_ARG;
        }
    }
    struct rebalance_params rb = info->rebalance_default;
    rb.on = req.rebalance_query >= 0 ? req.rebalance_query == 1 : a->cfg->rebalance;
    if (req.rebalance_alpha_set) rb.alpha = req.rebalance_alpha;
    if (req.rebalance_tau_set) rb.tau = req.rebalance_tau;
    if (rc) {
        if (rc == SA_ERR_NOMEM) response_error_from_code(rc, NULL, NULL, &err);
        else if (err.status == 0) response_error_from_code(rc, NULL, NULL, &err);
        send_error(a, r, ep, &err);
        goto out;
    }
    /* the job: n choices per prompt */
    j->api = a;
    j->http = r;
    j->born = now_s() - http_age_s(r);
    j->kind = kind;
    j->ep = ep;
    j->stream = req.stream;
    j->include_usage = req.include_usage;
    j->share = share;
    j->rebalance = rb.on;
    j->logprobs = req.logprobs;
    j->model = strdup(req.model ? req.model : info->name);
    j->created = (int64_t)time(NULL);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", kind == REQUEST_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)j->created, (unsigned long long)(++a->id_counter & 0xffffff));
    j->n_seqs = n_prompts * req.n;
    j->seqs = calloc(j->n_seqs, sizeof *j->seqs);
    if (!j->seqs || !j->model) {
        send_http_error(a, r, ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "out of memory");
        free(j->seqs);
        free(j->model);
        free(j);
        j = NULL;
        goto out;
    }
    j->refs = 1; /* the HTTP side */
    http_set_user(r, j);
    uint64_t seed = req.seed_set ? req.seed : pick_seed(a);
    for (size_t p = 0, k = 0; p < n_prompts; p++)
        for (uint32_t c = 0; c < req.n; c++, k++) {
            struct job_seq *s = &j->seqs[k];
            s->job = j;
            s->index = (uint32_t)k;
            s->prompt_index = p;
            s->prompt_tokens = (uint32_t)n_ids[p];
            if (echo_text[p]) append_text(s, echo_text[p], strlen(echo_text[p]));
        }
    /* the sampler copies the bias at submit: one array for every choice, freed below */
    struct sampler_bias *bias = req.n_logit_bias ? malloc(req.n_logit_bias * sizeof *bias) : NULL;
    for (size_t i = 0; bias && i < req.n_logit_bias; i++)
        bias[i] = (struct sampler_bias){req.logit_bias[i].id, req.logit_bias[i].bias};
    if (req.n_logit_bias && !bias) rc = SA_ERR_NOMEM;
    for (size_t k = 0; k < j->n_seqs && !rc; k++) {
        struct job_seq *s = &j->seqs[k];
        struct engine_request er = {.prompt = ids[s->prompt_index], .n_prompt = n_ids[s->prompt_index],
                                    .max_tokens = req.max_tokens, .share = share, .plan = plan, .rebalance = rb,
                                    .cb = on_engine_event, .user = s};
        er.sampling = sampler_default_params();
        er.sampling.temperature = req.temperature;
        er.sampling.top_k = req.top_k;
        er.sampling.top_p = req.top_p;
        er.sampling.min_p = req.min_p;
        er.sampling.presence_penalty = req.presence_penalty;
        er.sampling.frequency_penalty = req.frequency_penalty;
        er.sampling.repeat_penalty = req.repeat_penalty;
        er.sampling.repeat_last_n = 64;
        er.sampling.seed = seed + k;
        er.sampling.n_logprobs = req.logprobs > 0 ? req.logprobs : 0;
        for (size_t i = 0; i < req.n_stop && i < ENGINE_MAX_STOP; i++) er.stop[i] = req.stop[i];
        er.n_stop = req.n_stop < ENGINE_MAX_STOP ? req.n_stop : ENGINE_MAX_STOP;
        er.sampling.bias = bias;
        er.sampling.n_bias = (int32_t)req.n_logit_bias;
        er.sampling.ignore_eos = req.ignore_eos;
        er.sampling.min_tokens = (int32_t)req.min_tokens;
        memcpy(er.stop_ids, req.stop_token_ids, req.n_stop_token_ids * sizeof *er.stop_ids);
        er.n_stop_ids = req.n_stop_token_ids;
        rc = engine_submit(a->e, &er, &s->engine_id);
        if (rc) break;
        s->submitted = true;
        j->refs++;
        j->remaining++;
    }
    free(bias);
    if (j->remaining) { /* link even if a later submit failed: the events still come */
        j->next = a->jobs;
        if (a->jobs) a->jobs->prev = j;
        a->jobs = j;
        a->n_jobs++;
    }
    if (rc) {
        response_error_from_code(rc, rc == SA_ERR_CONTEXT_FULL ? "prompt" : NULL, NULL, &err);
        j->failed = true;
        j->err = err;
        job_cancel_all(j);
        if (j->remaining == 0) send_error(a, r, ep, &err); /* else answered when the cancelled ones end */
        goto out;
    }
    if (j->stream) {
        http_stream_begin(r, 200);
        j->stream_started = true;
    }
out:
    for (size_t p = 0; p < n_prompts; p++) {
        if (ids) free(ids[p]);
        if (echo_text) free(echo_text[p]);
    }
    free(ids);
    free(n_ids);
    free(echo_text);
    if (j && !j->seqs) free(j);
    request_free(&req);
}

/* ---- simple endpoints ---- */

static void handle_models(struct api *a, struct http_request *r)
{
    const struct engine_model_info *info = engine_info(a->e);
    struct response_model_info m = {.id = info->name, .created = 0, .layers = info->n_layer,
                                    .context_length = info->n_ctx, .n_params = info->n_params,
                                    .share_default = a->cfg->share, .share_spans = info->default_spans,
                                    .rebalance_default = a->cfg->rebalance};
    size_t len;
    char *json = response_models_json(&m, &len);
    send_json(a, r, METRICS_EP_MODELS, 200, json, len, NULL);
}

static void handle_health(struct api *a, struct http_request *r)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"status\": \"%s\"}", a->draining ? "draining" : "ok");
    http_respond(r, a->draining ? 503 : 200, "application/json", body, (size_t)n, NULL);
    metrics_request_done(a->metrics, METRICS_EP_HEALTH, a->draining ? 503 : 200, http_age_s(r));
}

static void handle_metrics(struct api *a, struct http_request *r)
{
    struct engine_metrics em;
    engine_get_metrics(a->e, &em);
    /* count this scrape before rendering, so the output includes it */
    metrics_request_done(a->metrics, METRICS_EP_METRICS, 200, http_age_s(r));
    size_t len;
    char *text = metrics_render(a->metrics, &em, engine_info(a->e)->name, &len);
    http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0, NULL);
    free(text);
}

struct route {
    const char *path, *method;
    enum metrics_endpoint ep;
};

static const struct route routes[] = {
    {"/v1/completions", "POST", METRICS_EP_COMPLETIONS}, {"/v1/chat/completions", "POST", METRICS_EP_CHAT},
    {"/v1/models", "GET", METRICS_EP_MODELS},           {"/health", "GET", METRICS_EP_HEALTH},
    {"/metrics", "GET", METRICS_EP_METRICS},
};

static void on_request(void *app, struct http_request *r)
{
    struct api *a = app;
    const char *path = http_path(r), *method = http_method(r);
    const struct route *rt = NULL;
    if (strncmp(path, "/v2/", 4) == 0) {
        handle_v2(a, r, path, method);
        return;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(path, routes[i].path) == 0) rt = &routes[i];
    if (!rt) {
        send_http_error(a, r, METRICS_EP_OTHER, RESPONSE_HTTP_NOT_FOUND, NULL, "no such endpoint");
        return;
    }
    if (strcmp(method, rt->method) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0)) {
        struct api_error err;
        response_error_http(RESPONSE_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, &err);
        size_t len;
        char *json = response_error_json(&err, &len);
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s", rt->method);
        const char *const headers[] = {allow, NULL};
        send_json(a, r, rt->ep, 405, json, len, headers);
        return;
    }
    if (rt->ep != METRICS_EP_HEALTH && !authorized(a, r)) {
        struct api_error err;
        response_error_http(RESPONSE_HTTP_UNAUTHORIZED, NULL, NULL, &err);
        size_t len;
        char *json = response_error_json(&err, &len);
        static const char *const headers[] = {"WWW-Authenticate: Bearer", NULL};
        send_json(a, r, rt->ep, 401, json, len, headers);
        return;
    }
    switch (rt->ep) {
    case METRICS_EP_COMPLETIONS: handle_generate(a, r, REQUEST_COMPLETION); break;
    case METRICS_EP_CHAT: handle_generate(a, r, REQUEST_CHAT); break;
    case METRICS_EP_MODELS: handle_models(a, r); break;
    case METRICS_EP_HEALTH: handle_health(a, r); break;
    default: handle_metrics(a, r); break;
    }
}

static void on_early_reply(void *app, const char *path, int status)
{
    struct api *a = app;
    enum metrics_endpoint ep = METRICS_EP_OTHER;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(path, routes[i].path) == 0) ep = routes[i].ep;
    if (strncmp(path, "/v2/", 4) == 0) { /* e.g. a 413 for an infer body over max_body */
        const size_t n = strlen(path);
        if (strncmp(path, "/v2/health/", 11) == 0) ep = METRICS_EP_V2_HEALTH;
        else if (n > 6 && strcmp(path + n - 6, "/infer") == 0) ep = METRICS_EP_V2_INFER;
        else if (strncmp(path, "/v2/models/", 11) == 0) ep = METRICS_EP_V2_MODELS;
        if (ep == METRICS_EP_V2_INFER && engine_vision_info(a->e)) metrics_vision_request(a->metrics, -1, status, 0, 0);
    }
    metrics_request_done(a->metrics, ep, status, 0);
}

static void on_closed(void *app, struct http_request *r, bool client_gone)
{
    if (vision_on_closed(app, r, client_gone)) return;
    struct job *j = http_user(r);
    if (!j) return;
    j->http = NULL;
    if (client_gone && j->remaining) {
        j->client_gone = true;
        job_cancel_all(j);
    }
    job_unref(j);
}

struct http_handlers api_http_handlers(void)
{
    return (struct http_handlers){.on_request = on_request, .on_closed = on_closed, .on_early_reply = on_early_reply};
}

struct api *api_create(uv_loop_t *loop, struct engine *e, const struct config *cfg)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->loop = loop;
    a->e = e;
    a->cfg = cfg;
    a->metrics = metrics_create();
    const struct engine_model_info *info = engine_info(e);
    a->limits = (struct request_limits){.max_prompt_bytes = cfg->max_prompt_bytes, .max_tokens_limit = cfg->max_tokens_limit,
                                        .max_n = cfg->max_n, .max_logprobs = cfg->max_logprobs,
                                        .n_vocab = info->n_vocab, .n_ctx = info->n_ctx, .max_stop = cfg->max_stop};
    if (chat_format_pick(cfg->chat_template[0] ? cfg->chat_template : NULL, info->chat_template, &a->chat) != 0)
        a->chat = CHAT_FORMAT_LLAMA2;
    const char *fail = getenv("SA_FAULT_EVENT_ALLOC");
    if (fail && *fail) {
        a->fail_every = strtoull(fail, NULL, 10);
        SA_LOGW("test hook: every %llu-th event allocation fails", (unsigned long long)a->fail_every);
    }
    pthread_mutex_init(&a->mu, NULL);
    if (!a->metrics || uv_async_init(loop, &a->async, on_async) != 0) {
        metrics_destroy(a->metrics);
        free(a);
        return NULL;
    }
    a->async.data = a;
    a->vision_default_mode = -1;
    const struct phidnn_info *vi = engine_vision_info(e);
    if (vi) { /* the default recreation: inpaint, else the first mode the file has */
        for (int m = PHIDNN_MODE_COUNT - 1; m >= 0 && a->vision_default_mode < 0; m--)
            if (vi->has_mode[m] && m != PHIDNN_MODE_OFF) a->vision_default_mode = m;
        if (a->vision_default_mode < 0) a->vision_default_mode = PHIDNN_MODE_OFF;
        metrics_vision_model(a->metrics, vi->name);
    }
    return a;
}

void api_attach(struct api *a, struct http_server *http) { a->http = http; }
void api_set_draining(struct api *a, bool draining) { a->draining = draining; }
unsigned api_jobs_in_flight(const struct api *a) { return a->n_jobs + a->n_vjobs; }

void api_cancel_all(struct api *a)
{
    for (struct job *j = a->jobs; j; j = j->next) job_cancel_all(j);
}

static void on_async_closed(uv_handle_t *h)
{
    struct api *a = h->data;
    on_async(&a->async); /* events that arrived last */
    char counts[2048];
    metrics_summary(a->metrics, counts, sizeof counts);
    SA_LOGI("final counts: %s", counts);
    metrics_destroy(a->metrics);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

void api_destroy(struct api *a)
{
    if (!a) return;
    uv_close((uv_handle_t *)&a->async, on_async_closed);
}

/* ---- Open Inference Protocol (KServe v2) for the phiDNN model (infer.h) ----
 *
 * A vjob is one POST /v2/models/{name}/infer. Its result buffers are allocated
 * at submit on the loop thread, so the engine callback (step thread) only
 * copies into them and queues the job on a->vq_* under a->mu, then wakes the
 * loop. Refs: the HTTP side and the engine each hold one; whoever drops the
 * last frees it. A client that leaves only clears vj->http (vision jobs are a
 * few milliseconds; they are not cancelled).
 */
struct vjob {
    struct api *api;
    struct http_request *http; /* NULL once the HTTP side closed */
    int refs;
    struct infer_request req;
    int mode;
    uint64_t seed;
    double born;
    struct engine_vision_result res; /* copied on the step thread */
    float *probs, *recreated;
    struct vjob *prev, *next; /* a->vjobs */
    struct vjob *q_next;      /* a->vq_* */
};

static void vjob_unref(struct vjob *v)
{
    if (--v->refs > 0) return;
    infer_request_free(&v->req);
    free(v->probs);
    free(v->recreated);
    free(v);
}

static void vjob_unlink(struct vjob *v)
{
    struct api *a = v->api;
    if (v->prev)
        v->prev->next = v->next;
    else if (a->vjobs == v)
        a->vjobs = v->next;
    if (v->next) v->next->prev = v->prev;
    v->prev = v->next = NULL;
    a->n_vjobs--;
}

static bool vision_on_closed(struct api *a, struct http_request *r, bool client_gone)
{
    (void)client_gone;
    void *u = http_user(r);
    for (struct vjob *v = a->vjobs; v && u; v = v->next)
        if ((void *)v == u) {
            v->http = NULL;
            vjob_unref(v);
            return true;
        }
    return false;
}

static void on_vision_done(void *user, const struct engine_vision_result *res)
{
    struct vjob *v = user;
    struct api *a = v->api;
    v->res = *res;
    if (!res->error) {
        memcpy(v->probs, res->probs, sizeof(float) * res->n_images * res->n_classes);
        if (v->recreated && res->recreated) {
            const struct phidnn_info *in = engine_vision_info(a->e);
            memcpy(v->recreated, res->recreated, sizeof(float) * res->n_images * in->channels * in->height * in->width);
        }
    }
    v->res.probs = v->probs;
    v->res.recreated = res->error ? NULL : v->recreated;
    v->res.corrupted = NULL;
    pthread_mutex_lock(&a->mu);
    v->q_next = NULL;
    if (a->vq_tail)
        a->vq_tail->q_next = v;
    else
        a->vq_head = v;
    a->vq_tail = v;
    pthread_mutex_unlock(&a->mu);
    uv_async_send(&a->async);
}

static void vision_metrics(struct api *a, int mode, int status, double seconds, uint32_t images)
{
    metrics_vision_request(a->metrics, mode, status, seconds, images);
}

static void vision_send_error(struct api *a, struct http_request *r, int mode, const struct api_error *err)
{
    vision_metrics(a, mode, http_client_gone(r) ? STATUS_CLIENT_CLOSED : err->status, http_age_s(r), 0);
    send_error(a, r, METRICS_EP_V2_INFER, err);
}

static void on_vision_async(struct api *a)
{
    pthread_mutex_lock(&a->mu);
    struct vjob *v = a->vq_head;
    a->vq_head = a->vq_tail = NULL;
    pthread_mutex_unlock(&a->mu);
    while (v) {
        struct vjob *next = v->q_next;
        vjob_unlink(v);
        const double secs = now_s() - v->born;
        struct http_request *r = v->http;
        if (!r) {
            vision_metrics(a, v->mode, STATUS_CLIENT_CLOSED, secs, v->res.error ? 0 : v->res.n_images);
            metrics_request_done(a->metrics, METRICS_EP_V2_INFER, STATUS_CLIENT_CLOSED, secs);
        } else {
            /* the answer goes out now: detach first, so on_closed never sees this job */
            http_set_user(r, NULL);
            v->http = NULL;
            char *json = NULL;
            size_t len = 0;
            if (!v->res.error)
                json = infer_response_json(engine_vision_info(a->e), &v->req, v->mode, v->seed, &v->res, &len);
            if (!json) {
                struct api_error err;
                response_error_from_code(v->res.error ? v->res.error : SA_ERR_NOMEM, NULL, NULL, &err);
                vision_send_error(a, r, v->mode, &err);
            } else {
                vision_metrics(a, v->mode, http_client_gone(r) ? STATUS_CLIENT_CLOSED : 200, secs, v->res.n_images);
                send_json(a, r, METRICS_EP_V2_INFER, 200, json, len, NULL);
            }
            v->refs--; /* the HTTP side's reference; the engine's (dropped below) keeps v alive */
        }
        vjob_unref(v); /* the engine's reference */
        v = next;
    }
}

static int vision_query_cb(void *ctx, const char *key, const char *value)
{
    void **p = ctx;
    return infer_query_arg(p[0], key, value, p[1]);
}

static void handle_infer(struct api *a, struct http_request *r)
{
    const struct phidnn_info *in = engine_vision_info(a->e);
    struct api_error err = {0};
    if (a->draining) {
        response_error_http(RESPONSE_HTTP_UNAVAILABLE, NULL, "the server is shutting down", &err);
        vision_send_error(a, r, -1, &err);
        return;
    }
    struct vjob *v = calloc(1, sizeof *v);
    if (!v) {
        response_error_from_code(SA_ERR_NOMEM, NULL, NULL, &err);
        vision_send_error(a, r, -1, &err);
        return;
    }
    infer_request_init(&v->req);
    void *qctx[2] = {&v->req, &err};
    size_t blen;
    const char *body = http_body(r, &blen);
    if (http_query_each(r, vision_query_cb, qctx) != 0 ||
        infer_parse(body, blen, in, a->cfg->vision_max_batch, &v->req, &err) != 0) {
        vision_send_error(a, r, v->req.mode, &err);
        vjob_unref((v->refs = 1, v));
        return;
    }
    v->mode = v->req.mode >= 0 ? v->req.mode : a->vision_default_mode;
    if (!in->has_mode[v->mode]) {
        request_error(&err, v->req.mode_from_query ? "recreate" : "parameters.recreate",
                      "this model has no such recreation mode (GET /v2/models/{name} lists them)");
        vision_send_error(a, r, v->mode, &err);
        vjob_unref((v->refs = 1, v));
        return;
    }
    v->seed = v->req.seed_set ? v->req.seed : pick_seed(a) & ((UINT64_C(1) << 53) - 1);
    const size_t n = v->req.n_images, chw = (size_t)in->channels * in->height * in->width;
    v->probs = malloc(sizeof(float) * n * in->n_classes);
    if (v->req.want[3]) v->recreated = malloc(sizeof(float) * n * chw);
    v->api = a;
    v->refs = 1;
    if (!v->probs || (v->req.want[3] && !v->recreated)) {
        response_error_from_code(SA_ERR_NOMEM, NULL, NULL, &err);
        vision_send_error(a, r, v->mode, &err);
        vjob_unref(v);
        return;
    }
    v->http = r;
    v->born = now_s() - http_age_s(r);
    struct engine_vision_request er = {.mode = (enum phidnn_mode)v->mode, .seed = v->seed, .samples = v->req.samples,
                                       .n_images = v->req.n_images, .images = v->req.images,
                                       .want_recreation = v->req.want[3],
                                       .random_partition = v->req.random_partition && v->mode == PHIDNN_MODE_INPAINT,
                                       .cb = on_vision_done, .user = v};
    /* link and take the engine's reference first: the callback may run before submit returns */
    v->next = a->vjobs;
    if (a->vjobs) a->vjobs->prev = v;
    a->vjobs = v;
    a->n_vjobs++;
    v->refs = 2;
    http_set_user(r, v);
    uint64_t id;
    int rc = engine_vision_submit(a->e, &er, &id);
    if (rc) {
        vjob_unlink(v);
        v->refs = 1; /* the engine never calls back */
        http_set_user(r, NULL);
        v->http = NULL;
        response_error_from_code(rc, rc == SA_ERR_RANGE ? "inputs[0].data" : NULL, NULL, &err);
        vision_send_error(a, r, v->mode, &err);
        vjob_unref(v);
    }
}

/* GET /v2/health/ready|live, GET /v2/models/{name}[/ready], POST /v2/models/{name}/infer */
static void handle_v2(struct api *a, struct http_request *r, const char *path, const char *method)
{
    const struct phidnn_info *in = engine_vision_info(a->e);
    const bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    enum metrics_endpoint ep = METRICS_EP_V2_MODELS;
    const char *allow = "GET";
    int what = -1; /* 0 health ready, 1 health live, 2 metadata, 3 model ready, 4 infer */
    if (strcmp(path, "/v2/health/ready") == 0 || strcmp(path, "/v2/health/live") == 0) {
        ep = METRICS_EP_V2_HEALTH;
        what = path[11] == 'r' ? 0 : 1;
    } else if (strncmp(path, "/v2/models/", 11) == 0 && in) {
        const char *name = path + 11, *slash = strchr(name, '/');
        const size_t nlen = slash ? (size_t)(slash - name) : strlen(name);
        const char *rest = slash ? slash : "";
        if (nlen == strlen(in->name) && memcmp(name, in->name, nlen) == 0) {
            if (!*rest) what = 2;
            else if (strcmp(rest, "/ready") == 0) what = 3;
            else if (strcmp(rest, "/infer") == 0) {
                what = 4;
                ep = METRICS_EP_V2_INFER;
                allow = "POST";
            }
        } else if (!strcmp(rest, "") || !strcmp(rest, "/ready") || !strcmp(rest, "/infer")) {
            ep = strcmp(rest, "/infer") == 0 ? METRICS_EP_V2_INFER : METRICS_EP_V2_MODELS;
            struct api_error err;
            response_error_from_code(SA_ERR_NOT_FOUND, "model", "no such model (GET /v2/models/{name}: the vision model's name)", &err);
            if (!authorized(a, r)) response_error_http(RESPONSE_HTTP_UNAUTHORIZED, NULL, NULL, &err);
            send_error(a, r, ep, &err);
            return;
        }
    }
    if (what < 0) {
        send_http_error(a, r, METRICS_EP_OTHER, RESPONSE_HTTP_NOT_FOUND, NULL, "no such endpoint");
        return;
    }
    if ((what == 4 && !post) || (what != 4 && !get)) {
        struct api_error err;
        response_error_http(RESPONSE_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, &err);
        size_t len;
        char *json = response_error_json(&err, &len);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Allow: %s", allow);
        const char *const headers[] = {hdr, NULL};
        send_json(a, r, ep, 405, json, len, headers);
        return;
    }
    if (ep != METRICS_EP_V2_HEALTH && !authorized(a, r)) {
        struct api_error err;
        response_error_http(RESPONSE_HTTP_UNAUTHORIZED, NULL, NULL, &err);
        size_t len;
        char *json = response_error_json(&err, &len);
        static const char *const headers[] = {"WWW-Authenticate: Bearer", NULL};
        send_json(a, r, ep, 401, json, len, headers);
        return;
    }
    if (what == 0 || what == 1 || what == 3) {
        const bool ok = what == 1 || !a->draining;
        char body[320];
        int n = what == 3 ? snprintf(body, sizeof body, "{\"name\":\"%s\",\"ready\":%s}", in->name, ok ? "true" : "false")
                          : snprintf(body, sizeof body, "{\"%s\":%s}", what == 1 ? "live" : "ready", ok ? "true" : "false");
        http_respond(r, ok ? 200 : 503, "application/json", body, (size_t)n, NULL);
        metrics_request_done(a->metrics, ep, ok ? 200 : 503, http_age_s(r));
        return;
    }
    if (what == 2) {
        size_t len;
        char *json = infer_metadata_json(in, a->cfg->vision_max_batch, a->vision_default_mode, &len);
        if (!json) {
            send_http_error(a, r, ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "out of memory");
            return;
        }
        send_json(a, r, ep, 200, json, len, NULL);
        return;
    }
    handle_infer(a, r);
}
