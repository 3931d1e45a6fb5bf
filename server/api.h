/*
 * api.h - the endpoints: /v1/completions, /v1/chat/completions, /v1/models,
 * /health, /metrics. Joins the HTTP layer (http.h), request parsing
 * (request.h), the engine (engine/engine.h), responses (response.h) and
 * metrics (metrics.h).
 *
 * Threads: everything runs on the libuv loop thread except the engine's
 * request callback (on_engine_event in api.c), which the engine calls on its
 * step thread: it copies the event into a locked queue and wakes the loop with
 * uv_async_send (the only cross-thread hand-off, STYLE.md practice 9). The
 * loop drains the whole queue per wake-up. The final event of a sequence
 * (DONE or ERROR) uses an item allocated with the sequence, so it always
 * arrives and the job is always freed.
 *
 * Lifetime of one HTTP request ("job"): one reference held by the HTTP side
 * (dropped in on_closed) and one per engine sequence (dropped at its DONE or
 * ERROR event); the job is freed at zero. A client that goes away cancels
 * the job's sequences in the engine.
 */
#ifndef SA_API_H
#define SA_API_H

#include <stdbool.h>

struct api;
struct config;
struct engine;
struct http_server;
struct uv_loop_s;

/* The configuration is borrowed and must outlive the api. Until api_set_engine
 * the api answers every request 503 server_unavailable (the model is loading),
 * /health too, /metrics without the engine's figures. */
struct api *api_create(struct uv_loop_s *loop, const struct config *cfg);
/* The loaded engine (borrowed; must outlive the api): requests are served from now on. */
void api_set_engine(struct api *a, struct engine *e);
/* Call after http_start; the api answers through it. */
void api_attach(struct api *a, struct http_server *http);
/* Handlers to pass to http_start (app = the api). */
struct http_handlers api_http_handlers(void);
/* SIGTERM: /health and new work answer 503 from now on. */
void api_set_draining(struct api *a, bool draining);
/* Requests whose engine work is not finished. */
unsigned api_jobs_in_flight(const struct api *a);
/* The chat format /v1/chat/completions renders with ("llama2", "chatml", "llama3"). */
const char *api_chat_template(const struct api *a);
/* Grace period over: cancel every running sequence (streams end with an error event). */
void api_cancel_all(struct api *a);
/* Frees the api after every job has ended (closes its uv handle). */
void api_destroy(struct api *a);

#endif
