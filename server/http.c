/*
 * http.c - libmicrohttpd glue (see http.h). The only file that includes
 * microhttpd.h. Everything here runs on the libuv loop thread.
 */
#define _DEFAULT_SOURCE
#include "http.h"

#include "engine/errors.h"
#include "engine/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

enum req_state {
    REQ_READING,   /* headers/body arriving */
    REQ_WAITING,   /* handed to the application, no answer yet */
    REQ_ANSWERED,  /* a response (complete or stream) is ready to queue */
    REQ_QUEUED,    /* MHD owns the response */
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct http_request *prev, *next; /* open requests */
    enum req_state state;
    char method[16];
    char *path;
    char *body;
    size_t body_len, body_cap;
    bool too_large, timed_out, encoded_path, app_seen, suspended, streaming, stream_ended, gone, cut;
    double t_start;
    void *user;
    struct MHD_Response *resp;
    int status;
    char *sbuf; /* stream bytes not yet taken by MHD */
    size_t s_len, s_off, s_cap;
};

/* One open connection (MHD's socket context): its address's counter and
 * whether it arrived over a limit (then its first request is answered 429 or
 * 503 and the connection closed). */
enum conn_verdict { CONN_OK, CONN_OVER_PER_IP, CONN_OVER_TOTAL };

struct ip_count {
    struct ip_count *next;
    unsigned char addr[16];
    unsigned len, count;
};

struct http_conn {
    struct ip_count *ip;
    enum conn_verdict verdict;
};

#define HTTP_IP_BUCKETS 256

struct http_server {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;     /* MHD's own timeout */
    uv_timer_t heartbeat;
    uv_timer_t kick;      /* run MHD soon after a resume */
    struct http_options o;
    struct http_handlers h;
    void *app;
    struct http_request *open;
    unsigned n_open;
    unsigned n_handles; /* uv handles still to close */
    unsigned n_conns;   /* open connections */
    struct ip_count *ip_buckets[HTTP_IP_BUCKETS];
    uint16_t port;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_mhd(struct http_server *s);

static void on_timer(uv_timer_t *t) { run_mhd(t->data); }

static void schedule_run(struct http_server *s)
{
    if (!uv_is_active((uv_handle_t *)&s->kick)) uv_timer_start(&s->kick, on_timer, 0, 0);
}

static void run_mhd(struct http_server *s)
{
    if (!s->d) return;
    MHD_run(s->d);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->d, &ms) == MHD_YES)
        uv_timer_start(&s->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&s->timer);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void resume(struct http_request *r)
{
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        schedule_run(r->srv);
    }
}

static void suspend(struct http_request *r)
{
    if (!r->suspended) {
        r->suspended = true;
        MHD_suspend_connection(r->conn);
    }
}

/* ---- streaming ---- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct http_request *r = cls;
    size_t avail = r->s_len - r->s_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->sbuf + r->s_off, n);
        r->s_off += n;
        if (r->s_off == r->s_len) r->s_off = r->s_len = 0;
        return (ssize_t)n;
    }
    if (r->stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
    suspend(r); /* woken by http_stream_write/end or the heartbeat */
    return 0;
}

static void stream_append(struct http_request *r, const char *data, size_t len)
{
    if (r->s_off && r->s_off == r->s_len) r->s_off = r->s_len = 0;
    if (r->s_len + len > r->s_cap) {
        if (r->s_off) { /* compact first */
            memmove(r->sbuf, r->sbuf + r->s_off, r->s_len - r->s_off);
            r->s_len -= r->s_off;
            r->s_off = 0;
        }
        if (r->s_len + len > r->s_cap) {
            size_t cap = (r->s_len + len) * 2 + 256;
            char *nb = realloc(r->sbuf, cap);
            if (!nb) return; /* the client loses this chunk; nothing else breaks */
            r->sbuf = nb;
            r->s_cap = cap;
        }
    }
    memcpy(r->sbuf + r->s_len, data, len);
    r->s_len += len;
}

/* ---- queueing answers (inside the access handler only) ---- */

static enum MHD_Result queue_answer(struct http_request *r)
{
    r->state = REQ_QUEUED;
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
    MHD_destroy_response(r->resp); /* MHD keeps its own reference */
    r->resp = NULL;
    return ok;
}

static struct MHD_Response *make_response(const char *ctype, const char *body, size_t len,
                                          const char *const *extra)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return NULL;
    if (ctype) MHD_add_response_header(resp, "Content-Type", ctype);
    for (size_t i = 0; extra && extra[i]; i++) {
        const char *colon = strchr(extra[i], ':');
        if (!colon) continue;
        char name[128];
        size_t n = (size_t)(colon - extra[i]);
        if (n >= sizeof name) continue;
        memcpy(name, extra[i], n);
        name[n] = 0;
        const char *v = colon + 1;
        while (*v == ' ') v++;
        MHD_add_response_header(resp, name, v);
    }
    return resp;
}

static enum MHD_Result reply_now(struct http_request *r, int status, const char *msg, const char *type,
                                 const char *code, const char *const *extra)
{
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"error\": {\"message\": \"%s\", \"type\": \"%s\", \"param\": null, \"code\": \"%s\"}}", msg,
                     type, code);
    r->resp = make_response("application/json", body, (size_t)n, extra);
    if (!r->resp) return MHD_NO;
    r->status = status;
    return queue_answer(r);
}

/* ---- MHD callbacks ---- */

/* Called with the raw request URI before MHD unescapes it; its return value
 * becomes the request's context. A path with percent-escapes is refused (404)
 * so that routing and auth never see two spellings of one path (RELIABILITY D6). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_server *s = cls;
    struct http_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = s;
    r->conn = conn;
    r->t_start = mono_s();
    size_t path_len = strcspn(uri, "?");
    r->encoded_path = memchr(uri, '%', path_len) != NULL;
    r->next = s->open;
    if (s->open) s->open->prev = r;
    s->open = r;
    s->n_open++;
    return r;
}

/* An answer the application never saw (413, 408, 404 for an escaped path):
 * tell it, for the metrics. */
static enum MHD_Result reply_early_h(struct http_request *r, int status, const char *msg, const char *type,
                                     const char *code, const char *const *extra)
{
    if (r->srv->h.on_early_reply)
        r->srv->h.on_early_reply(r->srv->app, r->path && !r->encoded_path ? r->path : "", status);
    return reply_now(r, status, msg, type, code, extra);
}

static enum MHD_Result reply_early(struct http_request *r, int status, const char *msg, const char *type,
                                   const char *code)
{
    return reply_early_h(r, status, msg, type, code, NULL);
}

/* ---- connection limits: counted here, answered in on_access ---- */

static unsigned ip_hash(const unsigned char *a, unsigned len)
{
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++) h = (h ^ a[i]) * 16777619u;
    return h % HTTP_IP_BUCKETS;
}

/* The address bytes of a client (IPv4 or IPv6); 0 when unknown. */
static unsigned conn_addr(struct MHD_Connection *conn, unsigned char out[16])
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct http_conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        s->n_conns++;
        unsigned char a[16];
        unsigned len = conn_addr(conn, a);
        if (!c) return;
        unsigned h = ip_hash(a, len);
        struct ip_count *e = s->ip_buckets[h];
        while (e && !(e->len == len && memcmp(e->addr, a, len) == 0)) e = e->next;
        if (!e && (e = calloc(1, sizeof *e)) != NULL) {
            memcpy(e->addr, a, len);
            e->len = len;
            e->next = s->ip_buckets[h];
            s->ip_buckets[h] = e;
        }
        c->ip = e;
        if (e) e->count++;
        if (e && e->count > s->o.per_ip_connections) c->verdict = CONN_OVER_PER_IP;
        else if (s->n_conns > s->o.max_connections) c->verdict = CONN_OVER_TOTAL;
        return;
    }
    struct http_conn *c = *socket_context;
    *socket_context = NULL;
    s->n_conns--;
    if (!c) return;
    struct ip_count *e = c->ip;
    if (e && --e->count == 0) {
        struct ip_count **pp = &s->ip_buckets[ip_hash(e->addr, e->len)];
        while (*pp && *pp != e) pp = &(*pp)->next;
        if (*pp) *pp = e->next;
        free(e);
    }
    free(c);
}

static enum conn_verdict conn_verdict(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const struct http_conn *c = ci ? ci->socket_context : NULL;
    return c ? c->verdict : CONN_OK;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)version;
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    if (!r) return MHD_NO; /* on_uri could not allocate */
    if (!r->path) { /* first call: headers are in */
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = strdup(url);
        if (!r->path) return MHD_NO;
        enum conn_verdict cv = conn_verdict(conn);
        if (cv == CONN_OVER_PER_IP) {
            static const char *const h429[] = {"Retry-After: 1", "Connection: close", NULL};
            return reply_early_h(r, 429, "too many connections from this address (per_ip_connections)",
                                 "rate_limit_error", "rate_limit_exceeded", h429);
        }
        if (cv == CONN_OVER_TOTAL) {
            static const char *const h503[] = {"Retry-After: 1", "Connection: close", NULL};
            return reply_early_h(r, 503, "too many open connections (max_connections)", "server_error",
                                 "server_busy", h503);
        }
        if (r->encoded_path)
            return reply_early(r, 404, "no such endpoint", "invalid_request_error", "unknown_url");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || v > s->o.max_body) r->too_large = true;
        }
        if (r->too_large)
            return reply_early(r, 413, "request body exceeds the configured max_body", "invalid_request_error",
                               "request_too_large");
        return MHD_YES;
    }
    if (r->state == REQ_QUEUED) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large) return MHD_YES;
        if (r->body_len + n > s->o.max_body) {
            r->too_large = true;
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return MHD_YES;
        }
        if (r->timed_out) return MHD_YES;
        if (mono_s() - r->t_start > s->o.request_timeout_s) {
            /* MHD 0.9.75 takes no answer while the body is arriving: answer once it has */
            r->timed_out = true;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = (r->body_len + n + 1) * 2;
            if (cap > s->o.max_body + 1) cap = s->o.max_body + 1;
            char *nb = realloc(r->body, cap);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = 0;
        return MHD_YES;
    }
    /* no more upload data: the request is complete, or we were resumed */
    if (r->too_large)
        return reply_early(r, 413, "request body exceeds the configured max_body", "invalid_request_error",
                           "request_too_large");
    if (r->timed_out)
        return reply_early(r, 408, "request not received within request_timeout", "invalid_request_error",
                           "request_timeout");
    if (r->state == REQ_READING) {
        r->state = REQ_WAITING;
        r->app_seen = true;
        s->h.on_request(s->app, r);
    }
    if (r->state == REQ_ANSWERED) return queue_answer(r);
    suspend(r); /* the answer comes later from the loop */
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    bool gone = r->gone || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (r->app_seen) s->h.on_closed(s->app, r, gone);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->open = r->next;
    if (r->next) r->next->prev = r->prev;
    s->n_open--;
    if (r->resp) MHD_destroy_response(r->resp);
    free(r->path);
    free(r->body);
    free(r->sbuf);
    free(r);
}

/* ---- heartbeat: keep-alives for idle streams, probes for waiting sockets ---- */

/* Headers still incomplete after request_timeout (slowloris: a header line now
 * and then keeps MHD's inactivity timeout from firing). MHD 0.9.75 cannot
 * answer before the headers are in, so write a bare 408 on the socket and shut
 * it down: MHD then sees the end of the stream and closes the connection
 * (on_completed follows). Counted as 408 like the body deadline. */
static void cut_slow_headers(struct http_server *s, struct http_request *r, double now)
{
    if (r->path || r->cut || now - r->t_start <= s->o.request_timeout_s) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return;
    static const char resp[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    ssize_t n = send(ci->connect_fd, resp, sizeof resp - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n; /* best effort: the client may be gone already */
    shutdown(ci->connect_fd, SHUT_RDWR);
    r->cut = true;
    if (s->h.on_early_reply) s->h.on_early_reply(s->app, "", 408);
    SA_LOGD("http: headers not complete after %u s: connection closed (408)", s->o.request_timeout_s);
    schedule_run(s);
}

static void on_heartbeat(uv_timer_t *t)
{
    struct http_server *s = t->data;
    double now = mono_s();
    for (struct http_request *r = s->open; r; r = r->next) {
        cut_slow_headers(s, r, now);
        if (!r->suspended) continue;
        if (r->streaming) {
            static const char ka[] = ": keep-alive\n\n";
            stream_append(r, ka, sizeof ka - 1);
            resume(r);
            continue;
        }
        if (r->state != REQ_WAITING) continue;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) continue;
        char b;
        ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            /* peer closed: answer so MHD notices, which ends in on_closed(client_gone) */
            r->gone = true;
            static const char body[] = "{\"error\": {\"message\": \"client closed the connection\", \"type\": \"server_error\", \"param\": null, \"code\": \"client_closed\"}}";
            r->resp = make_response("application/json", body, sizeof body - 1, NULL);
            r->status = 499;
            if (r->resp) {
                r->state = REQ_ANSWERED;
                resume(r);
            }
        }
    }
}

/* ---- public ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    SA_LOGD("http: %s", line);
}

int http_start(uv_loop_t *loop, const struct http_options *o, const struct http_handlers *h, void *app,
               struct http_server **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) return SA_ERR_NOMEM;
    s->loop = loop;
    s->o = *o;
    s->h = *h;
    s->app = app;
    if (!s->o.heartbeat_ms) s->o.heartbeat_ms = 1000;
    if (!s->o.conn_memory) s->o.conn_memory = 64 * 1024;
    /* MHD's own caps sit a little above ours: connections between the two get
     * a 429 / 503 answer, beyond them MHD refuses silently; fds stay bounded. */
    unsigned hard_total = o->max_connections + (o->max_connections / 8 > 16 ? o->max_connections / 8 : 16);
    unsigned hard_ip = o->per_ip_connections + (o->per_ip_connections / 4 > 8 ? o->per_ip_connections / 4 : 8);
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, o->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(o->port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, o->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(o->port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(msg, msg_len, "host: '%s' is not a numeric IPv4 or IPv6 address", o->host);
        free(s);
        return SA_ERR_INVALID_ARG;
    }
    s->d = MHD_start_daemon(flags, o->port, NULL, NULL, on_access, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_CONNECTION_LIMIT, hard_total,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, hard_ip,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->o.conn_memory,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                            MHD_OPTION_STRICT_FOR_CLIENT, 1,
                            MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                            MHD_OPTION_END);
    if (!s->d) {
        snprintf(msg, msg_len, "port: cannot listen on %s:%u (in use, or not permitted)", o->host, (unsigned)o->port);
        free(s);
        return SA_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        snprintf(msg, msg_len, "libmicrohttpd: no epoll fd");
        MHD_stop_daemon(s->d);
        free(s);
        return SA_ERR_INTERNAL;
    }
    uv_poll_init(loop, &s->poll, di->epoll_fd);
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->heartbeat);
    uv_timer_init(loop, &s->kick);
    s->poll.data = s->timer.data = s->heartbeat.data = s->kick.data = s;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    uv_timer_start(&s->heartbeat, on_heartbeat, s->o.heartbeat_ms, s->o.heartbeat_ms);
    run_mhd(s);
    *out = s;
    return 0;
}

uint16_t http_port(const struct http_server *s) { return s->port; }
unsigned http_open_requests(const struct http_server *s) { return s->n_open; }

void http_quiesce(struct http_server *s)
{
    if (!s->d) return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    if (--s->n_handles == 0) free(s);
}

void http_stop(struct http_server *s)
{
    if (!s) return;
    /* resume everything: stopping the daemon with suspended connections is not allowed */
    for (struct http_request *r = s->open; r; r = r->next) {
        r->stream_ended = true;
        if (r->suspended) {
            r->suspended = false;
            MHD_resume_connection(r->conn);
        }
    }
    MHD_stop_daemon(s->d);
    s->d = NULL;
    s->n_handles = 4;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->heartbeat, on_handle_closed);
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
}

const char *http_method(const struct http_request *r) { return r->method; }
const char *http_path(const struct http_request *r) { return r->path; }

const char *http_body(const struct http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

const char *http_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct query_iter {
    int (*fn)(void *ctx, const char *key, const char *value);
    void *ctx;
    int rc;
};

/* MHD unescapes %00 into a NUL byte: "?share=on%00x" would read as "on" and
 * "?share%00x=on" as "share". A key or value with an embedded NUL is handed
 * on in a spelling the allow-list rejects (key "\x7f": not a plain name ->
 * param "query"; value "": empty -> 400 naming the key). */
static enum MHD_Result query_cb(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                const char *value, size_t value_size)
{
    (void)kind;
    struct query_iter *it = cls;
    if (key && strlen(key) != key_size) key = "\x7f";
    if (value && strlen(value) != value_size) value = "";
    it->rc = it->fn(it->ctx, key, value ? value : "");
    return it->rc ? MHD_NO : MHD_YES;
}

int http_query_each(struct http_request *r, int (*fn)(void *ctx, const char *key, const char *value), void *ctx)
{
    struct query_iter it = {fn, ctx, 0};
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, query_cb, &it);
    return it.rc;
}

void http_set_user(struct http_request *r, void *user) { r->user = user; }
void *http_user(const struct http_request *r) { return r->user; }
double http_age_s(const struct http_request *r) { return mono_s() - r->t_start; }
bool http_client_gone(const struct http_request *r) { return r->gone; }

void http_respond(struct http_request *r, int status, const char *content_type, const char *body, size_t len,
                  const char *const *extra_headers)
{
    if (r->state != REQ_WAITING) return; /* answered already (e.g. the client went away) */
    r->resp = make_response(content_type, body, len, extra_headers);
    if (!r->resp) return;
    r->status = status;
    r->state = REQ_ANSWERED;
    resume(r);
}

void http_stream_begin(struct http_request *r, int status)
{
    if (r->state != REQ_WAITING) return;
    r->resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, r, NULL);
    if (!r->resp) return;
    MHD_add_response_header(r->resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(r->resp, "Cache-Control", "no-cache");
    r->status = status;
    r->streaming = true;
    r->state = REQ_ANSWERED;
    resume(r);
}

void http_stream_write(struct http_request *r, const char *data, size_t len)
{
    if (!r->streaming || r->stream_ended) return;
    stream_append(r, data, len);
    resume(r);
}

void http_stream_end(struct http_request *r)
{
    if (!r->streaming) return;
    r->stream_ended = true;
    resume(r);
}

size_t http_stream_pending(const struct http_request *r) { return r->s_len - r->s_off; }
