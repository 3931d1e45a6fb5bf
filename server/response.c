/*
 * response.c - JSON bodies, SSE framing and the one error table.
 * Contract: response.h.
 *
 * Building pattern: objects are assembled with jansson's stealing setters
 * (json_object_set_new / json_array_append_new consume the value even when
 * they fail, and refuse a NULL value), so a failed allocation anywhere only
 * sets a flag; the finished tree is dumped or, if the flag is set, dropped
 * and NULL returned.
 */
#include "engine/utf8.h"
#include "response.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESP_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))
#define RESP_MIN_LOGPROB (-9999.0)

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if the bytes
 * there do not start one (overlong forms, surrogates and > U+10FFFF are
 * invalid, as jansson decides). */

/* malloc'd copy of s[0..n) with each invalid byte replaced by U+FFFD. */
static char *resp_utf8_sanitize(const char *s, size_t n, size_t *out_len)
{
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t l = utf8_seq_len(u + i, n - i);
        if (l) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
            i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* A JSON string that never fails on bad UTF-8 (NULL only on OOM). */
static json_t *resp_str(const char *s, size_t n)
{
    if (!s) return json_string("");
    json_t *j = json_stringn(s, n);
    if (j) return j;
    size_t sl;
    char *clean = resp_utf8_sanitize(s, n, &sl);
    if (!clean) return NULL;
    j = json_stringn(clean, sl);
    free(clean);
    return j;
}

static json_t *resp_cstr(const char *s)
{
    return resp_str(s, s ? strlen(s) : 0);
}

/* Finite reals only: -inf -> RESP_MIN_LOGPROB, +inf/NaN -> null. */
static json_t *resp_real(double x)
{
    if (isfinite(x)) return json_real(x);
    if (isinf(x) && x < 0) return json_real(RESP_MIN_LOGPROB);
    return json_null();
}

static json_t *resp_uint(uint64_t x)
{
    return json_integer(x > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)x);
}

/* Stealing setters: v is consumed whatever happens (jansson decrefs it on
 * failure, including a NULL obj), so a failure only sets *bad. */
static void resp_put(json_t *obj, const char *key, json_t *v, bool *bad)
{
    if (json_object_set_new(obj, key, v) != 0) *bad = true;
}

static bool resp_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(u + i, n - i);
        if (!l) return false;
        i += l;
    }
    return true;
}

/* Key made of arbitrary bytes (token texts in legacy top_logprobs): invalid
 * UTF-8 is replaced first, because jansson refuses such keys. A key already in
 * obj keeps its value: two tokens of the same text collide in the legacy map,
 * and the first (the more likely, entries come most likely first) is kept. */
static void resp_put_key(json_t *obj, const char *key, size_t key_len, json_t *v, bool *bad)
{
    if (!key) key = "", key_len = 0;
    if (resp_utf8_valid(key, key_len)) {
        if (json_object_getn(obj, key, key_len)) json_decref(v); /* a key already there stays */
        else if (json_object_setn_new(obj, key, key_len, v) != 0) *bad = true;
        return;
    }
    size_t sl;
    char *clean = resp_utf8_sanitize(key, key_len, &sl);
    if (!clean) {
        json_decref(v);
        *bad = true;
        return;
    }
    if (json_object_getn(obj, clean, sl)) json_decref(v);
    else if (json_object_setn_new(obj, clean, sl, v) != 0) *bad = true;
    free(clean);
}

static void resp_append(json_t *arr, json_t *v, bool *bad)
{
    if (json_array_append_new(arr, v) != 0) *bad = true;
}

static char *resp_finish(json_t *root, bool bad, size_t *len)
{
    char *s = NULL;
    if (root && !bad) s = json_dumps(root, RESP_DUMP_FLAGS);
    json_decref(root);
    if (len) *len = s ? strlen(s) : 0;
    return s;
}

/* ---- the one error table ---- */

struct resp_error_row {
    int sa_err;        /* SA_ERR_* (0 with http_kind set for HTTP-level rows) */
    int http_kind;     /* enum response_http_error, 0 for engine rows */
    int status;
    const char *type;
    const char *code;
    const char *message; /* default text for HTTP-level rows */
};

#define RESP_REQ "invalid_request_error"
#define RESP_SRV "server_error"

static const struct resp_error_row response_error_table[] = {
    {SA_ERR_INVALID_ARG, 0, 400, RESP_REQ, "invalid_value", NULL},
    {SA_ERR_RANGE, 0, 400, RESP_REQ, "invalid_value", NULL},
    {SA_ERR_TYPE, 0, 400, RESP_REQ, "invalid_type", NULL},
    {SA_ERR_TOKENIZER, 0, 400, RESP_REQ, "invalid_prompt", NULL},
    {SA_ERR_CONTEXT_FULL, 0, 400, RESP_REQ, "context_length_exceeded", NULL},
    {SA_ERR_NOT_FOUND, 0, 404, RESP_REQ, "not_found", NULL},
    {SA_ERR_TOO_LARGE, 0, 413, RESP_REQ, "request_too_large", NULL},
    {SA_ERR_BUSY, 0, 503, RESP_SRV, "server_busy", NULL},
    {SA_ERR_CANCELLED, 0, 503, RESP_SRV, "cancelled", NULL},
    {SA_ERR_NOMEM, 0, 503, RESP_SRV, "out_of_memory", NULL},
    {SA_ERR_IO, 0, 500, RESP_SRV, "internal_error", NULL},
    {SA_ERR_BAD_MODEL, 0, 500, RESP_SRV, "internal_error", NULL},
    {SA_ERR_UNSUPPORTED, 0, 500, RESP_SRV, "internal_error", NULL},
    {SA_ERR_INTERNAL, 0, 500, RESP_SRV, "internal_error", NULL},
    {SA_ERR_NUMERIC, 0, 500, RESP_SRV, "numeric_error", NULL},
    {0, RESPONSE_HTTP_BAD_REQUEST, 400, RESP_REQ, "invalid_request", "invalid request"},
    {0, RESPONSE_HTTP_UNAUTHORIZED, 401, "authentication_error", "invalid_api_key",
     "missing or invalid API key"},
    {0, RESPONSE_HTTP_NOT_FOUND, 404, RESP_REQ, "unknown_url", "unknown URL"},
    {0, RESPONSE_HTTP_METHOD_NOT_ALLOWED, 405, RESP_REQ, "method_not_allowed",
     "method not allowed for this URL"},
    {0, RESPONSE_HTTP_TIMEOUT, 408, RESP_REQ, "request_timeout", "the request was not received in time"},
    {0, RESPONSE_HTTP_BODY_TOO_LARGE, 413, RESP_REQ, "request_too_large", "the request body is too large"},
    {0, RESPONSE_HTTP_RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded", "too many requests"},
    {0, RESPONSE_HTTP_UNAVAILABLE, 503, RESP_SRV, "server_unavailable", "the server is not ready"},
    {0, RESPONSE_HTTP_BUSY, 503, RESP_SRV, "server_busy", "too many open connections"},
    {0, RESPONSE_HTTP_BAD_FRAMING, 400, RESP_REQ, "invalid_framing", "the message framing is invalid"},
    {0, RESPONSE_HTTP_URI_TOO_LONG, 414, RESP_REQ, "uri_too_long", "the request line is too long"},
    {0, RESPONSE_HTTP_HEADERS_TOO_LARGE, 431, RESP_REQ, "headers_too_large", "the request headers are too large"},
    {0, RESPONSE_HTTP_NOT_IMPLEMENTED, 501, RESP_REQ, "unsupported_transfer_encoding",
     "this transfer encoding is not supported"},
    {0, RESPONSE_HTTP_CLIENT_CLOSED, 499, RESP_SRV, "client_closed", "client closed the connection"},
};
/* Codes not in the table (including SA_ERR_OK, which is a caller bug here). */
static const struct resp_error_row resp_error_default = {0, 0, 500, RESP_SRV, "internal_error", NULL};

/* Copy at most cap-1 bytes, cutting at a UTF-8 character boundary. */
static void resp_copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void resp_fill_error(const struct resp_error_row *row, const char *param, const char *message,
                            struct api_error *out)
{
    out->status = row->status;
    out->type = row->type;
    out->code = row->code;
    resp_copy_text(out->param, sizeof out->param, param ? param : "");
    resp_copy_text(out->message, sizeof out->message, message ? message : "error");
}

void response_error_from_code(int sa_err, const char *param, const char *message, struct api_error *out)
{
    const struct resp_error_row *row = &resp_error_default;
    for (size_t i = 0; i < sizeof response_error_table / sizeof response_error_table[0]; i++) {
        if (response_error_table[i].http_kind == 0 && response_error_table[i].sa_err == sa_err) {
            row = &response_error_table[i];
            break;
        }
    }
    resp_fill_error(row, param, message ? message : sa_err_str(sa_err), out);
}

void response_error_http(enum response_http_error kind, const char *param, const char *message,
                         struct api_error *out)
{
    const struct resp_error_row *row = &resp_error_default;
    for (size_t i = 0; i < sizeof response_error_table / sizeof response_error_table[0]; i++) {
        if (response_error_table[i].http_kind == (int)kind) {
            row = &response_error_table[i];
            break;
        }
    }
    resp_fill_error(row, param, message ? message : (row->message ? row->message : "internal error"), out);
}

static json_t *resp_error_obj(const struct api_error *e, bool *bad)
{
    json_t *inner = json_object();
    resp_put(inner, "message", resp_str(e->message, strnlen(e->message, sizeof e->message)), bad);
    resp_put(inner, "type", resp_cstr(e->type ? e->type : RESP_SRV), bad);
    size_t pl = strnlen(e->param, sizeof e->param);
    resp_put(inner, "param", pl ? resp_str(e->param, pl) : json_null(), bad);
    resp_put(inner, "code", e->code ? resp_cstr(e->code) : json_null(), bad);
    json_t *root = json_object();
    resp_put(root, "error", inner, bad);
    return root;
}

char *response_error_json(const struct api_error *e, size_t *len)
{
    bool bad = false;
    json_t *root = resp_error_obj(e, &bad);
    return resp_finish(root, bad, len);
}

/* ---- cache, timings, usage ---- */

static json_t *resp_cache_obj(const struct engine_cache_stats *s, bool *bad)
{
    json_t *o = json_object();
    resp_put(o, "shared_attention", json_boolean(s->shared_attention), bad);
    /* spans: the plan's data, each as "a-b" (an empty plan: []) */
    json_t *spans = json_array();
    for (uint32_t i = 0; i < s->n_spans && i < SHARE_MAX_SPANS; i++) {
        char t[32];
        int n = snprintf(t, sizeof t, "%u-%u", (unsigned)s->spans[i].a, (unsigned)s->spans[i].b);
        resp_append(spans, resp_str(t, (size_t)n), bad);
    }
    resp_put(o, "spans", spans, bad);
    resp_put(o, "rebalance", json_boolean(s->rebalance), bad);
    resp_put(o, "layers", resp_uint(s->layers), bad);
    resp_put(o, "sharing_layers", resp_uint(s->sharing_layers), bad);
    resp_put(o, "tokens", resp_uint(s->tokens), bad);
    resp_put(o, "k_bytes", resp_uint(s->k_bytes), bad);
    resp_put(o, "v_bytes", resp_uint(s->v_bytes), bad);
    resp_put(o, "kv_bytes", resp_uint(s->kv_bytes), bad);
    resp_put(o, "kv_bytes_without_sharing", resp_uint(s->kv_bytes_without_sharing), bad);
    resp_put(o, "kv_bytes_saved", resp_uint(s->kv_bytes_saved), bad);
    resp_put(o, "kv_saved_ratio", resp_real(s->kv_saved_ratio), bad);
    resp_put(o, "attention_flops_saved", resp_uint(s->attention_flops_saved), bad);
    /* page-exact: what the paged pool actually held for the sequence */
    resp_put(o, "block_tokens", resp_uint(s->block_tokens), bad);
    resp_put(o, "k_pages", resp_uint(s->k_pages), bad);
    resp_put(o, "v_pages", resp_uint(s->v_pages), bad);
    resp_put(o, "kv_bytes_paged", resp_uint(s->kv_bytes_paged), bad);
    if (s->shared_attention && s->sharing_layers == 0) /* asked for, but nothing to share: say so */
        resp_put(o, "note", json_string("sharing was requested but the plan shares no layer (e.g. the auto plan found "
                                        "no span): nothing was saved"), bad);
    return o;
}

static json_t *resp_timings_obj(const struct engine_timings *t, bool *bad)
{
    json_t *o = json_object();
    resp_put(o, "queued_ms", resp_real(t->queued_ms), bad);
    resp_put(o, "prompt_ms", resp_real(t->prompt_ms), bad);
    resp_put(o, "generation_ms", resp_real(t->generation_ms), bad);
    resp_put(o, "prompt_per_second", resp_real(t->prompt_per_second), bad);
    resp_put(o, "generation_per_second", resp_real(t->generation_per_second), bad);
    return o;
}

static json_t *resp_usage_obj(uint64_t prompt, uint64_t completion, uint64_t cached, bool *bad)
{
    json_t *o = json_object();
    resp_put(o, "prompt_tokens", resp_uint(prompt), bad);
    resp_put(o, "completion_tokens", resp_uint(completion), bad);
    resp_put(o, "total_tokens", resp_uint(prompt + completion), bad);
    json_t *d = json_object();
    resp_put(d, "cached_tokens", resp_uint(cached), bad);
    resp_put(o, "prompt_tokens_details", d, bad);
    return o;
}

static uint64_t resp_sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The aggregates described at the top of response.h. */
static void resp_aggregate(const struct response_completion *c, struct engine_cache_stats *cs,
                           struct engine_timings *tm)
{
    memset(cs, 0, sizeof *cs);
    memset(tm, 0, sizeof *tm);
    if (!c->choices || c->n_choices == 0) return;
    if (c->n_choices == 1) {
        *cs = c->choices[0].cache;
        *tm = c->choices[0].timings;
        return;
    }
    const struct engine_cache_stats *f = &c->choices[0].cache;
    cs->shared_attention = f->shared_attention;
    cs->rebalance = f->rebalance;
    cs->n_spans = f->n_spans;
    memcpy(cs->spans, f->spans, sizeof cs->spans);
    cs->layers = f->layers;
    cs->sharing_layers = f->sharing_layers;
    cs->block_tokens = f->block_tokens;
    uint64_t ptok = 0, gtok = 0, tokens = 0;
    for (size_t i = 0; i < c->n_choices; i++) {
        const struct response_choice *ch = &c->choices[i];
        const struct engine_cache_stats *s = &ch->cache;
        tokens = resp_sat_add(tokens, s->tokens);
        cs->k_bytes = resp_sat_add(cs->k_bytes, s->k_bytes);
        cs->v_bytes = resp_sat_add(cs->v_bytes, s->v_bytes);
        cs->kv_bytes = resp_sat_add(cs->kv_bytes, s->kv_bytes);
        cs->kv_bytes_without_sharing = resp_sat_add(cs->kv_bytes_without_sharing, s->kv_bytes_without_sharing);
        cs->kv_bytes_saved = resp_sat_add(cs->kv_bytes_saved, s->kv_bytes_saved);
        cs->attention_flops_saved = resp_sat_add(cs->attention_flops_saved, s->attention_flops_saved);
        cs->k_bytes_allocated = resp_sat_add(cs->k_bytes_allocated, s->k_bytes_allocated);
        cs->v_bytes_allocated = resp_sat_add(cs->v_bytes_allocated, s->v_bytes_allocated);
        cs->k_pages += s->k_pages;
        cs->v_pages += s->v_pages;
        cs->kv_bytes_paged = resp_sat_add(cs->kv_bytes_paged, s->kv_bytes_paged);
        const struct engine_timings *t = &ch->timings;
        if (t->queued_ms > tm->queued_ms) tm->queued_ms = t->queued_ms;
        if (t->prompt_ms > tm->prompt_ms) tm->prompt_ms = t->prompt_ms;
        if (t->generation_ms > tm->generation_ms) tm->generation_ms = t->generation_ms;
        ptok += ch->prompt_tokens;
        gtok += ch->completion_tokens;
    }
    cs->tokens = tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens;
    cs->kv_saved_ratio =
        cs->kv_bytes_without_sharing ? (double)cs->kv_bytes_saved / (double)cs->kv_bytes_without_sharing : 0.0;
    tm->prompt_per_second = tm->prompt_ms > 0 ? (double)ptok * 1000.0 / tm->prompt_ms : 0.0;
    tm->generation_per_second = tm->generation_ms > 0 ? (double)gtok * 1000.0 / tm->generation_ms : 0.0;
}

/* Adds usage, cache, timings of the whole request to obj. */
static void resp_put_summary(json_t *obj, const struct response_completion *c, bool *bad)
{
    struct engine_cache_stats cs;
    struct engine_timings tm;
    resp_aggregate(c, &cs, &tm);
    resp_put(obj, "usage", resp_usage_obj(c->usage.prompt_tokens, c->usage.completion_tokens, c->usage.cached_tokens, bad), bad);
    resp_put(obj, "cache", resp_cache_obj(&cs, bad), bad);
    resp_put(obj, "timings", resp_timings_obj(&tm, bad), bad);
}

/* Adds one choice's own usage, cache, timings to a choice object. */
static void resp_put_choice_stats(json_t *obj, const struct response_choice *ch, bool *bad)
{
    resp_put(obj, "usage", resp_usage_obj(ch->prompt_tokens, ch->completion_tokens, ch->cached_tokens, bad), bad);
    resp_put(obj, "cache", resp_cache_obj(&ch->cache, bad), bad);
    resp_put(obj, "timings", resp_timings_obj(&ch->timings, bad), bad);
}

char *response_cache_json(const struct engine_cache_stats *s, size_t *len)
{
    bool bad = false;
    return resp_finish(resp_cache_obj(s, &bad), bad, len);
}

char *response_timings_json(const struct engine_timings *t, size_t *len)
{
    bool bad = false;
    return resp_finish(resp_timings_obj(t, &bad), bad, len);
}

/* ---- logprobs ---- */

/* OpenAI legacy completions shape. */
static json_t *resp_legacy_logprobs(const struct response_token_logprob *lp, size_t n, bool *bad)
{
    json_t *tokens = json_array(), *tlp = json_array(), *top = json_array(), *off = json_array();
    for (size_t i = 0; i < n; i++) {
        resp_append(tokens, resp_str(lp[i].token, lp[i].token_len), bad);
        resp_append(tlp, lp[i].no_logprob ? json_null() : resp_real(lp[i].logprob), bad);
        json_t *t = lp[i].no_logprob ? json_null() : json_object();
        for (size_t k = 0; t && !lp[i].no_logprob && k < lp[i].n_top && lp[i].top; k++)
            resp_put_key(t, lp[i].top[k].token, lp[i].top[k].token_len, resp_real(lp[i].top[k].logprob), bad);
        resp_append(top, t, bad);
        resp_append(off, resp_uint(lp[i].text_offset), bad);
    }
    json_t *o = json_object();
    resp_put(o, "tokens", tokens, bad);
    resp_put(o, "token_logprobs", tlp, bad);
    resp_put(o, "top_logprobs", top, bad);
    resp_put(o, "text_offset", off, bad);
    return o;
}

static json_t *resp_bytes(const char *s, size_t n, bool *bad)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) resp_append(a, json_integer((unsigned char)s[i]), bad);
    return a;
}

/* Chat shape: {"content":[{token, logprob, bytes, top_logprobs:[...]}]}. */
static json_t *resp_chat_logprobs(const struct response_token_logprob *lp, size_t n, bool *bad)
{
    json_t *content = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object();
        resp_put(e, "token", resp_str(lp[i].token, lp[i].token_len), bad);
        resp_put(e, "logprob", resp_real(lp[i].logprob), bad);
        resp_put(e, "bytes", resp_bytes(lp[i].token, lp[i].token ? lp[i].token_len : 0, bad), bad);
        json_t *top = json_array();
        for (size_t k = 0; k < lp[i].n_top && lp[i].top; k++) {
            const struct response_top_logprob *t = &lp[i].top[k];
            json_t *te = json_object();
            resp_put(te, "token", resp_str(t->token, t->token_len), bad);
            resp_put(te, "logprob", resp_real(t->logprob), bad);
            resp_put(te, "bytes", resp_bytes(t->token, t->token ? t->token_len : 0, bad), bad);
            resp_append(top, te, bad);
        }
        resp_put(e, "top_logprobs", top, bad);
        resp_append(content, e, bad);
    }
    json_t *o = json_object();
    resp_put(o, "content", content, bad);
    return o;
}

/* ---- whole responses ---- */

/* [{(index,) id, type:"function", function:{name, arguments}}] */
static json_t *resp_tool_calls(const struct response_tool_call *c, size_t n, bool with_index, bool *bad)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object(), *fn = json_object();
        if (with_index) resp_put(o, "index", json_integer((json_int_t)i), bad);
        resp_put(o, "id", resp_cstr(c[i].id), bad);
        resp_put(o, "type", json_string("function"), bad);
        resp_put(fn, "name", resp_cstr(c[i].name), bad);
        resp_put(fn, "arguments", resp_cstr(c[i].arguments), bad);
        resp_put(o, "function", fn, bad);
        resp_append(a, o, bad);
    }
    return a;
}

static json_t *resp_head(const char *id, const char *object, int64_t created, const char *model, bool *bad)
{
    json_t *root = json_object();
    resp_put(root, "id", resp_cstr(id), bad);
    resp_put(root, "object", json_string(object), bad);
    resp_put(root, "created", json_integer((json_int_t)created), bad);
    resp_put(root, "model", resp_cstr(model), bad);
    return root;
}

static json_t *resp_finish_reason(const char *f)
{
    return f ? resp_cstr(f) : json_null();
}

static char *resp_whole(const struct response_completion *c, bool chat, size_t *len)
{
    bool bad = false;
    json_t *root = resp_head(c->id, chat ? "chat.completion" : "text_completion", c->created, c->model, &bad);
    json_t *choices = json_array();
    for (size_t i = 0; i < c->n_choices && c->choices; i++) {
        const struct response_choice *ch = &c->choices[i];
        json_t *o = json_object();
        resp_put(o, "index", json_integer(ch->index), &bad);
        if (chat) {
            json_t *msg = json_object();
            resp_put(msg, "role", json_string("assistant"), &bad);
            resp_put(msg, "content",
                     ch->n_tool_calls && !ch->text_len ? json_null() : resp_str(ch->text, ch->text_len), &bad);
            if (ch->n_tool_calls)
                resp_put(msg, "tool_calls", resp_tool_calls(ch->tool_calls, ch->n_tool_calls, false, &bad), &bad);
            resp_put(o, "message", msg, &bad);
        } else {
            resp_put(o, "text", resp_str(ch->text, ch->text_len), &bad);
        }
        json_t *lp = json_null();
        if (ch->has_logprobs) {
            json_decref(lp);
            lp = chat ? resp_chat_logprobs(ch->logprobs, ch->logprobs ? ch->n_logprobs : 0, &bad)
                      : resp_legacy_logprobs(ch->logprobs, ch->logprobs ? ch->n_logprobs : 0, &bad);
        }
        resp_put(o, "logprobs", lp, &bad);
        resp_put(o, "finish_reason", resp_finish_reason(ch->finish_reason), &bad);
        resp_put_choice_stats(o, ch, &bad);
        resp_append(choices, o, &bad);
    }
    resp_put(root, "choices", choices, &bad);
    resp_put_summary(root, c, &bad);
    return resp_finish(root, bad, len);
}

char *response_completion_json(const struct response_completion *c, size_t *len)
{
    return resp_whole(c, false, len);
}

char *response_chat_json(const struct response_completion *c, size_t *len)
{
    return resp_whole(c, true, len);
}

/* ---- streaming ---- */

static char *resp_chunk(const struct response_chunk *ch, bool chat, size_t *len)
{
    bool bad = false;
    json_t *root = resp_head(ch->id, chat ? "chat.completion.chunk" : "text_completion", ch->created, ch->model,
                             &bad);
    json_t *o = json_object();
    resp_put(o, "index", json_integer(ch->index), &bad);
    if (chat) {
        json_t *delta = json_object();
        if (ch->role) {
            resp_put(delta, "role", json_string("assistant"), &bad);
            resp_put(delta, "content", resp_str(ch->text, ch->text_len), &bad);
        } else if (ch->text_len > 0 || (!ch->finish_reason && !ch->n_tool_calls)) {
            resp_put(delta, "content", resp_str(ch->text, ch->text_len), &bad);
        }
        if (ch->n_tool_calls)
            resp_put(delta, "tool_calls", resp_tool_calls(ch->tool_calls, ch->n_tool_calls, true, &bad), &bad);
        resp_put(o, "delta", delta, &bad);
    } else {
        resp_put(o, "text", resp_str(ch->text, ch->text_len), &bad);
    }
    json_t *lp = json_null();
    if (ch->has_logprobs) {
        json_decref(lp);
        lp = chat ? resp_chat_logprobs(ch->logprobs, ch->logprobs ? ch->n_logprobs : 0, &bad)
                  : resp_legacy_logprobs(ch->logprobs, ch->logprobs ? ch->n_logprobs : 0, &bad);
    }
    resp_put(o, "logprobs", lp, &bad);
    resp_put(o, "finish_reason", resp_finish_reason(ch->finish_reason), &bad);
    if (ch->done) resp_put_choice_stats(o, ch->done, &bad);
    json_t *choices = json_array();
    resp_append(choices, o, &bad);
    resp_put(root, "choices", choices, &bad);
    if (ch->summary) resp_put_summary(root, ch->summary, &bad);
    return resp_finish(root, bad, len);
}

char *response_completion_chunk_json(const struct response_chunk *ch, size_t *len)
{
    return resp_chunk(ch, false, len);
}

char *response_chat_chunk_json(const struct response_chunk *ch, size_t *len)
{
    return resp_chunk(ch, true, len);
}

static char *resp_usage_chunk(const struct response_completion *c, bool chat, size_t *len)
{
    bool bad = false;
    json_t *root = resp_head(c->id, chat ? "chat.completion.chunk" : "text_completion", c->created, c->model,
                             &bad);
    resp_put(root, "choices", json_array(), &bad);
    resp_put_summary(root, c, &bad);
    return resp_finish(root, bad, len);
}

char *response_completion_usage_chunk_json(const struct response_completion *c, size_t *len)
{
    return resp_usage_chunk(c, false, len);
}

char *response_chat_usage_chunk_json(const struct response_completion *c, size_t *len)
{
    return resp_usage_chunk(c, true, len);
}

char *response_sse_event(const char *json, size_t json_len, size_t *len)
{
    static const char prefix[] = "data: ";
    const size_t pl = sizeof prefix - 1;
    if (!json) json_len = 0;
    /* Worst case: every byte a line break -> (pl + 1) per byte. */
    size_t lines = 1;
    for (size_t i = 0; i < json_len; i++)
        if (json[i] == '\n' || json[i] == '\r') lines++;
    if (json_len > SIZE_MAX / 2 || lines > (SIZE_MAX / 2) / (pl + 1)) return NULL;
    size_t cap = json_len + lines * (pl + 1) + 2;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    memcpy(out + o, prefix, pl);
    o += pl;
    while (i < json_len) {
        char c = json[i++];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i < json_len && json[i] == '\n') i++;
            out[o++] = '\n';
            memcpy(out + o, prefix, pl);
            o += pl;
        } else {
            out[o++] = c;
        }
    }
    out[o++] = '\n';
    out[o++] = '\n';
    out[o] = '\0';
    if (len) *len = o;
    return out;
}

const char *response_sse_done(void)
{
    return "data: [DONE]\n\n";
}

const char *response_sse_keepalive(void)
{
    return ": keep-alive\n\n";
}

char *response_sse_error(const struct api_error *e, size_t *len)
{
    size_t jl;
    char *j = response_error_json(e, &jl);
    if (!j) return NULL;
    char *ev = response_sse_event(j, jl, len);
    free(j);
    return ev;
}

/* ---- /v1/models ---- */

static json_t *resp_model_obj(const struct response_model_info *m, bool *bad)
{
    json_t *e = json_object();
    resp_put(e, "id", resp_cstr(m->id), bad);
    resp_put(e, "object", json_string("model"), bad);
    resp_put(e, "created", json_integer((json_int_t)m->created), bad);
    resp_put(e, "owned_by", json_string("saserve"), bad);
    resp_put(e, "layers", resp_uint(m->layers), bad);
    resp_put(e, "context_length", resp_uint(m->context_length), bad);
    resp_put(e, "n_params", resp_uint(m->n_params), bad);
    resp_put(e, "share_default", json_boolean(m->share_default), bad);
    resp_put(e, "share_spans", resp_cstr(m->share_spans ? m->share_spans : "off"), bad);
    resp_put(e, "rebalance_default", json_boolean(m->rebalance_default), bad);
    resp_put(e, "chat_template", resp_cstr(m->chat_template ? m->chat_template : "llama2"), bad);
    return e;
}

char *response_models_json(const struct response_model_info *m, size_t *len)
{
    bool bad = false;
    json_t *data = json_array();
    resp_append(data, resp_model_obj(m, &bad), &bad);
    json_t *root = json_object();
    resp_put(root, "object", json_string("list"), &bad);
    resp_put(root, "data", data, &bad);
    return resp_finish(root, bad, len);
}

char *response_model_json(const struct response_model_info *m, size_t *len)
{
    bool bad = false;
    return resp_finish(resp_model_obj(m, &bad), bad, len);
}

char *response_tokenize_json(const int32_t *ids, size_t n, char *const *pieces, size_t *len)
{
    bool bad = false;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!pieces) {
            resp_append(arr, json_integer(ids[i]), &bad);
            continue;
        }
        json_t *t = json_object();
        resp_put(t, "id", json_integer(ids[i]), &bad);
        const char *p = pieces[i] ? pieces[i] : "";
        json_t *piece = json_stringn(p, strlen(p));
        if (!piece) { /* not valid UTF-8: the bytes */
            piece = json_array();
            for (const unsigned char *b = (const unsigned char *)p; *b; b++) resp_append(piece, json_integer(*b), &bad);
        }
        resp_put(t, "piece", piece, &bad);
        resp_append(arr, t, &bad);
    }
    json_t *root = json_object();
    resp_put(root, "tokens", arr, &bad);
    return resp_finish(root, bad, len);
}

/* RFC 4648 base64 of n bytes (malloc'd, NUL-terminated). */
static char *resp_base64(const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

char *response_embeddings_json(const char *model, const float *const *vecs, size_t n_vecs, uint32_t dim, bool base64,
                               uint64_t prompt_tokens, size_t *len)
{
    bool bad = false;
    json_t *data = json_array();
    for (size_t i = 0; i < n_vecs; i++) {
        json_t *e = json_object();
        resp_put(e, "object", json_string("embedding"), &bad);
        resp_put(e, "index", json_integer((json_int_t)i), &bad);
        if (base64) { /* little-endian float32, as OpenAI sends it */
            unsigned char *bytes = malloc((size_t)dim * 4);
            for (uint32_t d = 0; bytes && d < dim; d++) {
                uint32_t u;
                memcpy(&u, &vecs[i][d], 4);
                for (int k = 0; k < 4; k++) bytes[4 * d + k] = (unsigned char)(u >> (8 * k));
            }
            char *b64 = bytes ? resp_base64(bytes, (size_t)dim * 4) : NULL;
            resp_put(e, "embedding", b64 ? json_string(b64) : NULL, &bad);
            free(bytes);
            free(b64);
        } else {
            json_t *arr = json_array();
            for (uint32_t d = 0; d < dim; d++) resp_append(arr, resp_real(vecs[i][d]), &bad);
            resp_put(e, "embedding", arr, &bad);
        }
        resp_append(data, e, &bad);
    }
    json_t *usage = json_object();
    resp_put(usage, "prompt_tokens", resp_uint(prompt_tokens), &bad);
    resp_put(usage, "total_tokens", resp_uint(prompt_tokens), &bad);
    json_t *root = json_object();
    resp_put(root, "object", json_string("list"), &bad);
    resp_put(root, "data", data, &bad);
    resp_put(root, "model", resp_cstr(model ? model : ""), &bad);
    resp_put(root, "usage", usage, &bad);
    return resp_finish(root, bad, len);
}

char *response_detokenize_json(const char *content, size_t n, size_t *len)
{
    bool bad = false;
    json_t *root = json_object();
    resp_put(root, "content", resp_str(content ? content : "", content ? n : 0), &bad);
    return resp_finish(root, bad, len);
}
