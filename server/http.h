/*
 * http.h - libmicrohttpd driven from a libuv loop (RELIABILITY.md section 5).
 *
 * MHD runs in external-loop epoll mode: its epoll fd is a uv_poll handle and
 * its timeout a uv_timer, so every MHD call, and every callback into the
 * application, happens on the one loop thread. No lock guards HTTP state.
 *
 * Per request the application sees one struct http_request: on_request is
 * called once the headers and the whole body (capped at max_body: 413) have
 * arrived. The application answers right away or later (from the loop thread)
 * with http_respond, or streams with http_stream_begin/write/end; until then
 * the connection is suspended. on_closed is the last call that mentions a
 * request: after it returns the request is freed and the application must
 * drop every pointer to it. It reports whether the client went away before
 * the answer was complete (disconnect -> cancel the work).
 *
 * Framing (RFC 9112, for a server that may sit behind a proxy): sockets are
 * accepted by our own front door, which looks at the head of the first request
 * before MHD reads it: non-HTTP bytes (TLS) -> 400, request line over
 * conn_memory -> 414, head over conn_memory -> 431, a first chunk declared
 * over max_body -> 413, head not complete within request_timeout -> 408. Every
 * request then: Content-Length not a plain decimal, or given twice with
 * different values, or with Transfer-Encoding -> 400; Transfer-Encoding other
 * than exactly "chunked" -> 501. All of these are JSON errors, counted through
 * on_early_reply, and the connection is closed. Known limit (libmicrohttpd
 * 0.9.75): a chunk size line that arrives after the door handed the socket on
 * is only caught when the bytes exceed max_body (413) or at request_timeout (408).
 *
 * While a connection is suspended MHD cannot notice a disconnect, so a
 * heartbeat timer (every heartbeat_ms) writes an SSE comment to idle streams
 * and probes waiting non-streaming sockets with recv(MSG_PEEK); a closed peer
 * makes on_closed fire with client_gone = true.
 */
#ifndef SA_HTTP_H
#define SA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;
struct http_server;
struct http_request;

struct http_handlers {
    void (*on_request)(void *app, struct http_request *r);
    void (*on_closed)(void *app, struct http_request *r, bool client_gone);
    /* optional: the HTTP layer answered by itself (400/501 framing, 413, 414, 431,
     * 408, escaped path 404, 429 over per_ip_connections, 503 over max_connections);
     * path is "" when no request line was read */
    void (*on_early_reply)(void *app, const char *path, int status);
};

struct http_options {
    const char *host;      /* numeric IPv4/IPv6 address */
    uint16_t port;         /* 0 = pick a free port (see http_port) */
    size_t max_body;       /* bytes; larger bodies get 413 */
    unsigned max_connections, per_ip_connections; /* answered 503 / 429 above */
    size_t conn_memory;    /* MHD per-connection pool: request line and headers */
    size_t max_stream_pending; /* stream bytes a client has not taken; more cuts it (0 = no cap) */
    const char *cors_origins;  /* CORS: NULL/"" off, "*" any, or a comma-separated list of origins (borrowed).
                                * A request whose Origin is allowed gets Access-Control-Allow-Origin on its
                                * answer; a preflight OPTIONS from it is answered 204 here, never routed. */
    unsigned idle_timeout_s;    /* MHD inactivity timeout */
    unsigned request_timeout_s; /* headers + body deadline (408) */
    unsigned heartbeat_ms;
};

/* Starts listening. msg names the problem (bad host, port in use). */
int http_start(struct uv_loop_s *loop, const struct http_options *o, const struct http_handlers *h, void *app,
               struct http_server **out, char *msg, size_t msg_len);
uint16_t http_port(const struct http_server *s);
/* Stop accepting new connections (SIGTERM). In-flight requests continue. */
void http_quiesce(struct http_server *s);
/* Number of requests not yet closed. */
unsigned http_open_requests(const struct http_server *s);
/* Stops the daemon (all requests must have been answered) and closes the
 * uv handles; the server is freed in their close callbacks. */
void http_stop(struct http_server *s);

/* ---- the request ---- */
const char *http_method(const struct http_request *r);
const char *http_path(const struct http_request *r);
const char *http_body(const struct http_request *r, size_t *len);
const char *http_header(const struct http_request *r, const char *name); /* NULL if absent */
/* Calls fn for every query argument in order; stops at the first non-zero return. */
int http_query_each(struct http_request *r, int (*fn)(void *ctx, const char *key, const char *value), void *ctx);
void http_set_user(struct http_request *r, void *user);
/* The request's id: sent as X-Request-Id on its answer, and on its log line. */
const char *http_request_id(const struct http_request *r);
/* Every request gets one log line when it ends (id, method, path, status, time);
 * the application may add its details to it (printf-style, replaces the last note). */
void http_log_note(struct http_request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *http_user(const struct http_request *r);
double http_age_s(const struct http_request *r); /* seconds since the request started */
/* The client closed its connection before the answer went out (the heartbeat
 * probe saw it); whatever the application answers now is never delivered. */
bool http_client_gone(const struct http_request *r);

/* Complete answer; body is copied. extra_headers: NULL or "Name: value" strings, NULL-terminated. */
void http_respond(struct http_request *r, int status, const char *content_type, const char *body, size_t len,
                  const char *const *extra_headers);
/* Server-sent events: headers now, then chunks, then end. http_stream_write
 * returns 0, or an error after which the connection is cut (the client sees
 * the stream end without its last events; on_closed follows with client_gone):
 * SA_ERR_TOO_LARGE when the client has not taken max_stream_pending bytes (a
 * slow reader is not buffered without limit), SA_ERR_NOMEM when the chunk
 * could not be kept (never a silent gap in the stream), SA_ERR_CANCELLED when
 * the stream is not open (ended, cut, never begun). */
void http_stream_begin(struct http_request *r, int status);
int http_stream_write(struct http_request *r, const char *data, size_t len);
void http_stream_end(struct http_request *r);
/* Cut a stream whose next event cannot be built (out of memory): as a failed write. */
void http_stream_abort(struct http_request *r);
/* Bytes written to a stream but not yet taken by the client. */
size_t http_stream_pending(const struct http_request *r);

#endif
