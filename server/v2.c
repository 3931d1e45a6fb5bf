/*
 * v2.c - the Open Inference Protocol (KServe v2) for the vision model
 * (infer.h, api_int.h): GET /v2/health/ready|live, GET /v2/models/{name}[/ready],
 * POST /v2/models/{name}/infer.
 *
 * A vjob is one POST /v2/models/{name}/infer. Its result buffers are allocated
 * at submit on the loop thread, so the engine callback (step thread) only
 * copies into them and queues the job on a->vq_* under a->mu, then wakes the
 * loop. Refs: the HTTP side and the engine each hold one; whoever drops the
 * last frees it. A client that leaves only clears vj->http (vision jobs are a
 * few milliseconds; they are not cancelled).
 */
#define _DEFAULT_SOURCE
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool api__v2_closed(struct api *a, struct http_request *r, bool client_gone)
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
    api__send_error(a, r, METRICS_EP_V2_INFER, err);
}

void api__v2_drain(struct api *a)
{
    pthread_mutex_lock(&a->mu);
    struct vjob *v = a->vq_head;
    a->vq_head = a->vq_tail = NULL;
    pthread_mutex_unlock(&a->mu);
    while (v) {
        struct vjob *next = v->q_next;
        vjob_unlink(v);
        const double secs = api__now_s() - v->born;
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
                api__send_json(a, r, METRICS_EP_V2_INFER, 200, json, len, NULL);
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
    v->seed = v->req.seed_set ? v->req.seed : api__pick_seed(a) & ((UINT64_C(1) << 53) - 1);
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
    v->born = api__now_s() - http_age_s(r);
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
void api__handle_v2(struct api *a, struct http_request *r, const char *path, const char *method)
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
            if (!api__authorized(a, r)) response_error_http(RESPONSE_HTTP_UNAUTHORIZED, NULL, NULL, &err);
            api__send_error(a, r, ep, &err);
            return;
        }
    }
    if (what < 0) {
        api__send_http_error(a, r, METRICS_EP_OTHER, RESPONSE_HTTP_NOT_FOUND, NULL, "no such endpoint");
        return;
    }
    if ((what == 4 && !post) || (what != 4 && !get)) {
        api__send_method_not_allowed(a, r, ep, allow);
        return;
    }
    if (ep != METRICS_EP_V2_HEALTH && !api__authorized(a, r)) {
        api__send_unauthorized(a, r, ep);
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
            api__send_http_error(a, r, ep, RESPONSE_HTTP_UNAVAILABLE, NULL, "out of memory");
            return;
        }
        api__send_json(a, r, ep, 200, json, len, NULL);
        return;
    }
    handle_infer(a, r);
}
