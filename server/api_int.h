/*
 * api_int.h - the api module's own parts, shared by its files (api.h is its
 * public face). The api is split by job:
 *   api.c     routing (a table of handlers), authorisation, the simple
 *             endpoints (with the web page's files and the similarity PNG),
 *             the one place error answers are sent, the lifecycle
 *   job.c     a generation request's job: its references and the engine ->
 *             loop event queue (the only cross-thread hand-off)
 *   submit.c  a parsed request turned into engine work (tokenizing, the plan,
 *             one engine request per choice)
 *   answer.c  what the client receives: the text and logprobs as they come,
 *             SSE chunks, the whole answer, the log line
 *   v2.c      the Open Inference Protocol (KServe v2) for the vision model
 * Functions named api__* are internal to these files.
 *
 * Threads: the libuv loop thread, except api__on_engine_event, which the
 * engine calls on its step thread (it only queues the event and wakes the
 * loop), and the vision callback in v2.c (the same pattern).
 */
#ifndef SA_API_INT_H
#define SA_API_INT_H

#include "api.h"

#include "config/config.h"
#include "engine/chat.h"
#include "engine/engine.h"
#include "http.h"
#include "infer.h"
#include "metrics.h"
#include "request.h"
#include "response.h"
#include "tools.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The status a client saw: STATUS_CLIENT_CLOSED (499) when it left before the answer. */
#define STATUS_CLIENT_CLOSED 499

struct job;
struct job_seq;
struct vjob;

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
    struct response_token_logprob *lps; /* echo with logprobs: the prompt's tokens first */
    size_t n_lps, cap_lps;
    size_t echo_len;    /* bytes of text that are the echoed prompt (its start) */
    bool prompt_lp;     /* the engine scores the prompt: PROMPT events come first */
    uint32_t prompt_cum; /* bytes of the prompt's token texts so far (PROMPT events) */
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
    float *embd; /* embeddings: [n_embd] filled on the step thread before the final event is queued */
    uint32_t n_embd;
    /* function calling (job.n_tools > 0): the text already streamed as content, whether a
     * call has begun (the rest is held), and the calls parsed when the sequence ended */
    size_t sent;
    bool call_started;
    struct tools_parsed tools;
    struct response_tool_call *calls; /* [tools.n_calls], views of tools + ids */
    char (*call_ids)[40];
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
    bool stream_cut;     /* an event could not be sent: the stream was cut (answer.c) */
    bool base64;         /* embeddings: encoding_format base64 */
    /* "grammar" / "response_format" / "tools" (static) or NULL: names a grammar's dead end */
    const char *grammar_param;
    char **tool_names;   /* [n_tools]: the tools offered, when the output is parsed for calls (tool_choice not none) */
    size_t n_tools;
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
    const char *model_name; /* the id clients see: served_model_name, or the model's own */
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

static inline double api__now_s(void) { return (double)uv_hrtime() * 1e-9; }

/* api.c: every answer that is an error goes out through api__send_error (the
 * one error path: response.c's table, Retry-After on 503); api__send_json
 * sends a JSON body and counts the request in the metrics. */
void api__send_json(struct api *a, struct http_request *r, enum metrics_endpoint ep, int status, char *json,
                    size_t len, const char *const *headers);
void api__send_error(struct api *a, struct http_request *r, enum metrics_endpoint ep, const struct api_error *err);
void api__send_http_error(struct api *a, struct http_request *r, enum metrics_endpoint ep,
                          enum response_http_error kind, const char *param, const char *message);
void api__send_method_not_allowed(struct api *a, struct http_request *r, enum metrics_endpoint ep, const char *allow);
void api__send_unauthorized(struct api *a, struct http_request *r, enum metrics_endpoint ep);
bool api__authorized(struct api *a, struct http_request *r);
uint64_t api__pick_seed(struct api *a);

/* job.c */
void api__seq_free_contents(struct job_seq *s);
void api__job_free_tools(struct job *j); /* tool_names */
void api__job_unref(struct job *j);
void api__job_unlink(struct job *j);
void api__job_cancel_all(struct job *j);
/* The engine's request callback (step thread). */
void api__on_engine_event(void *user, const struct engine_event *ev);
/* The loop's wake-up: drain the engine's events (and the vision results). */
void api__drain_events(uv_async_t *h);
/* The HTTP side of a generation job closed; false if r is not one. */
bool api__job_closed(struct api *a, struct http_request *r, bool client_gone);

/* submit.c: POST /v1/completions and /v1/chat/completions. */
void api__handle_generate(struct api *a, struct http_request *r, enum request_kind kind);

/* answer.c */
void api__append_text(struct job_seq *s, const char *p, size_t n);
/* A token of sequence s: its text, its logprobs, and the SSE chunk of a stream. */
void api__answer_token(struct job_seq *s, const struct engine_event *ev, const char *text);
/* A prompt token's logprobs (echo with logprobs); after the last one, a stream's
 * first chunk: the echoed prompt with them. */
void api__answer_prompt_token(struct job_seq *s, const struct engine_event *ev);
/* A stream's first chunk: the echoed prompt (echo without logprobs). */
void api__answer_echo(struct job_seq *s);
/* Sequence s finished (a stream: its finishing chunk). */
void api__answer_seq_done(struct job_seq *s);
/* A sequence ended (job.c, before api__answer_seq_done): with tools offered, its
 * text parsed for calls (tools.h), finish "stop" then becomes "tool_calls". 0 or
 * SA_ERR_NOMEM. */
int api__answer_tools(struct job_seq *s);
/* Every sequence of j is over: the whole answer, or the stream's end. */
void api__answer_job(struct job *j);

/* v2.c */
void api__handle_v2(struct api *a, struct http_request *r, const char *path, const char *method);
bool api__v2_closed(struct api *a, struct http_request *r, bool client_gone);
void api__v2_drain(struct api *a);

#endif
