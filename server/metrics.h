/*
 * metrics.h - Prometheus text exposition (format 0.0.4) for GET /metrics.
 *
 * Every family is prefixed "saserve_" and has # HELP and # TYPE lines.
 * Labels come only from fixed sets (RELIABILITY.md D8): endpoint from enum
 * metrics_endpoint, status from a fixed list (anything else is "other"),
 * kind k|v, mode on|off; the one free-form value, the model name in
 * saserve_model_info, is escaped (\\, \", \n) and made valid UTF-8. Nothing
 * from a request (path, query, user, model field) ever becomes a label.
 *
 * Families:
 *   saserve_up                                 gauge     1
 *   saserve_model_info{model}                  gauge     1
 *   saserve_requests_total{endpoint,status}    counter   status: 200 204 304 400 401 404 405 408 413 414 429 431 499 500 501 503 other
 *      (499 = the client closed the connection before the answer was complete)
 *   saserve_request_duration_seconds{endpoint} histogram
 *   saserve_time_to_first_token_seconds        histogram
 *      buckets .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 30 60 +Inf
 *   saserve_prompt_tokens_total                counter   (metrics_tokens)
 *   saserve_generated_tokens_total             counter   (metrics_tokens)
 *   saserve_kv_bytes_saved_total               counter   (metrics_kv_saved: a gauge alone cannot be rate()d)
 *   saserve_requests_shared_attention_total{mode="on|off"}  counter
 *   saserve_requests_rebalance_total{mode="on|off"}         counter
 *   from struct engine_metrics at render time (omitted when em is NULL):
 *   saserve_queue_depth, saserve_queue_capacity, saserve_queue_tokens,
 *   saserve_active_sequences, saserve_active_sequences_peak,
 *   saserve_slots                                           gauges
 *   saserve_kv_bytes_used{kind="k|v"}, saserve_kv_bytes_capacity,
 *   saserve_kv_bytes_saved{kind="k|v"}                      gauges
 *   saserve_kv_pages{state="total|used|reserved|held|cached"},
 *   saserve_kv_page_bytes                                   gauges
 *   saserve_prefix_cache_hits_total, saserve_prefix_cache_tokens_total,
 *   saserve_engine_steps_total                              counters
 *   with a vision model (metrics_vision_model called; model = its validated name):
 *   saserve_vision_requests_total{model,mode,status}  counter  mode: off identity sr inpaint none
 *      ("none": rejected before a mode was known)
 *   saserve_vision_request_duration_seconds{model}    histogram (the buckets above)
 *   saserve_vision_images_total{model,mode}           counter   images classified (rate = images/s)
 *   saserve_vision_queue_depth                        gauge     (from struct engine_metrics)
 *
 * Threads: every update and the rendering run on the single HTTP loop
 * thread, so the counters are plain integers with no locking. Calling from
 * another thread is a bug.
 */
#ifndef SA_METRICS_H
#define SA_METRICS_H

#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metrics_endpoint {
    METRICS_EP_COMPLETIONS = 0, /* "completions" */
    METRICS_EP_CHAT,            /* "chat_completions" */
    METRICS_EP_MODELS,          /* "models" */
    METRICS_EP_HEALTH,          /* "health" */
    METRICS_EP_METRICS,         /* "metrics" */
    METRICS_EP_V2_INFER,        /* "v2_infer": POST /v2/models/{name}/infer */
    METRICS_EP_V2_MODELS,       /* "v2_models": GET /v2/models/{name}[/ready] */
    METRICS_EP_V2_HEALTH,       /* "v2_health": GET /v2/health/ready|live */
    METRICS_EP_TOKENIZE,        /* "tokenize": POST /tokenize and /detokenize */
    METRICS_EP_EMBEDDINGS,      /* "embeddings": POST /v1/embeddings */
    METRICS_EP_UI,              /* "ui": GET / and /ui/{file} (the web page) */
    METRICS_EP_SIMILARITY,      /* "similarity": GET /v1/models/{id}/similarity.png */
    METRICS_EP_OTHER,           /* "other": unknown paths and anything else */
    METRICS_EP_COUNT
};

struct metrics;

/* NULL on out of memory. metrics_destroy accepts NULL. */
struct metrics *metrics_create(void);
void metrics_destroy(struct metrics *m);

/* One finished request: endpoint (out-of-range values count as "other"),
 * HTTP status, seconds from arrival to the last byte queued (negative or
 * non-finite values count as 0). */
void metrics_request_done(struct metrics *m, enum metrics_endpoint ep, int status, double seconds);
/* Time from arrival to the first generated token of a request. */
void metrics_first_token(struct metrics *m, double seconds);
/* Tokens of a finished request. */
void metrics_tokens(struct metrics *m, uint64_t prompt, uint64_t generated);
/* KV bytes a finished request did not store thanks to Shared Attention (its cache.kv_bytes_saved). */
void metrics_kv_saved(struct metrics *m, uint64_t bytes);
/* Settings a generation request ran with. */
void metrics_sharing(struct metrics *m, bool share_on, bool rebalance_on);

/* The vision model's name (enables the saserve_vision_* families; copied, at most 63 bytes). */
void metrics_vision_model(struct metrics *m, const char *name);
/* One finished /v2 infer request: mode (enum phidnn_mode, or -1 if unknown), status, seconds,
 * images classified (0 for a rejected request). */
void metrics_vision_request(struct metrics *m, int mode, int status, double seconds, uint32_t images);

/* One line for the log at shutdown, so the last counts survive the process:
 * "ENDPOINT/STATUS=N ..." for every non-zero request counter, then
 * "prompt_tokens=N generated_tokens=N". Truncated to cap. */
void metrics_summary(const struct metrics *m, char *buf, size_t cap);

/* The exposition text; malloc'd, caller frees; *len (if len) = strlen.
 * em may be NULL (engine gauges omitted); model_name may be NULL (""). NULL
 * on out of memory. */
char *metrics_render(const struct metrics *m, const struct engine_metrics *em, const char *model_name,
                     size_t *len);

#endif
