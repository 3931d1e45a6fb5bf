/* test_http_layer.c - the HTTP layer (server/http.c) alone: a real libmicrohttpd server on
 * 127.0.0.1 driven by a libuv loop on its own thread, a tiny application that answers from
 * the loop, and raw-socket clients. Checks what http.h promises: the request the
 * application sees (method, path, query in order, body), answers and streams, the
 * framing answers of the front door and of on_access (each a JSON error, closed, reported
 * through on_early_reply), the body limit, client disconnects reaching on_closed, and
 * quiesce refusing new connections. */
#define _GNU_SOURCE
#include "../test.h"

#include "server/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static uv_loop_t loop;
static uv_async_t wake;
static struct http_server *srv;
static uint16_t port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char seen[4096];      /* what on_request saw, last request */
static atomic_int early[600];  /* on_early_reply counts by status */
static atomic_int closed_gone, closed_ok;
static atomic_int cmd;       /* 1 = quiesce, 2 = stop */
static struct http_request *held; /* a request kept waiting (disconnect test) */

static int query_cb(void *ctx, const char *k, const char *v)
{
    char *b = ctx;
    size_t n = strlen(b);
    snprintf(b + n, 4096 - n, "%s=%s;", k, v);
    return 0;
}

static void on_request(void *app, struct http_request *r)
{
    (void)app;
    char q[1024] = "";
    http_query_each(r, query_cb, q);
    size_t blen;
    const char *body = http_body(r, &blen);
    pthread_mutex_lock(&mu);
    snprintf(seen, sizeof seen, "%s %s ?%s body=%.*s", http_method(r), http_path(r), q, (int)blen, body);
    pthread_mutex_unlock(&mu);
    if (strcmp(http_path(r), "/hold") == 0) { /* answered never: the client leaves */
        held = r;
        return;
    }
    if (strcmp(http_path(r), "/stream") == 0) {
        http_stream_begin(r, 200);
        http_stream_write(r, "data: a\n\n", 9);
        http_stream_write(r, "data: b\n\n", 9);
        http_stream_end(r);
        return;
    }
    static const char *const extra[] = {"X-Test: yes", NULL};
    http_respond(r, 200, "text/plain", "hello", 5, extra);
}

static void on_closed(void *app, struct http_request *r, bool gone)
{
    (void)app;
    if (r == held) held = NULL;
    atomic_fetch_add(gone ? &closed_gone : &closed_ok, 1);
}

static void on_early(void *app, const char *path, int status)
{
    (void)app;
    (void)path;
    if (status > 0 && status < 600) atomic_fetch_add(&early[status], 1);
}

static void on_wake(uv_async_t *a)
{
    int c = atomic_exchange(&cmd, 0);
    if (c == 1) http_quiesce(srv);
    if (c == 2) {
        http_stop(srv);
        uv_close((uv_handle_t *)a, NULL);
    }
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Send bytes on a new connection, read until the server closes it (or timeout seconds).
 * -> status (0: none), the whole reply in out. */
static int exchange(const void *data, size_t len, char *out, size_t cap, double timeout)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {(time_t)timeout, (suseconds_t)((timeout - (time_t)timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = 0;
    out[0] = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len) {
        ssize_t r;
        while (n + 1 < cap && (r = recv(fd, out + n, cap - 1 - n, 0)) > 0) n += (size_t)r;
    }
    out[n] = 0;
    close(fd);
    int st = 0;
    if (sscanf(out, "HTTP/1.1 %d", &st) != 1) st = 0;
    return st;
}

static char buf[1 << 16];

#define REQ(s) s, sizeof(s) - 1

static void test_request_seen_and_answered(void)
{
    int st = exchange(REQ("POST /p/q?b=2&a=1&b=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n"
                          "\r\nhello"), buf, sizeof buf, 5);
    ASSERT_EQ(st, 200);
    ASSERT_TRUE(strstr(buf, "X-Test: yes") != NULL);
    ASSERT_TRUE(strstr(buf, "X-Request-Id: req-") != NULL); /* every answer carries its request id */
    ASSERT_TRUE(strstr(buf, "\r\n\r\nhello") != NULL);
    pthread_mutex_lock(&mu);
    ASSERT_STR_EQ(seen, "POST /p/q ?b=2;a=1;b=3; body=hello");
    pthread_mutex_unlock(&mu);
}

static void test_stream(void)
{
    int st = exchange(REQ("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), buf, sizeof buf, 5);
    ASSERT_EQ(st, 200);
    ASSERT_TRUE(strstr(buf, "text/event-stream") != NULL);
    char *a = strstr(buf, "data: a"), *b = strstr(buf, "data: b");
    ASSERT_TRUE(a && b && a < b);
}

/* Each framing case: its status, a JSON error body, the connection closed, and one
 * on_early_reply for that status. */
static void expect_framing(const char *name, const void *req, size_t len, int want)
{
    int before = atomic_load(&early[want]);
    int st = exchange(req, len, buf, sizeof buf, 3);
    if (st != want || !strstr(buf, "\"error\"") || !strstr(buf, "application/json") || !strstr(buf, "X-Request-Id: req-"))
        TEST_FAIL_("%s: status %d (want %d): %.120s", name, st, want, buf);
    for (int i = 0; i < 100 && atomic_load(&early[want]) == before; i++) usleep(10000);
    if (atomic_load(&early[want]) != before + 1) TEST_FAIL_("%s: not reported through on_early_reply", name);
}

static void test_framing(void)
{
    expect_framing("TLS ClientHello", REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400);
    expect_framing("two Content-Length", REQ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400);
    expect_framing("Content-Length + Transfer-Encoding",
                   REQ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    expect_framing("Content-Length not decimal", REQ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"), 400);
    expect_framing("Transfer-Encoding gzip", REQ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    expect_framing("chunk over max_body", REQ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\nab"), 413);
    expect_framing("Content-Length over max_body", REQ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"), 413);
    static char big[10000];
    int n = snprintf(big, sizeof big, "GET /?");
    memset(big + n, 'a', 5000);
    n += 5000;
    n += snprintf(big + n, sizeof big - (size_t)n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_framing("request line over conn_memory", big, (size_t)n, 414);
    n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX-A: ");
    memset(big + n, 'a', 5000);
    n += 5000;
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
    expect_framing("head over conn_memory", big, (size_t)n, 431);
    expect_framing("head never complete", REQ("GET / HTTP/1.1\r\nHost: x\r\n"), 408);
}

static void test_client_gone(void)
{
    int before = atomic_load(&closed_gone);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ASSERT_OK(connect(fd, (struct sockaddr *)&a, sizeof a));
    const char req[] = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (long long)(sizeof req - 1));
    usleep(200000);
    close(fd); /* the heartbeat's probe sees it: on_closed(gone) */
    for (int i = 0; i < 300 && atomic_load(&closed_gone) == before; i++) usleep(10000);
    ASSERT_EQ(atomic_load(&closed_gone), before + 1);
}

/* CORS: a preflight from an allowed origin is answered 204 with the allow headers, an answer
 * to it carries Access-Control-Allow-Origin, another origin gets none. */
static void test_cors(void)
{
    int st = exchange(REQ("OPTIONS /v1/completions HTTP/1.1\r\nHost: x\r\nOrigin: https://ok.example\r\n"
                          "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"), buf, sizeof buf, 5);
    ASSERT_EQ(st, 204);
    ASSERT_TRUE(strstr(buf, "Access-Control-Allow-Origin: https://ok.example") != NULL);
    ASSERT_TRUE(strstr(buf, "Access-Control-Allow-Methods: GET, POST, OPTIONS") != NULL);
    ASSERT_TRUE(strstr(buf, "Access-Control-Allow-Headers: Authorization, Content-Type") != NULL);
    st = exchange(REQ("GET /p HTTP/1.1\r\nHost: x\r\nOrigin: https://ok.example\r\nConnection: close\r\n\r\n"), buf,
                  sizeof buf, 5);
    ASSERT_EQ(st, 200);
    ASSERT_TRUE(strstr(buf, "Access-Control-Allow-Origin: https://ok.example") != NULL);
    st = exchange(REQ("GET /p HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"),
                  buf, sizeof buf, 5);
    ASSERT_EQ(st, 200);
    ASSERT_TRUE(strstr(buf, "Access-Control-Allow-Origin") == NULL);
    st = exchange(REQ("OPTIONS /p HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"),
                  buf, sizeof buf, 5);
    ASSERT_TRUE(st != 204); /* not a preflight we answer: routed as any request */
}

static void test_quiesce_refuses(void)
{
    atomic_store(&cmd, 1);
    uv_async_send(&wake);
    usleep(100000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ASSERT_TRUE(connect(fd, (struct sockaddr *)&a, sizeof a) != 0);
    close(fd);
}

int main(void)
{
    uv_loop_init(&loop);
    uv_async_init(&loop, &wake, on_wake);
    struct http_options o = {.host = "127.0.0.1", .port = 0, .max_body = 4096, .max_connections = 64,
                             .per_ip_connections = 32, .conn_memory = 4096, .idle_timeout_s = 10,
                             .request_timeout_s = 1, .heartbeat_ms = 50,
                             .cors_origins = "https://a.example, https://ok.example"};
    struct http_handlers h = {.on_request = on_request, .on_closed = on_closed, .on_early_reply = on_early};
    char msg[256];
    if (http_start(&loop, &o, &h, NULL, &srv, msg, sizeof msg) != 0) {
        fprintf(stderr, "http_start: %s\n", msg);
        return 1;
    }
    port = http_port(srv);
    pthread_t th;
    pthread_create(&th, NULL, loop_main, NULL);
    TEST_RUN(test_request_seen_and_answered);
    TEST_RUN(test_stream);
    TEST_RUN(test_framing);
    TEST_RUN(test_client_gone);
    TEST_RUN(test_cors);
    TEST_RUN(test_quiesce_refuses);
    atomic_store(&cmd, 2);
    uv_async_send(&wake);
    pthread_join(th, NULL);
    uv_loop_close(&loop);
    TEST_DONE();
}
