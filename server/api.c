/*
 * api.c - routing (a table of handlers), authorisation, the simple endpoints,
 * the web page's files (ui.h) and the similarity heatmap (heatmap.h), the one
 * place error answers go out, and the api's lifecycle (api_int.h says what the
 * other api files do).
 */
#define _DEFAULT_SOURCE
#include "api_int.h"

#include "engine/log.h"
#include "heatmap.h"
#include "ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void api__send_json(struct api *a, struct http_request *r, enum metrics_endpoint ep, int status, char *json,
                      size_t len, const char *const *headers)
{
    if (!json) { /* the answer could not be built: say so (503), never an empty 200 */
        struct api_error err;
        response_error_from_code(SA_ERR_NOMEM, NULL, "out of memory while writing the answer", &err);
        json = response_error_json(&err, &len);
        status = err.status;
        static const char *const retry[] = {"Retry-After: 1", NULL};
        headers = retry;
    }
    static const char oom[] = "{\"error\": {\"message\": \"out of memory\", \"type\": \"server_error\", "
                              "\"param\": null, \"code\": \"out_of_memory\"}}"; /* the table's row, when even that fails */
    http_respond(r, status, "application/json", json ? json : oom, json ? len : sizeof oom - 1, headers);
    metrics_request_done(a->metrics, ep, http_client_gone(r) ? STATUS_CLIENT_CLOSED : status, http_age_s(r));
    free(json);
}

void api__send_error(struct api *a, struct http_request *r, enum metrics_endpoint ep, const struct api_error *err)
{
    size_t len;
    char *json = response_error_json(err, &len);
    static const char *const retry[] = {"Retry-After: 1", NULL};
    api__send_json(a, r, ep, err->status, json, len, err->status == 503 ? retry : NULL);
}

void api__send_http_error(struct api *a, struct http_request *r, enum metrics_endpoint ep,
                            enum response_http_error kind, const char *param, const char *message)
{
    struct api_error err;
    response_error_http(kind, param, message, &err);
    api__send_error(a, r, ep, &err);
}

void api__send_method_not_allowed(struct api *a, struct http_request *r, enum metrics_endpoint ep, const char *allow)
{
    struct api_error err;
    response_error_http(RESPONSE_HTTP_METHOD_NOT_ALLOWED, NULL, NULL, &err);
    size_t len;
    char *json = response_error_json(&err, &len);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Allow: %s", allow);
    const char *const headers[] = {hdr, NULL};
    api__send_json(a, r, ep, 405, json, len, headers);
}

void api__send_unauthorized(struct api *a, struct http_request *r, enum metrics_endpoint ep)
{
    struct api_error err;
    response_error_http(RESPONSE_HTTP_UNAUTHORIZED, NULL, NULL, &err);
    size_t len;
    char *json = response_error_json(&err, &len);
    static const char *const headers[] = {"WWW-Authenticate: Bearer", NULL};
    api__send_json(a, r, ep, 401, json, len, headers);
}

static bool key_equal_ct(const char *given, const char *want)
{
    /* constant time in the length of the expected key */
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = (unsigned char)(lg != lw);
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)(want[i] ^ (i < lg ? given[i] : 0));
    return diff == 0;
}

bool api__authorized(struct api *a, struct http_request *r)
{
    if (!a->cfg->api_key[0]) return true;
    const char *h = http_header(r, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    return key_equal_ct(h + 7, a->cfg->api_key);
}

uint64_t api__pick_seed(struct api *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20)) + 0x9e3779b97f4a7c15ull * ++a->seed_counter;
}

/* ---- simple endpoints ---- */

static struct response_model_info model_info(const struct api *a)
{
    const struct engine_model_info *info = engine_info(a->e);
    return (struct response_model_info){.id = a->model_name, .created = 0, .layers = info->n_layer,
                                        .context_length = info->n_ctx, .n_params = info->n_params,
                                        .share_default = a->cfg->share, .share_spans = info->default_spans,
                                        .rebalance_default = a->cfg->rebalance,
                                        .chat_template = chat_format_name(a->chat)};
}

static void handle_models(struct api *a, struct http_request *r)
{
    struct response_model_info m = model_info(a);
    size_t len;
    char *json = response_models_json(&m, &len);
    api__send_json(a, r, METRICS_EP_MODELS, 200, json, len, NULL);
}

/* GET /v1/models/{id}: the one model, or 404 naming the model */
static void handle_model(struct api *a, struct http_request *r)
{
    struct response_model_info m = model_info(a);
    if (strcmp(http_path(r) + strlen("/v1/models/"), m.id) != 0) {
        struct api_error err;
        response_error_from_code(SA_ERR_NOT_FOUND, "model", "no such model (GET /v1/models lists it)", &err);
        api__send_error(a, r, METRICS_EP_MODELS, &err);
        return;
    }
    size_t len;
    char *json = response_model_json(&m, &len);
    api__send_json(a, r, METRICS_EP_MODELS, 200, json, len, NULL);
}

/* POST /tokenize and /detokenize (llama-server's shapes) */
static void handle_tokenize(struct api *a, struct http_request *r)
{
    struct api_tokens_request tq;
    struct api_error err;
    size_t blen, len = 0;
    const char *body = http_body(r, &blen);
    if (request_parse_tokenize(body, blen, &a->limits, &tq, &err) != 0) {
        request_tokens_free(&tq);
        api__send_error(a, r, METRICS_EP_TOKENIZE, &err);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char **pieces = NULL;
    int rc = engine_tokenize(a->e, tq.content, strlen(tq.content), tq.add_special, tq.add_special, &ids, &n);
    if (!rc && tq.with_pieces && n) {
        pieces = calloc(n, sizeof *pieces);
        for (size_t i = 0; pieces && i < n; i++)
            if (!(pieces[i] = engine_token_piece(a->e, ids[i]))) rc = SA_ERR_NOMEM;
        if (!pieces) rc = SA_ERR_NOMEM;
    }
    char *json = rc ? NULL : response_tokenize_json(ids, n, tq.with_pieces ? pieces : NULL, &len);
    for (size_t i = 0; pieces && i < n; i++) free(pieces[i]);
    free(pieces);
    free(ids);
    request_tokens_free(&tq);
    if (rc) {
        response_error_from_code(rc, "content", NULL, &err);
        api__send_error(a, r, METRICS_EP_TOKENIZE, &err);
        return;
    }
    api__send_json(a, r, METRICS_EP_TOKENIZE, 200, json, len, NULL);
}

static void handle_detokenize(struct api *a, struct http_request *r)
{
    struct api_tokens_request tq;
    struct api_error err;
    size_t blen, len = 0;
    const char *body = http_body(r, &blen);
    if (request_parse_detokenize(body, blen, &a->limits, &tq, &err) != 0) {
        request_tokens_free(&tq);
        api__send_error(a, r, METRICS_EP_TOKENIZE, &err);
        return;
    }
    char *text = engine_detokenize(a->e, tq.tokens, tq.n_tokens);
    char *json = text ? response_detokenize_json(text, strlen(text), &len) : NULL;
    free(text);
    request_tokens_free(&tq);
    api__send_json(a, r, METRICS_EP_TOKENIZE, 200, json, len, NULL); /* NULL: 503 out_of_memory */
}

/* 200 {"status": "ok"} once loaded (llama-server's shape); not ready, the error
 * object of every other 503 (llama-server answers its error object while
 * loading too): server_unavailable, the message saying loading or draining. */
static void handle_health(struct api *a, struct http_request *r)
{
    if (!a->e || a->draining) {
        api__send_http_error(a, r, METRICS_EP_HEALTH, RESPONSE_HTTP_UNAVAILABLE, NULL,
                             !a->e ? "the model is loading" : "the server is shutting down (draining after SIGTERM)");
        return;
    }
    static const char body[] = "{\"status\": \"ok\"}";
    http_respond(r, 200, "application/json", body, sizeof body - 1, NULL);
    metrics_request_done(a->metrics, METRICS_EP_HEALTH, 200, http_age_s(r));
}

static void handle_metrics(struct api *a, struct http_request *r)
{
    struct engine_metrics em;
    if (a->e) engine_get_metrics(a->e, &em);
    /* count this scrape before rendering, so the output includes it */
    metrics_request_done(a->metrics, METRICS_EP_METRICS, 200, http_age_s(r));
    size_t len;
    char *text = metrics_render(a->metrics, a->e ? &em : NULL, a->model_name, &len);
    http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? len : 0, NULL);
    free(text);
}

/* ---- the web page (server/ui/) and the similarity heatmap ---- */

/* Does the request's If-None-Match name etag (a list, or "*")? */
static bool etag_matches(const char *inm, const char *etag)
{
    if (!inm) return false;
    return strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL; /* W/"x" names "x" too (weak comparison) */
}

static void send_static(struct api *a, struct http_request *r, enum metrics_endpoint ep, const char *type,
                        const unsigned char *data, size_t len, const char *etag, const char *cache)
{
    char etag_hdr[64], cache_hdr[96];
    snprintf(etag_hdr, sizeof etag_hdr, "ETag: %s", etag);
    snprintf(cache_hdr, sizeof cache_hdr, "Cache-Control: %s", cache);
    /* the page loads only its own files and talks only to this server */
    const char *const headers[] = {etag_hdr, cache_hdr, "X-Content-Type-Options: nosniff",
                                   "Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:; "
                                   "frame-ancestors 'none'",
                                   NULL};
    const bool fresh = etag_matches(http_header(r, "If-None-Match"), etag);
    http_respond(r, fresh ? 304 : 200, type, fresh ? "" : (const char *)data, fresh ? 0 : len, headers);
    metrics_request_done(a->metrics, ep, fresh ? 304 : 200, http_age_s(r));
}

/* GET / (index.html) and GET /ui/{file}: revalidated on every use (no-cache + ETag, 304 when unchanged) */
static void handle_ui(struct api *a, struct http_request *r)
{
    const char *path = http_path(r);
    const struct ui_file *f = ui_file_find(strcmp(path, "/") == 0 ? "index.html" : path + strlen("/ui/"));
    if (!f) {
        api__send_http_error(a, r, METRICS_EP_UI, RESPONSE_HTTP_NOT_FOUND, NULL, "no such file of the web page");
        return;
    }
    send_static(a, r, METRICS_EP_UI, f->content_type, f->data, f->len, f->etag, "no-cache");
}

/* GET /v1/models/{id}/similarity.png: the start-up calibration's layer similarity as a heatmap */
static void handle_similarity(struct api *a, struct http_request *r)
{
    struct api_error err;
    const char *id = http_path(r) + strlen("/v1/models/");
    const size_t n = strlen(id) - strlen("/similarity.png");
    if (strlen(a->model_name) != n || strncmp(id, a->model_name, n) != 0) {
        response_error_from_code(SA_ERR_NOT_FOUND, "model", "no such model (GET /v1/models lists it)", &err);
        api__send_error(a, r, METRICS_EP_SIMILARITY, &err);
        return;
    }
    uint32_t L = 0;
    const float *sim = engine_layer_similarity(a->e, &L);
    if (!sim) {
        response_error_from_code(SA_ERR_NOT_FOUND, NULL,
                                 "no layer similarity: the start-up calibration failed (see the server log)", &err);
        api__send_error(a, r, METRICS_EP_SIMILARITY, &err);
        return;
    }
    unsigned char *png = NULL;
    size_t len = 0;
    if (heatmap_png(sim, (int)L, 0.0f, &png, &len) != 0) {
        response_error_from_code(SA_ERR_NOMEM, NULL, "out of memory while drawing the heatmap", &err);
        api__send_error(a, r, METRICS_EP_SIMILARITY, &err);
        return;
    }
    /* the matrix never changes while the process runs: its ETag is the PNG's hash */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ png[i]) * 0x100000001b3ull;
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)h);
    send_static(a, r, METRICS_EP_SIMILARITY, "image/png", png, len, etag, "no-cache");
    free(png);
}

static void handle_completions(struct api *a, struct http_request *r) { api__handle_generate(a, r, REQUEST_COMPLETION); }
static void handle_chat(struct api *a, struct http_request *r) { api__handle_generate(a, r, REQUEST_CHAT); }
static void handle_embeddings(struct api *a, struct http_request *r) { api__handle_generate(a, r, REQUEST_EMBEDDING); }

/* ---- routing ---- */

typedef void (*api_route_fn)(struct api *a, struct http_request *r);

struct route {
    const char *path, *method;
    enum metrics_endpoint ep;
    api_route_fn fn;
    bool prefix; /* path is a prefix: "/v1/models/" + {id} (one segment, no '/') */
    const char *suffix; /* with prefix: the path is prefix + {id} + suffix ({id} one non-empty segment) */
};

/* Exact paths and prefixes ("/v1/models/{id}", "/v1/models/{id}/similarity.png", "/ui/{file}"); "/v2/" is
 * routed by v2.c, its paths are templated. */
static const struct route routes[] = {
    {"/v1/completions", "POST", METRICS_EP_COMPLETIONS, handle_completions, false, NULL},
    {"/v1/chat/completions", "POST", METRICS_EP_CHAT, handle_chat, false, NULL},
    {"/v1/embeddings", "POST", METRICS_EP_EMBEDDINGS, handle_embeddings, false, NULL},
    {"/v1/models", "GET", METRICS_EP_MODELS, handle_models, false, NULL},
    {"/v1/models/", "GET", METRICS_EP_SIMILARITY, handle_similarity, true, "/similarity.png"},
    {"/v1/models/", "GET", METRICS_EP_MODELS, handle_model, true, NULL},
    {"/tokenize", "POST", METRICS_EP_TOKENIZE, handle_tokenize, false, NULL},
    {"/detokenize", "POST", METRICS_EP_TOKENIZE, handle_detokenize, false, NULL},
    {"/health", "GET", METRICS_EP_HEALTH, handle_health, false, NULL},
    {"/metrics", "GET", METRICS_EP_METRICS, handle_metrics, false, NULL},
    {"/", "GET", METRICS_EP_UI, handle_ui, false, NULL},
    {"/ui/", "GET", METRICS_EP_UI, handle_ui, true, NULL},
};

static const struct route *route_of(const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *rt = &routes[i];
        size_t n = strlen(rt->path);
        if (!rt->prefix) {
            if (strcmp(path, rt->path) == 0) return rt;
            continue;
        }
        if (strncmp(path, rt->path, n) != 0 || !path[n]) continue;
        const char *seg = path + n, *slash = strchr(seg, '/');
        if (!rt->suffix ? !slash : slash && slash > seg && strcmp(slash, rt->suffix) == 0) return rt;
    }
    return NULL;
}

static void on_request(void *app, struct http_request *r)
{
    struct api *a = app;
    const char *path = http_path(r), *method = http_method(r);
    const struct route *rt = NULL;
    rt = route_of(path);
    if (!a->e && !(rt && (rt->fn == handle_health || rt->fn == handle_metrics || rt->fn == handle_ui))) {
        /* the model is still loading (the page loads and shows it from /health) */
        api__send_http_error(a, r, rt ? rt->ep : METRICS_EP_OTHER, RESPONSE_HTTP_UNAVAILABLE, NULL,
                             "the model is loading; retry shortly");
        return;
    }
    if (strncmp(path, "/v2/", 4) == 0) {
        api__handle_v2(a, r, path, method);
        return;
    }
    if (!rt) {
        api__send_http_error(a, r, METRICS_EP_OTHER, RESPONSE_HTTP_NOT_FOUND, NULL, "no such endpoint");
        return;
    }
    if (strcmp(method, rt->method) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0)) {
        api__send_method_not_allowed(a, r, rt->ep, rt->method);
        return;
    }
    /* /health and the page's static files (public, no data) need no key; the page asks for it */
    if (rt->ep != METRICS_EP_HEALTH && rt->ep != METRICS_EP_UI && !api__authorized(a, r)) {
        api__send_unauthorized(a, r, rt->ep);
        return;
    }
    rt->fn(a, r);
}

static void on_early_reply(void *app, const char *path, int status)
{
    struct api *a = app;
    const struct route *rt = route_of(path);
    enum metrics_endpoint ep = rt ? rt->ep : METRICS_EP_OTHER;
    if (strncmp(path, "/v2/", 4) == 0) { /* e.g. a 413 for an infer body over max_body */
        const size_t n = strlen(path);
        if (strncmp(path, "/v2/health/", 11) == 0) ep = METRICS_EP_V2_HEALTH;
        else if (n > 6 && strcmp(path + n - 6, "/infer") == 0) ep = METRICS_EP_V2_INFER;
        else if (strncmp(path, "/v2/models/", 11) == 0) ep = METRICS_EP_V2_MODELS;
        if (ep == METRICS_EP_V2_INFER && a->e && engine_vision_info(a->e)) metrics_vision_request(a->metrics, -1, status, 0, 0);
    }
    metrics_request_done(a->metrics, ep, status, 0);
}

static void on_closed(void *app, struct http_request *r, bool client_gone)
{
    if (!api__v2_closed(app, r, client_gone)) api__job_closed(app, r, client_gone);
}

struct http_handlers api_http_handlers(void)
{
    return (struct http_handlers){.on_request = on_request, .on_closed = on_closed, .on_early_reply = on_early_reply};
}

struct api *api_create(uv_loop_t *loop, const struct config *cfg)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->loop = loop;
    a->cfg = cfg;
    a->metrics = metrics_create();
    a->chat = CHAT_FORMAT_LLAMA2;
    a->model_name = cfg->served_model_name;
    a->vision_default_mode = -1;
    const char *fail = getenv("SA_FAULT_EVENT_ALLOC");
    if (fail && *fail) {
        a->fail_every = strtoull(fail, NULL, 10);
        SA_LOGW("test hook: every %llu-th event allocation fails", (unsigned long long)a->fail_every);
    }
    pthread_mutex_init(&a->mu, NULL);
    if (!a->metrics || uv_async_init(loop, &a->async, api__drain_events) != 0) {
        metrics_destroy(a->metrics);
        free(a);
        return NULL;
    }
    a->async.data = a;
    return a;
}

void api_set_engine(struct api *a, struct engine *e)
{
    const struct config *cfg = a->cfg;
    const struct engine_model_info *info = engine_info(e);
    a->limits = (struct request_limits){.max_prompt_bytes = cfg->max_prompt_bytes, .max_tokens_limit = cfg->max_tokens_limit,
                                        .max_n = cfg->max_n, .max_logprobs = cfg->max_logprobs,
                                        .n_vocab = info->n_vocab, .n_ctx = info->n_ctx, .max_stop = cfg->max_stop,
                                        .default_temperature = cfg->temperature};
    a->model_name = cfg->served_model_name[0] ? cfg->served_model_name : info->name;
    if (chat_format_pick(cfg->chat_template[0] ? cfg->chat_template : NULL, info->chat_template, &a->chat) != 0) {
        a->chat = CHAT_FORMAT_LLAMA2;
        SA_LOGW("chat template: %s; /v1/chat/completions renders the llama2 format (set chat_template to choose)",
                info->chat_template ? "the model's template is not one saserve knows" : "the model names none");
    }
    const struct phidnn_info *vi = engine_vision_info(e);
    if (vi) { /* the default recreation: inpaint, else the first mode the file has */
        for (int m = PHIDNN_MODE_COUNT - 1; m >= 0 && a->vision_default_mode < 0; m--)
            if (vi->has_mode[m] && m != PHIDNN_MODE_OFF) a->vision_default_mode = m;
        if (a->vision_default_mode < 0) a->vision_default_mode = PHIDNN_MODE_OFF;
        metrics_vision_model(a->metrics, vi->name);
    }
    a->e = e; /* last: from here on requests are served */
}

void api_attach(struct api *a, struct http_server *http) { a->http = http; }
const char *api_chat_template(const struct api *a) { return chat_format_name(a->chat); }
void api_set_draining(struct api *a, bool draining) { a->draining = draining; }
unsigned api_jobs_in_flight(const struct api *a) { return a->n_jobs + a->n_vjobs; }

void api_cancel_all(struct api *a)
{
    for (struct job *j = a->jobs; j; j = j->next) api__job_cancel_all(j);
}

static void on_async_closed(uv_handle_t *h)
{
    struct api *a = h->data;
    api__drain_events(&a->async); /* events that arrived last */
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
