/*
 * serve.c - `saserve serve`: configuration -> engine -> HTTP on a libuv loop,
 * and the shutdown order of RELIABILITY.md 5.4:
 *
 *   SIGTERM/SIGINT: stop accepting (MHD quiesce), /health and new requests 503;
 *   in-flight requests finish within shutdown_grace seconds, then the rest are
 *   cancelled (streams end with an error event); every suspended connection is
 *   resumed, the daemon stopped, the engine joined, the loop closed; exit 0.
 */
#include "serve.h"

#include "api.h"
#include "config/config.h"
#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/log.h"
#include "http.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

extern char **environ;

struct server {
    struct config cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_check, grace;
    uv_async_t loaded;           /* the loader thread is done (its result in load_rc) */
    pthread_t loader;
    struct engine_config ec;
    int load_rc, exit_code;
    char load_msg[512];
    bool loading;
    struct engine *engine;
    struct http_server *http;
    struct api *api;
    bool draining, cancelled, stopped;
};

static void stop_all(struct server *s)
{
    if (s->stopped) return;
    s->stopped = true;
    SA_LOGI("shutdown: stopping the HTTP daemon and the engine");
    http_stop(s->http);
    uv_timer_stop(&s->drain_check);
    uv_timer_stop(&s->grace);
    uv_close((uv_handle_t *)&s->drain_check, NULL);
    uv_close((uv_handle_t *)&s->grace, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->loaded, NULL);
    /* join the engine (it may still deliver final events), then close the api's async handle */
    engine_destroy(s->engine);
    s->engine = NULL;
    api_destroy(s->api);
    s->api = NULL;
}

static void on_drain_check(uv_timer_t *t)
{
    struct server *s = t->data;
    if (!s->loading && api_jobs_in_flight(s->api) == 0 && http_open_requests(s->http) == 0) stop_all(s);
}

static void on_grace(uv_timer_t *t)
{
    struct server *s = t->data;
    SA_LOGW("shutdown: grace period over, cancelling %u requests", api_jobs_in_flight(s->api));
    s->cancelled = true;
    api_cancel_all(s->api);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    if (s->draining) {
        SA_LOGW("second signal: cancelling everything now");
        api_cancel_all(s->api);
        return;
    }
    SA_LOGI("%s: draining (grace %u s)", signum == SIGTERM ? "SIGTERM" : "SIGINT", s->cfg.shutdown_grace);
    s->draining = true;
    api_set_draining(s->api, true);
    http_quiesce(s->http);
    uv_timer_start(&s->drain_check, on_drain_check, 0, 50);
    uv_timer_start(&s->grace, on_grace, (uint64_t)s->cfg.shutdown_grace * 1000, 0);
}

static enum sa_log_level parse_level(const char *s)
{
    if (!strcmp(s, "debug")) return SA_LOG_DEBUG;
    if (!strcmp(s, "warn")) return SA_LOG_WARN;
    if (!strcmp(s, "error")) return SA_LOG_ERROR;
    return SA_LOG_INFO;
}

/* The loader thread: the model (and the vision model) load while HTTP already answers. */
static void *load_main(void *arg)
{
    struct server *s = arg;
    SA_LOGI("loading the model: %s", s->cfg.model);
    s->load_rc = engine_create(&s->ec, &s->engine, s->load_msg, sizeof s->load_msg);
    uv_async_send(&s->loaded);
    return NULL;
}

static void on_loaded(uv_async_t *h)
{
    struct server *s = h->data;
    pthread_join(s->loader, NULL);
    s->loading = false;
    if (s->load_rc) { /* as before the server listened: the cause, exit 2 */
        fprintf(stderr, "saserve: %s: %s\n", s->cfg.model, s->load_msg[0] ? s->load_msg : sa_err_str(s->load_rc));
        s->exit_code = 2;
        s->engine = NULL;
        stop_all(s);
        return;
    }
    const struct engine_model_info *info = engine_info(s->engine);
    SA_LOGI("model %s: %u layers, %u context, %llu parameters; sharing %s by default, plan %s; re-balancer %s",
            info->name, info->n_layer, info->n_ctx, (unsigned long long)info->n_params, s->cfg.share ? "on" : "off",
            info->default_spans, s->cfg.rebalance ? "on" : "off");
    const struct phidnn_info *vi = engine_vision_info(s->engine);
    if (vi)
        SA_LOGI("vision model %s (%s): %ux%ux%u, %u classes, %llu parameters, at /v2/models/%s", vi->name,
                s->cfg.vision_model, vi->channels, vi->height, vi->width, vi->n_classes,
                (unsigned long long)vi->n_params, vi->name);
    api_set_engine(s->api, s->engine);
    struct engine_metrics em;
    engine_get_metrics(s->engine, &em);
    SA_LOGI("ready on http://%s:%u: model id %s, %u threads, %u slots, KV budget %.1f MiB (%u pages), chat template "
            "%s, plan %s (sharing %s by default)",
            s->cfg.host, (unsigned)http_port(s->http), s->cfg.served_model_name[0] ? s->cfg.served_model_name : info->name,
            s->cfg.threads, s->cfg.slots, (double)em.kv_bytes_capacity / 1048576.0, em.kv_pages_total,
            api_chat_template(s->api), info->default_spans, s->cfg.share ? "on" : "off");
    fflush(stderr);
}

int serve_main(int argc, char **argv)
{
    static struct server srv; /* one per process */
    struct server *s = &srv;
    char msg[512];
    bool help = false;
    if (config_load(&s->cfg, argc, argv, environ, &help, msg, sizeof msg) != 0) {
        fprintf(stderr, "saserve: %s\n", msg);
        return 1;
    }
    if (help) {
        fprintf(stdout, "usage: saserve serve [--config FILE] [options]\n"
                        "Options (each also a JSON key in the config file and a SASERVE_* variable):\n");
        config_print_help(stdout);
        return 0;
    }
    sa_log_set_level(parse_level(s->cfg.log_level));
    if (!s->cfg.model[0]) {
        fprintf(stderr, "saserve: config: model: no model given (use -m/--model, the config file or SASERVE_MODEL)\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct engine_config ec = engine_default_config();
    ec.model_path = s->cfg.model;
    ec.vision_model_path = s->cfg.vision_model;
    ec.vision_max_images = s->cfg.vision_max_batch;
    ec.vision_queue_max = s->cfg.vision_queue_max;
    ec.n_threads = (int)s->cfg.threads;
    ec.n_ctx = s->cfg.ctx;
    ec.n_slots = s->cfg.slots;
    ec.kv_budget = s->cfg.kv_budget;
    ec.kv_block = s->cfg.kv_block;
    ec.prefix_cache = s->cfg.prefix_cache;
    ec.kv_f16 = s->cfg.kv_f16;
    ec.queue_max = s->cfg.queue_max;
    ec.prefill_chunk = s->cfg.prefill_chunk;
    ec.queue_max_tokens = s->cfg.queue_max_tokens;
    ec.use_mmap = s->cfg.mmap;
    ec.share_spans = s->cfg.share_spans;
    ec.share_default = s->cfg.share;
    ec.share_threshold = s->cfg.share_threshold;
    ec.rebalance.on = s->cfg.rebalance;
    ec.rebalance.alpha = s->cfg.rebalance_alpha;
    ec.rebalance.tau = s->cfg.rebalance_tau;
    ec.rebalance.renormalize = s->cfg.rebalance_renormalize;
    s->ec = ec;
    uv_loop_init(&s->loop);
    s->api = api_create(&s->loop, &s->cfg);
    struct http_options ho = {.host = s->cfg.host, .port = (uint16_t)s->cfg.port, .max_body = s->cfg.max_body,
                              .max_connections = s->cfg.max_connections,
                              .per_ip_connections = s->cfg.per_ip_connections,
                              .conn_memory = (size_t)s->cfg.connection_memory,
                              .max_stream_pending = (size_t)s->cfg.max_stream_buffer,
                              .cors_origins = s->cfg.cors_origins,
                              .idle_timeout_s = s->cfg.idle_timeout, .request_timeout_s = s->cfg.request_timeout,
                              .heartbeat_ms = 1000};
    struct http_handlers hh = api_http_handlers();
    int rc;
    if (!s->api || (rc = http_start(&s->loop, &ho, &hh, s->api, &s->http, msg, sizeof msg)) != 0) {
        fprintf(stderr, "saserve: %s\n", s->api ? msg : "out of memory");
        return 1;
    }
    api_attach(s->api, s->http);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_timer_init(&s->loop, &s->drain_check);
    uv_timer_init(&s->loop, &s->grace);
    uv_async_init(&s->loop, &s->loaded, on_loaded);
    s->sigterm.data = s->sigint.data = s->drain_check.data = s->grace.data = s->loaded.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    /* /health answers 503 server_unavailable while the model loads on its own thread */
    SA_LOGI("listening on http://%s:%u; loading %s", s->cfg.host, (unsigned)http_port(s->http), s->cfg.model);
    fflush(stderr);
    s->loading = true;
    if (pthread_create(&s->loader, NULL, load_main, s) != 0) {
        s->loading = false;
        fprintf(stderr, "saserve: cannot start the loader thread\n");
        return 1;
    }
    uv_run(&s->loop, UV_RUN_DEFAULT); /* returns once stop_all closed every handle */
    uv_loop_close(&s->loop);
    SA_LOGI("shutdown complete");
    return s->exit_code;
}
