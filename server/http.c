/*
 * http.c - libmicrohttpd glue (see http.h). The only file that includes
 * microhttpd.h. Everything here runs on the libuv loop thread.
 */
#define _GNU_SOURCE /* accept4 */
#include "http.h"

#include "engine/errors.h"
#include "engine/log.h"
#include "response.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
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
    bool stream_cut; /* over max_stream_pending or out of memory: the connection is closed */
    char id[32];     /* X-Request-Id, and the request's log line */
    char note[320];  /* the application's part of the log line (http_log_note) */
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
    /* the front door (see "the front door" below) */
    int listen_fd;
    uv_poll_t listen_poll;
    uv_timer_t door_timer;
    struct door *door;   /* accepted sockets not yet handed to MHD */
    unsigned n_door;
    unsigned hard_total, hard_ip;
    char *peek;          /* scratch for MSG_PEEK of a head: conn_memory + DOOR_PEEK_EXTRA bytes */
    uint64_t next_id;    /* request ids: req-<start time>-<counter> */
    unsigned id_epoch;
};

/* A socket accepted by the front door, waiting for the head of its first request. */
struct door {
    struct http_server *srv;
    struct door *prev, *next;
    int fd;
    uv_poll_t poll;
    bool polling, closing;
    double t_start;
    double linger_until; /* > 0: answered; reading and dropping input until EOF or then */
    struct ip_count *ip;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_mhd(struct http_server *s);
static void door_reply(struct http_server *s, int fd, enum response_http_error kind, const char *msg);

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
    if (r->stream_cut) return MHD_CONTENT_READER_END_WITH_ERROR; /* MHD closes the connection */
    if (r->stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
    suspend(r); /* woken by http_stream_write/end or the heartbeat */
    return 0;
}

static int stream_append(struct http_request *r, const char *data, size_t len)
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
            if (!nb) return SA_ERR_NOMEM;
            r->sbuf = nb;
            r->s_cap = cap;
        }
    }
    memcpy(r->sbuf + r->s_len, data, len);
    r->s_len += len;
    return 0;
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

/* The request's Origin when CORS allows it, else NULL. */
static const char *cors_origin(const struct http_request *r)
{
    const char *list = r->srv->o.cors_origins;
    if (!list || !*list) return NULL;
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!origin || !*origin) return NULL;
    if (strcmp(list, "*") == 0) return origin;
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && t[-1] == ' ') t--;
        if ((size_t)(t - p) == n && strncmp(p, origin, n) == 0) return origin;
        p = e;
    }
    return NULL;
}

static void cors_headers(const struct http_request *r, struct MHD_Response *resp)
{
    const char *origin = cors_origin(r);
    if (!origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(resp, "Vary", "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

static void next_request_id(struct http_server *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "req-%x-%llx", s->id_epoch, (unsigned long long)++s->next_id);
}

static struct MHD_Response *make_response(const struct http_request *r, const char *ctype, const char *body,
                                          size_t len, const char *const *extra)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return NULL;
    if (ctype) MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    cors_headers(r, resp);
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

/* An error answer of the HTTP layer: the body from the one error table (response.h). */
static enum MHD_Result reply_now(struct http_request *r, enum response_http_error kind, const char *msg,
                                 const char *const *extra)
{
    struct api_error err;
    response_error_http(kind, NULL, msg, &err);
    size_t n;
    char *body = response_error_json(&err, &n);
    if (!body) return MHD_NO;
    r->resp = make_response(r, "application/json", body, n, extra);
    free(body);
    if (!r->resp) return MHD_NO;
    r->status = err.status;
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
    next_request_id(s, r->id, sizeof r->id);
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
static enum MHD_Result reply_early_h(struct http_request *r, enum response_http_error kind, const char *msg,
                                     const char *const *extra)
{
    if (r->srv->h.on_early_reply) {
        struct api_error err;
        response_error_http(kind, NULL, msg, &err);
        r->srv->h.on_early_reply(r->srv->app, r->path && !r->encoded_path ? r->path : "", err.status);
    }
    return reply_now(r, kind, msg, extra);
}

static enum MHD_Result reply_early(struct http_request *r, enum response_http_error kind, const char *msg)
{
    return reply_early_h(r, kind, msg, NULL);
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

/* The counter of address a (created at 1 use, or found and incremented); NULL if out of memory. */
static struct ip_count *ip_acquire(struct http_server *s, const unsigned char *a, unsigned len)
{
    unsigned h = ip_hash(a, len);
    struct ip_count *e = s->ip_buckets[h];
    while (e && !(e->len == len && memcmp(e->addr, a, len) == 0)) e = e->next;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        memcpy(e->addr, a, len);
        e->len = len;
        e->next = s->ip_buckets[h];
        s->ip_buckets[h] = e;
    }
    if (e) e->count++;
    return e;
}

static void ip_release(struct http_server *s, struct ip_count *e)
{
    if (--e->count) return;
    struct ip_count **pp = &s->ip_buckets[ip_hash(e->addr, e->len)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    free(e);
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
        struct ip_count *e = ip_acquire(s, a, len);
        c->ip = e;
        if (e && e->count > s->o.per_ip_connections) c->verdict = CONN_OVER_PER_IP;
        else if (s->n_conns + s->n_door > s->o.max_connections) c->verdict = CONN_OVER_TOTAL;
        return;
    }
    struct http_conn *c = *socket_context;
    *socket_context = NULL;
    s->n_conns--;
    if (!c) return;
    if (c->ip) ip_release(s, c->ip);
    free(c);
}

static enum conn_verdict conn_verdict(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const struct http_conn *c = ci ? ci->socket_context : NULL;
    return c ? c->verdict : CONN_OK;
}

/* The framing headers of a request (RFC 9112 6): Content-Length fields (all
 * equal, plain decimal), Transfer-Encoding fields (exactly "chunked"). */
struct framing {
    unsigned n_cl, n_te;
    unsigned long long cl;
    bool cl_bad, cl_conflict, te_bad;
};

static enum MHD_Result framing_cb(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                  const char *value, size_t value_size)
{
    (void)kind;
    struct framing *f = cls;
    if (key_size == 14 && strncasecmp(key, "Content-Length", 14) == 0) {
        unsigned long long v = 0;
        bool ok = value_size > 0 && value_size <= 19;
        for (size_t i = 0; ok && i < value_size; i++) {
            ok = value[i] >= '0' && value[i] <= '9';
            v = v * 10 + (unsigned)(value[i] - '0');
        }
        if (!ok) f->cl_bad = true;
        else if (f->n_cl && v != f->cl) f->cl_conflict = true;
        f->cl = v;
        f->n_cl++;
    } else if (key_size == 17 && strncasecmp(key, "Transfer-Encoding", 17) == 0) {
        if (f->n_te || value_size != 7 || strncasecmp(value, "chunked", 7) != 0) f->te_bad = true;
        f->n_te++;
    }
    return MHD_YES;
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
            return reply_early_h(r, RESPONSE_HTTP_RATE_LIMITED,
                                 "too many connections from this address (per_ip_connections)", h429);
        }
        if (cv == CONN_OVER_TOTAL) {
            static const char *const h503[] = {"Retry-After: 1", "Connection: close", NULL};
            return reply_early_h(r, RESPONSE_HTTP_BUSY, "too many open connections (max_connections)", h503);
        }
        if (strcmp(method, "OPTIONS") == 0 && cors_origin(r)) { /* a CORS preflight */
            r->resp = make_response(r, NULL, "", 0, NULL);
            if (!r->resp) return MHD_NO;
            MHD_add_response_header(r->resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            MHD_add_response_header(r->resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            MHD_add_response_header(r->resp, "Access-Control-Max-Age", "600");
            r->status = 204;
            if (s->h.on_early_reply) s->h.on_early_reply(s->app, r->path, 204);
            return queue_answer(r);
        }
        if (r->encoded_path)
            return reply_early(r, RESPONSE_HTTP_NOT_FOUND, "no such endpoint");
        struct framing f = {0};
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, framing_cb, &f);
        const union MHD_ConnectionInfo *hi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
        if (strlen(url) > s->o.conn_memory) /* a kept-alive connection's later request (the door saw the first) */
            return reply_early(r, RESPONSE_HTTP_URI_TOO_LONG, "the request line is longer than connection_memory");
        if (hi && hi->header_size > s->o.conn_memory)
            return reply_early(r, RESPONSE_HTTP_HEADERS_TOO_LARGE,
                               "the request headers are larger than connection_memory");
        if (f.te_bad)
            return reply_early(r, RESPONSE_HTTP_NOT_IMPLEMENTED,
                               "Transfer-Encoding other than 'chunked' alone is not supported");
        if (f.cl_bad || f.cl_conflict || (f.n_cl && f.n_te))
            return reply_early(r, RESPONSE_HTTP_BAD_FRAMING,
                               f.cl_bad        ? "Content-Length is not a decimal number"
                               : f.cl_conflict ? "Content-Length given more than once with different values"
                                               : "both Content-Length and Transfer-Encoding given");
        if (f.n_cl && f.cl > s->o.max_body) r->too_large = true;
        if (r->too_large)
            return reply_early(r, RESPONSE_HTTP_BODY_TOO_LARGE, "request body exceeds the configured max_body");
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
        return reply_early(r, RESPONSE_HTTP_BODY_TOO_LARGE, "request body exceeds the configured max_body");
    if (r->timed_out)
        return reply_early(r, RESPONSE_HTTP_TIMEOUT, "request not received within request_timeout");
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
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    bool gone = r->gone || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (r->app_seen) s->h.on_closed(s->app, r, gone);
    { /* one line per request, refused ones included */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        int status = gone && r->status != 408 ? 499 : ci ? (int)ci->http_status : r->status;
        SA_LOGI("%s %s %s %d %.1fms%s%s", r->id, r->method[0] ? r->method : "-", r->path ? r->path : "-", status,
                (mono_s() - r->t_start) * 1e3, r->note[0] ? " " : "", r->note);
    }
    if (!r->path && !r->cut && s->h.on_early_reply) { /* libmicrohttpd answered before on_access (e.g. 431) */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status >= 400) s->h.on_early_reply(s->app, "", (int)ci->http_status);
    }
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
    door_reply(s, ci->connect_fd, RESPONSE_HTTP_TIMEOUT, "the request was not received in time");
    shutdown(ci->connect_fd, SHUT_RDWR);
    r->cut = true;
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
        if (r->streaming && !r->stream_ended) {
            static const char ka[] = ": keep-alive\n\n";
            if (stream_append(r, ka, sizeof ka - 1) != 0) continue; /* a keep-alive comment: nothing lost */
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
            struct api_error err; /* never delivered: the body only keeps MHD's bookkeeping honest */
            response_error_http(RESPONSE_HTTP_CLIENT_CLOSED, NULL, NULL, &err);
            size_t blen;
            char *body = response_error_json(&err, &blen);
            r->resp = body ? make_response(r, "application/json", body, blen, NULL) : NULL;
            free(body);
            r->status = err.status;
            if (r->resp) {
                r->state = REQ_ANSWERED;
                resume(r);
            }
        }
    }
}

/* ---- the front door: our own listener ----
 *
 * Connections are accepted here, not by MHD (MHD_USE_NO_LISTEN_SOCKET). A new
 * socket waits until its first bytes arrive; then the head of its first
 * request is read without consuming it (MSG_PEEK) and, as RFC 9112 asks of a
 * server that may sit behind a proxy:
 *   - bytes that cannot start a request line (a TLS ClientHello, binary) -> 400,
 *     and so is a Content-Length that is not a decimal number;
 *   - no end of the request line within conn_memory bytes -> 414, no end of
 *     the head within conn_memory -> 431;
 *   - a chunked body whose first chunk size is in view and over max_body -> 413;
 *   - a head still incomplete is looked at again every DOOR_TICK_MS, and after
 *     request_timeout it gets 408 (slowloris);
 * each as our JSON error, closed, and reported through on_early_reply (so the
 * metrics count it). Otherwise the socket goes to MHD (MHD_add_connection),
 * which reads the same bytes. Later requests on a kept-alive connection are
 * checked in on_access instead. Sockets in the door count against the hard
 * connection caps (over them a connection is closed at once, as MHD does).
 */
#define DOOR_TICK_MS 20
#define DOOR_PEEK_EXTRA 64 /* bytes past the head: the first chunk-size line */

static void door_closed(uv_handle_t *h)
{
    struct door *d = h->data;
    struct http_server *s = d->srv;
    free(d);
    if (--s->n_handles == 0 && !s->d) { /* the last handle of a stopped server */
        free(s->peek);
        free(s);
    }
}

/* Leave the door: hand the socket to MHD (give = true) or close it. */
static void door_leave(struct door *d, bool give)
{
    struct http_server *s = d->srv;
    if (d->closing) return;
    d->closing = true;
    if (d->prev) d->prev->next = d->next;
    else s->door = d->next;
    if (d->next) d->next->prev = d->prev;
    s->n_door--;
    if (d->ip) ip_release(s, d->ip);
    if (d->polling) uv_poll_stop(&d->poll);
    s->n_handles++;
    uv_close((uv_handle_t *)&d->poll, door_closed);
    if (!give || !s->d) {
        close(d->fd);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(d->fd, (struct sockaddr *)&ss, &sl) != 0 ||
        MHD_add_connection(s->d, d->fd, (struct sockaddr *)&ss, sl) != MHD_YES) {
        SA_LOGD("http: could not hand a connection to libmicrohttpd");
        return; /* MHD closed the socket */
    }
    schedule_run(s);
}

/* Our error answer straight on the socket, then close (the door's and the slow-header cut's).
 * The body comes from the one error table (response.h). */
static void door_reply(struct http_server *s, int fd, enum response_http_error kind, const char *msg)
{
    struct api_error err;
    response_error_http(kind, NULL, msg, &err);
    size_t nb;
    char *body = response_error_json(&err, &nb);
    char head[256];
    const char *reason = MHD_get_reason_phrase_for((unsigned)err.status);
    char id[32];
    next_request_id(s, id, sizeof id);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     "X-Request-Id: %s\r\nContent-Length: %zu\r\n\r\n",
                     err.status, reason && *reason ? reason : "Error", id, body ? nb : 0);
    SA_LOGI("%s - - %d refused by the front door: %s", id, err.status, err.message);
    struct iovec iov[2] = {{head, (size_t)n}, {body, body ? nb : 0}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w; /* best effort: the client may be gone */
    free(body);
    shutdown(fd, SHUT_WR);
    if (s->h.on_early_reply) s->h.on_early_reply(s->app, "", err.status);
}

static void door_on_poll(uv_poll_t *p, int status, int events);

/* Drop what the client sent; EOF (or an error) ends the linger. */
static void door_drain(struct door *d)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(d->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        door_leave(d, false);
        return;
    }
}

/* Answer from the door, then close gracefully: closing with unread input would
 * reset the connection and the client could lose the answer, so input is read
 * and dropped until the client closes or for one second (a lingering close). */
static void door_refuse(struct door *d, enum response_http_error kind, const char *msg)
{
    door_reply(d->srv, d->fd, kind, msg);
    d->linger_until = mono_s() + 1.0;
    if (!d->polling) d->polling = uv_poll_start(&d->poll, UV_READABLE, door_on_poll) == 0;
    door_drain(d);
}

static bool tchar(unsigned char c) /* RFC 9110 token characters */
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Case-insensitive search of a header field line "\r\nname:" in head[0..n). */
static const char *head_field(const char *head, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 3 <= n; i++)
        if (head[i] == '\r' && head[i + 1] == '\n' && strncasecmp(head + i + 2, name, nl) == 0 &&
            head[i + 2 + nl] == ':')
            return head + i + 3 + nl;
    return NULL;
}

enum door_verdict { DOOR_WAIT, DOOR_PASS, DOOR_CLOSED };

/* Look at what has arrived on d's socket. */
static enum door_verdict door_look(struct door *d, double now)
{
    struct http_server *s = d->srv;
    size_t limit = s->o.conn_memory, cap = limit + DOOR_PEEK_EXTRA;
    ssize_t n = recv(d->fd, s->peek, cap, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        door_leave(d, false); /* closed before it said anything */
        return DOOR_CLOSED;
    }
    size_t got = n > 0 ? (size_t)n : 0;
    const char *p = s->peek;
    size_t lead = 0; /* RFC 9112 2.2: empty lines before a request line are ignored */
    while (lead < got && (p[lead] == '\r' || p[lead] == '\n')) lead++;
    if (lead < got && !tchar((unsigned char)p[lead])) {
        door_refuse(d, RESPONSE_HTTP_BAD_REQUEST, "not an HTTP/1.1 request (TLS is not served on this port)");
        return DOOR_CLOSED;
    }
    const char *eol = memchr(p, '\n', got < limit ? got : limit);
    const char *end = NULL;
    for (size_t i = 0; i + 3 < got && i + 4 <= limit; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            end = p + i + 4;
            break;
        }
    if (!end && got > limit) {
        if (!eol)
            door_refuse(d, RESPONSE_HTTP_URI_TOO_LONG, "the request line is longer than connection_memory");
        else
            door_refuse(d, RESPONSE_HTTP_HEADERS_TOO_LARGE, "the request headers are larger than connection_memory");
        return DOOR_CLOSED;
    }
    if (!end) {
        if (now - d->t_start > s->o.request_timeout_s) {
            door_refuse(d, RESPONSE_HTTP_TIMEOUT, "the request was not received in time");
            return DOOR_CLOSED;
        }
        return DOOR_WAIT;
    }
    /* libmicrohttpd refuses a Content-Length that is not a number with its own page: answer first */
    const char *cl = head_field(p, (size_t)(end - p), "content-length");
    if (cl) {
        while (*cl == ' ' || *cl == '\t') cl++;
        const char *q = cl;
        while (*q >= '0' && *q <= '9') q++;
        while (*q == ' ' || *q == '\t') q++;
        if (q == cl || *q != '\r') {
            door_refuse(d, RESPONSE_HTTP_BAD_FRAMING, "Content-Length is not a decimal number");
            return DOOR_CLOSED;
        }
    }
    /* a chunked body whose first chunk size is already in view */
    const char *te = head_field(p, (size_t)(end - p), "transfer-encoding");
    if (te) {
        while (*te == ' ' || *te == '\t') te++;
        if (strncasecmp(te, "chunked", 7) == 0) {
            const char *c = end, *stop = p + got;
            unsigned long long size = 0;
            int digits = 0;
            for (; c < stop && digits < 17; c++, digits++) {
                int v = *c >= '0' && *c <= '9' ? *c - '0' : (*c | 0x20) >= 'a' && (*c | 0x20) <= 'f' ? (*c | 0x20) - 'a' + 10 : -1;
                if (v < 0) break;
                size = size * 16 + (unsigned)v;
            }
            if (digits && (size > s->o.max_body || digits == 17)) {
                door_refuse(d, RESPONSE_HTTP_BODY_TOO_LARGE, "a chunk of the body exceeds the configured max_body");
                return DOOR_CLOSED;
            }
        }
    }
    door_leave(d, true);
    return DOOR_PASS;
}

static void door_on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct door *d = p->data;
    if (d->linger_until > 0) {
        door_drain(d);
        return;
    }
    if (door_look(d, mono_s()) == DOOR_WAIT) { /* the rest on the tick: peeked bytes keep the fd readable */
        uv_poll_stop(&d->poll);
        d->polling = false;
    }
}

static void door_on_tick(uv_timer_t *t)
{
    struct http_server *s = t->data;
    double now = mono_s();
    for (struct door *d = s->door, *next; d; d = next) {
        next = d->next;
        if (d->linger_until > 0) {
            if (now > d->linger_until) door_leave(d, false);
        } else if (!d->polling || now - d->t_start > s->o.request_timeout_s) { /* or it sent nothing at all */
            door_look(d, now);
        }
    }
    if (!s->door) uv_timer_stop(&s->door_timer);
}

static void door_on_accept(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct http_server *s = p->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or out of fds: the next readiness tries again */
        unsigned char a[16];
        unsigned len = 0;
        if (ss.ss_family == AF_INET) memcpy(a, &((struct sockaddr_in *)&ss)->sin_addr, len = 4);
        else if (ss.ss_family == AF_INET6) memcpy(a, &((struct sockaddr_in6 *)&ss)->sin6_addr, len = 16);
        struct ip_count *e = ip_acquire(s, a, len);
        struct door *d = e ? calloc(1, sizeof *d) : NULL;
        if (!d || s->n_door + s->n_conns >= s->hard_total || e->count > s->hard_ip) {
            if (e) ip_release(s, e);
            free(d);
            close(fd); /* over the hard caps: refused silently, fds stay bounded */
            continue;
        }
        d->srv = s;
        d->fd = fd;
        d->ip = e;
        d->t_start = mono_s();
        d->next = s->door;
        if (s->door) s->door->prev = d;
        s->door = d;
        s->n_door++;
        uv_poll_init(s->loop, &d->poll, fd);
        d->poll.data = d;
        d->polling = uv_poll_start(&d->poll, UV_READABLE, door_on_poll) == 0;
        if (!uv_is_active((uv_handle_t *)&s->door_timer))
            uv_timer_start(&s->door_timer, door_on_tick, DOOR_TICK_MS, DOOR_TICK_MS);
    }
}

static int door_listen(struct http_server *s, const struct sockaddr *sa, socklen_t sl, char *msg, size_t msg_len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (fd < 0 || bind(fd, sa, sl) != 0 || listen(fd, 128) != 0) {
        snprintf(msg, msg_len, "port: cannot listen on %s:%u (%s)", s->o.host, (unsigned)s->o.port, strerror(errno));
        if (fd >= 0) close(fd);
        return SA_ERR_IO;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bl);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    s->listen_fd = fd;
    return 0;
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
    s->hard_total = hard_total;
    s->id_epoch = (unsigned)time(NULL);
    s->hard_ip = hard_ip;
    s->listen_fd = -1;
    s->peek = malloc(s->o.conn_memory + DOOR_PEEK_EXTRA);
    if (!s->peek) {
        free(s);
        return SA_ERR_NOMEM;
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    socklen_t sl;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, o->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(o->port);
        sa = (struct sockaddr *)&a4;
        sl = sizeof a4;
    } else if (inet_pton(AF_INET6, o->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(o->port);
        sa = (struct sockaddr *)&a6;
        sl = sizeof a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(msg, msg_len, "host: '%s' is not a numeric IPv4 or IPv6 address", o->host);
        free(s->peek);
        free(s);
        return SA_ERR_INVALID_ARG;
    }
    int rc = door_listen(s, sa, sl, msg, msg_len);
    if (rc) {
        free(s->peek);
        free(s);
        return rc;
    }
    /* MHD's pool holds a head of up to conn_memory (the door and on_access enforce
     * that limit with our own answers) plus its read buffer and response headers */
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_CONNECTION_LIMIT, hard_total,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, hard_ip,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, 2 * s->o.conn_memory + 16 * 1024,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
                            MHD_OPTION_STRICT_FOR_CLIENT, 1,
                            MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                            MHD_OPTION_END);
    const union MHD_DaemonInfo *di = s->d ? MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (!di) {
        snprintf(msg, msg_len, "libmicrohttpd: cannot start the daemon");
        if (s->d) MHD_stop_daemon(s->d);
        close(s->listen_fd);
        free(s->peek);
        free(s);
        return SA_ERR_INTERNAL;
    }
    uv_poll_init(loop, &s->poll, di->epoll_fd);
    uv_poll_init(loop, &s->listen_poll, s->listen_fd);
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->heartbeat);
    uv_timer_init(loop, &s->kick);
    uv_timer_init(loop, &s->door_timer);
    s->poll.data = s->timer.data = s->heartbeat.data = s->kick.data = s->listen_poll.data = s->door_timer.data = s;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    uv_poll_start(&s->listen_poll, UV_READABLE, door_on_accept);
    uv_timer_start(&s->heartbeat, on_heartbeat, s->o.heartbeat_ms, s->o.heartbeat_ms);
    run_mhd(s);
    *out = s;
    return 0;
}

uint16_t http_port(const struct http_server *s) { return s->port; }
unsigned http_open_requests(const struct http_server *s) { return s->n_open; }

void http_quiesce(struct http_server *s)
{
    if (s->listen_fd < 0) return;
    uv_poll_stop(&s->listen_poll);
    close(s->listen_fd); /* new connections are refused from now on */
    s->listen_fd = -1;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;
    if (--s->n_handles == 0) {
        free(s->peek);
        free(s);
    }
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
    while (s->door) door_leave(s->door, false);
    http_quiesce(s);
    MHD_stop_daemon(s->d);
    s->d = NULL;
    s->n_handles += 6;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->listen_poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->heartbeat, on_handle_closed);
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
    uv_close((uv_handle_t *)&s->door_timer, on_handle_closed);
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
const char *http_request_id(const struct http_request *r) { return r->id; }

void http_log_note(struct http_request *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
}
void *http_user(const struct http_request *r) { return r->user; }
double http_age_s(const struct http_request *r) { return mono_s() - r->t_start; }
bool http_client_gone(const struct http_request *r) { return r->gone; }

void http_respond(struct http_request *r, int status, const char *content_type, const char *body, size_t len,
                  const char *const *extra_headers)
{
    if (r->state != REQ_WAITING) return; /* answered already (e.g. the client went away) */
    r->resp = make_response(r, content_type, body, len, extra_headers);
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
    MHD_add_response_header(r->resp, "X-Request-Id", r->id);
    cors_headers(r, r->resp);
    MHD_add_response_header(r->resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(r->resp, "Cache-Control", "no-cache");
    r->status = status;
    r->streaming = true;
    r->state = REQ_ANSWERED;
    resume(r);
}

int http_stream_write(struct http_request *r, const char *data, size_t len)
{
    if (!r->streaming || r->stream_ended) return SA_ERR_CANCELLED;
    size_t cap = r->srv->o.max_stream_pending;
    int rc = cap && r->s_len - r->s_off + len > cap ? SA_ERR_TOO_LARGE : stream_append(r, data, len);
    if (rc) { /* cut: the rest of the stream is never sent */
        SA_LOGW("http: stream cut (%s, %zu bytes pending)", rc == SA_ERR_TOO_LARGE ? "the client reads too slowly"
                                                                                  : "out of memory",
                r->s_len - r->s_off);
        r->stream_cut = r->stream_ended = r->gone = true;
        r->s_off = r->s_len = 0;
    }
    resume(r);
    return rc;
}

void http_stream_abort(struct http_request *r)
{
    if (!r->streaming || r->stream_cut) return;
    r->stream_cut = r->stream_ended = r->gone = true;
    r->s_off = r->s_len = 0;
    resume(r);
}

void http_stream_end(struct http_request *r)
{
    if (!r->streaming) return;
    r->stream_ended = true;
    resume(r);
}

size_t http_stream_pending(const struct http_request *r) { return r->s_len - r->s_off; }
