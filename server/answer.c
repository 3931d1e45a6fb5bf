/*
 * answer.c - what the client of a generation job receives (api_int.h): the
 * text and logprobs of each sequence as its tokens come, the SSE chunks of a
 * stream, the whole answer (or the stream's end) once every sequence is over,
 * and the job's one log line. JSON comes from response.h.
 */
#include "api_int.h"

#include "engine/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api__append_text(struct job_seq *s, const char *p, size_t n)
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

/* A token's own bytes (engine_token_piece: a byte-fallback token is its one
 * byte, a control token its name), so chat's `bytes` can rebuild a character
 * split over tokens and two tokens never look alike there; the JSON strings
 * replace what is not UTF-8 (response.c). */
static char *token_text(struct api *a, int32_t id)
{
    char *t = engine_token_piece(a->e, id);
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
    lp->no_logprob = ev->type == ENGINE_EV_PROMPT && ev->pos == 0;
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
    if (s->tools.n_calls && s->calls) {
        c->text_len = s->tools.content_len;
        c->n_tool_calls = s->tools.n_calls;
        c->tool_calls = s->calls;
    }
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

/* One SSE event of the job's stream. An event that cannot be built or kept
 * cuts the stream (never a silent gap): the sequences are cancelled and the
 * request ends counted as 499, as a client that left. */
static void stream_raw(struct job *j, const char *ev, size_t n)
{
    if (!j->http || j->stream_cut) return;
    int rc = ev ? http_stream_write(j->http, ev, n) : SA_ERR_NOMEM;
    if (rc) {
        if (!ev) http_stream_abort(j->http);
        j->stream_cut = true;
        SA_LOGW("%s: stream cut: %s", j->id, sa_err_str(rc));
        api__job_cancel_all(j);
    }
}

static void stream_json(struct job *j, char *json, size_t len)
{
    size_t n = 0;
    char *ev = json ? response_sse_event(json, len, &n) : NULL;
    stream_raw(j, ev, n);
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
    /* the details go on the request's own log line (http.c); a client that left has had its line already */
    if (j->http)
        http_log_note(j->http, "%s prompt=%llu generated=%llu share=%s rebalance=%s kv_bytes=%llu kv_saved=%llu", j->id,
                      (unsigned long long)prompt, (unsigned long long)gen, j->share ? "on" : "off",
                      j->rebalance ? "on" : "off", (unsigned long long)kv, (unsigned long long)saved);
    else
        SA_LOGI("%s %s %d prompt=%llu generated=%llu %.1fms share=%s rebalance=%s kv_bytes=%llu kv_saved=%llu client_gone",
                j->id, j->kind == REQUEST_CHAT ? "/v1/chat/completions" : j->kind == REQUEST_EMBEDDING ? "/v1/embeddings" : "/v1/completions", status,
                (unsigned long long)prompt, (unsigned long long)gen, seconds * 1e3, j->share ? "on" : "off",
                j->rebalance ? "on" : "off", (unsigned long long)kv, (unsigned long long)saved);
}

void api__answer_token(struct job_seq *s, const struct engine_event *ev, const char *text)
{
    struct job *j = s->job;
    struct api *a = j->api;
    if (!j->first_token_seen && j->http) {
        j->first_token_seen = true;
        metrics_first_token(a->metrics, http_age_s(j->http));
    }
    uint32_t offset = (uint32_t)s->len;
    api__append_text(s, text ? text : "", ev->text_len);
    struct response_token_logprob *lp = NULL;
    if (j->logprobs >= 0 && ev->token >= 0) lp = add_logprob(s, ev, offset);
    if (!j->stream || !j->http || j->failed) return;
    const char *out = text ? text : "";
    size_t n_out = ev->text_len;
    if (j->n_tools) { /* function calling: only the text that cannot be (part of) a call goes out now */
        size_t safe = s->call_started ? s->sent
                                      : tools_stream_content(a->chat, s->text ? s->text : "", s->len, s->sent,
                                                             &s->call_started);
        if (safe < s->sent) safe = s->sent;
        out = s->text ? s->text + s->sent : "";
        n_out = safe - s->sent;
        s->sent = safe;
    }
    if (n_out || lp) {
        struct response_chunk ch = {.id = j->id, .created = j->created, .model = j->model, .index = s->index,
                                    .text = out, .text_len = n_out,
                                    .role = j->kind == REQUEST_CHAT && !s->role_sent,
                                    .has_logprobs = j->logprobs >= 0, .n_logprobs = lp ? 1 : 0, .logprobs = lp};
        s->role_sent = true;
        stream_chunk(j, &ch);
    }
}

void api__answer_echo(struct job_seq *s)
{
    struct job *j = s->job;
    if (!j->stream || !j->http || j->failed || (!s->echo_len && !s->n_lps)) return; /* nothing to send */
    struct response_chunk ch = {.id = j->id, .created = j->created, .model = j->model, .index = s->index,
                                .text = s->text, .text_len = s->echo_len, .has_logprobs = j->logprobs >= 0,
                                .n_logprobs = s->n_lps, .logprobs = s->lps};
    stream_chunk(j, &ch);
}

/* The prompt's token texts concatenate to the prompt as it decodes, which can
 * start with the space SPM adds before the first word where the echoed text
 * (the prompt as sent) does not: offsets count from the echoed text, so that
 * leading difference counts for nothing, and none passes the echo's end. */
void api__answer_prompt_token(struct job_seq *s, const struct engine_event *ev)
{
    struct response_token_logprob *lp = add_logprob(s, ev, s->prompt_cum);
    s->prompt_cum += (uint32_t)ev->text_len;
    if (!lp || ev->pos + 1 < s->prompt_tokens) return;
    /* the last prompt token: offsets final, then a stream's first chunk */
    uint32_t lead = s->prompt_cum > s->echo_len ? s->prompt_cum - (uint32_t)s->echo_len : 0;
    for (size_t i = 0; i < s->n_lps; i++) {
        uint32_t o = s->lps[i].text_offset > lead ? s->lps[i].text_offset - lead : 0;
        s->lps[i].text_offset = o < s->echo_len ? o : (uint32_t)s->echo_len;
    }
    api__answer_echo(s);
}

int api__answer_tools(struct job_seq *s)
{
    struct job *j = s->job;
    if (!j->n_tools) return 0;
    int rc = tools_parse_output(j->api->chat, s->text ? s->text : "", s->len, j->tool_names, j->n_tools, &s->tools);
    if (rc || !s->tools.n_calls) return rc;
    s->calls = calloc(s->tools.n_calls, sizeof *s->calls);
    s->call_ids = calloc(s->tools.n_calls, sizeof *s->call_ids);
    if (!s->calls || !s->call_ids) return SA_ERR_NOMEM;
    for (size_t k = 0; k < s->tools.n_calls; k++) {
        /* "call_" + 24 hex digits: the job's id, the choice and the call, hashed (FNV-1a), so ids
         * differ across requests, choices and calls */
        uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull * 31u;
        for (const char *p = j->id; *p; p++) h1 = (h1 ^ (unsigned char)*p) * 1099511628211ull;
        h1 = (h1 ^ s->index) * 1099511628211ull;
        h1 = (h1 ^ k) * 1099511628211ull;
        h2 = (h2 ^ h1 ^ (uint64_t)j->created) * 1099511628211ull;
        snprintf(s->call_ids[k], sizeof s->call_ids[k], "call_%016llx%08llx", (unsigned long long)h1,
                 (unsigned long long)(h2 & 0xffffffffu));
        s->calls[k] = (struct response_tool_call){s->call_ids[k], s->tools.calls[k].name, s->tools.calls[k].arguments};
    }
    if (s->finish && strcmp(s->finish, "stop") == 0) s->finish = "tool_calls";
    return 0;
}

void api__answer_seq_done(struct job_seq *s)
{
    struct job *j = s->job;
    struct response_choice done;
    fill_choice(s, &done);
    struct response_choice *all = NULL;
    struct response_completion summary;
    struct response_chunk ch = {.id = j->id, .created = j->created, .model = j->model, .index = s->index,
                                .text = "", .role = j->kind == REQUEST_CHAT && !s->role_sent,
                                .has_logprobs = j->logprobs >= 0, .finish_reason = s->finish, .done = &done};
    s->role_sent = true;
    if (j->n_tools && s->calls) { /* the calls, each complete, in the finishing chunk */
        ch.n_tool_calls = s->tools.n_calls;
        ch.tool_calls = s->calls;
    } else if (j->n_tools && s->sent < s->len) { /* held text that turned out not to be a call */
        ch.text = s->text + s->sent;
        ch.text_len = s->len - s->sent;
        s->sent = s->len;
    }
    if (j->remaining == 0 && !j->include_usage && (all = calloc(j->n_seqs, sizeof *all))) {
        fill_completion(j, all, &summary);
        ch.summary = &summary;
    }
    stream_chunk(j, &ch);
    free(all);
}

void api__answer_job(struct job *j)
{
    struct api *a = j->api;
    uint64_t prompt = 0, gen = 0;
    for (size_t i = 0; i < j->n_seqs; i++) {
        prompt += j->seqs[i].prompt_tokens;
        gen += j->seqs[i].completion_tokens;
    }
    metrics_tokens(a->metrics, prompt, gen);
    uint64_t saved = 0;
    for (size_t i = 0; i < j->n_seqs; i++) saved += j->seqs[i].cache.kv_bytes_saved;
    metrics_kv_saved(a->metrics, saved);
    if (j->kind != REQUEST_EMBEDDING) metrics_sharing(a->metrics, j->share, j->rebalance); /* generations by mode */
    bool cancelled = false;
    for (size_t i = 0; i < j->n_seqs; i++) cancelled |= j->seqs[i].cancelled;
    if (cancelled && !j->failed) {
        response_error_from_code(SA_ERR_CANCELLED, NULL, "the server is shutting down; the request was cancelled", &j->err);
        j->failed = true;
    }
    if (!j->http) { /* the client went away: counted once, as 499 */
        log_job(j, STATUS_CLIENT_CLOSED, api__now_s() - j->born, prompt, gen);
        metrics_request_done(a->metrics, j->ep, STATUS_CLIENT_CLOSED, api__now_s() - j->born);
        return;
    }
    /* a stream that began has sent 200; a failure then is an error event, not a status */
    int status = j->failed && !j->stream_started ? j->err.status : 200;
    if (http_client_gone(j->http)) status = STATUS_CLIENT_CLOSED;
    log_job(j, status, http_age_s(j->http), prompt, gen);
    if (j->stream && j->stream_started) {
        if (j->failed) {
            size_t n = 0;
            char *ev = response_sse_error(&j->err, &n);
            stream_raw(j, ev, n);
            free(ev);
        } else if (j->include_usage) {
            struct response_choice *ch = calloc(j->n_seqs, sizeof *ch);
            struct response_completion c;
            char *json = NULL;
            size_t len = 0;
            if (ch) {
                fill_completion(j, ch, &c);
                json = j->kind == REQUEST_CHAT ? response_chat_usage_chunk_json(&c, &len)
                                               : response_completion_usage_chunk_json(&c, &len);
            }
            stream_json(j, json, len); /* NULL: cut, the usage chunk cannot be missing silently */
            free(ch);
        }
        const char *done = response_sse_done();
        stream_raw(j, done, strlen(done));
        http_stream_end(j->http);
        if (j->stream_cut) status = STATUS_CLIENT_CLOSED;
        metrics_request_done(a->metrics, j->ep, status, http_age_s(j->http));
        return;
    }
    if (j->failed) {
        api__send_error(a, j->http, j->ep, &j->err);
        return;
    }
    if (j->kind == REQUEST_EMBEDDING) {
        const float **vecs = calloc(j->n_seqs, sizeof *vecs);
        uint64_t tokens = 0;
        for (size_t i = 0; vecs && i < j->n_seqs; i++) {
            vecs[i] = j->seqs[i].embd;
            tokens += j->seqs[i].prompt_tokens;
        }
        size_t len = 0;
        char *json = vecs ? response_embeddings_json(j->model, vecs, j->n_seqs, j->seqs[0].n_embd, j->base64, tokens,
                                                     &len)
                          : NULL;
        free(vecs);
        api__send_json(a, j->http, j->ep, 200, json, len, NULL); /* NULL: 503 out_of_memory */
        return;
    }
    struct response_choice *ch = calloc(j->n_seqs, sizeof *ch);
    struct response_completion c;
    if (!ch) {
        api__send_http_error(a, j->http, j->ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "out of memory");
        return;
    }
    fill_completion(j, ch, &c);
    size_t len;
    char *json = j->kind == REQUEST_CHAT ? response_chat_json(&c, &len) : response_completion_json(&c, &len);
    free(ch);
    api__send_json(a, j->http, j->ep, 200, json, len, NULL);
}
