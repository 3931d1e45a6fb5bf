/*
 * metrics.c - counters, histograms and the Prometheus text exposition.
 * Contract: metrics.h (loop thread only, so no locks).
 */
#include "engine/utf8.h"
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double metrics_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define METRICS_N_BUCKETS (sizeof metrics_buckets / sizeof metrics_buckets[0])

static const char *const metrics_ep_names[METRICS_EP_COUNT] = {
    "completions", "chat_completions", "models", "health", "metrics", "v2_infer", "v2_models", "v2_health", "tokenize", "embeddings", "ui", "similarity", "other",
};

static const int metrics_statuses[] = {200, 204, 304, 400, 401, 404, 405, 408, 413, 414, 429, 431, 499, 500, 501, 503};
#define METRICS_N_STATUS (sizeof metrics_statuses / sizeof metrics_statuses[0])
/* index METRICS_N_STATUS is "other" */

struct metrics_hist {
    uint64_t bucket[METRICS_N_BUCKETS]; /* per bucket, not cumulative; +Inf = count */
    uint64_t count;
    double sum;
};

struct metrics {
    uint64_t requests[METRICS_EP_COUNT][METRICS_N_STATUS + 1];
    struct metrics_hist duration[METRICS_EP_COUNT];
    struct metrics_hist ttft;
    uint64_t prompt_tokens, generated_tokens, kv_saved_total;
    uint64_t share[2], rebalance[2]; /* [0] off, [1] on */
    /* the phiDNN model: modes 0..3 (enum phidnn_mode), 4 = "none" */
    bool vision_on;
    char vision_model[64];
    uint64_t vision_requests[5][METRICS_N_STATUS + 1];
    uint64_t vision_images[4];
    struct metrics_hist vision_duration;
};

static const char *const metrics_vision_modes[5] = {"off", "identity", "sr", "inpaint", "none"};

struct metrics *metrics_create(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_destroy(struct metrics *m)
{
    free(m);
}

static void metrics_observe(struct metrics_hist *h, double s)
{
    if (!(s >= 0) || !isfinite(s)) s = 0;
    for (size_t i = 0; i < METRICS_N_BUCKETS; i++) {
        if (s <= metrics_buckets[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum += s;
}

void metrics_request_done(struct metrics *m, enum metrics_endpoint ep, int status, double seconds)
{
    if (!m) return;
    if ((int)ep < 0 || ep >= METRICS_EP_COUNT) ep = METRICS_EP_OTHER;
    size_t si = METRICS_N_STATUS;
    for (size_t i = 0; i < METRICS_N_STATUS; i++)
        if (metrics_statuses[i] == status) si = i;
    m->requests[ep][si]++;
    metrics_observe(&m->duration[ep], seconds);
}

void metrics_first_token(struct metrics *m, double seconds)
{
    if (m) metrics_observe(&m->ttft, seconds);
}

void metrics_tokens(struct metrics *m, uint64_t prompt, uint64_t generated)
{
    if (!m) return;
    m->prompt_tokens += prompt;
    m->generated_tokens += generated;
}

void metrics_kv_saved(struct metrics *m, uint64_t bytes)
{
    if (m) m->kv_saved_total += bytes;
}

void metrics_sharing(struct metrics *m, bool share_on, bool rebalance_on)
{
    if (!m) return;
    m->share[share_on ? 1 : 0]++;
    m->rebalance[rebalance_on ? 1 : 0]++;
}

void metrics_vision_model(struct metrics *m, const char *name)
{
    if (!m) return;
    m->vision_on = true;
    snprintf(m->vision_model, sizeof m->vision_model, "%s", name ? name : "");
}

void metrics_vision_request(struct metrics *m, int mode, int status, double seconds, uint32_t images)
{
    if (!m) return;
    const int mi = mode >= 0 && mode < 4 ? mode : 4;
    size_t si = METRICS_N_STATUS;
    for (size_t i = 0; i < METRICS_N_STATUS; i++)
        if (metrics_statuses[i] == status) si = i;
    m->vision_requests[mi][si]++;
    if (mi < 4) m->vision_images[mi] += images;
    metrics_observe(&m->vision_duration, seconds);
}

void metrics_summary(const struct metrics *m, char *buf, size_t cap)
{
    if (!cap) return;
    buf[0] = 0;
    if (!m) return;
    size_t off = 0;
    for (int ep = 0; ep < METRICS_EP_COUNT; ep++)
        for (size_t si = 0; si <= METRICS_N_STATUS; si++) {
            if (!m->requests[ep][si] || off >= cap) continue;
            char st[8];
            if (si < METRICS_N_STATUS) snprintf(st, sizeof st, "%d", metrics_statuses[si]);
            else snprintf(st, sizeof st, "other");
            int n = snprintf(buf + off, cap - off, "%s/%s=%llu ", metrics_ep_names[ep], st,
                             (unsigned long long)m->requests[ep][si]);
            if (n > 0) off += (size_t)n;
        }
    if (off < cap)
        snprintf(buf + off, cap - off, "prompt_tokens=%llu generated_tokens=%llu", (unsigned long long)m->prompt_tokens,
                 (unsigned long long)m->generated_tokens);
}

/* ---- a growable text buffer ---- */

struct metrics_buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void metrics_reserve(struct metrics_buf *b, size_t extra)
{
    if (b->failed) return;
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void metrics_put(struct metrics_buf *b, const char *s, size_t n)
{
    metrics_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

__attribute__((format(printf, 2, 3))) static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = true; /* every line we print is short: a bug, not data */
        return;
    }
    metrics_put(b, tmp, (size_t)n);
}


/* Label value: \ -> \\, " -> \", newline -> \n, invalid UTF-8 -> U+FFFD. */
static void metrics_put_label_value(struct metrics_buf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        if (u[i] == '\\') metrics_put(b, "\\\\", 2), i++;
        else if (u[i] == '"') metrics_put(b, "\\\"", 2), i++;
        else if (u[i] == '\n') metrics_put(b, "\\n", 2), i++;
        else {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l) metrics_put(b, s + i, l), i += l;
            else metrics_put(b, "\xEF\xBF\xBD", 3), i++;
        }
    }
}

static void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_u64(struct metrics_buf *b, const char *name, uint64_t v)
{
    metrics_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* Shortest of %.15g / %.17g that reads back as the same double. */
static void metrics_fmt_double(char *buf, size_t cap, double v)
{
    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

static void metrics_hist_lines(struct metrics_buf *b, const char *name, const char *labels,
                               const struct metrics_hist *h)
{
    /* labels: "" or `endpoint="x",` (trailing comma; le follows) */
    uint64_t cum = 0;
    for (size_t i = 0; i < METRICS_N_BUCKETS; i++) {
        cum += h->bucket[i];
        metrics_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, metrics_buckets[i], (unsigned long long)cum);
    }
    metrics_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)h->count);
    char sum[40];
    metrics_fmt_double(sum, sizeof sum, h->sum);
    size_t ll = strlen(labels);
    if (ll) { /* drop the trailing comma for _sum / _count */
        metrics_printf(b, "%s_sum{%.*s} %s\n", name, (int)(ll - 1), labels, sum);
        metrics_printf(b, "%s_count{%.*s} %llu\n", name, (int)(ll - 1), labels, (unsigned long long)h->count);
    } else {
        metrics_printf(b, "%s_sum %s\n", name, sum);
        metrics_printf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

char *metrics_render(const struct metrics *m, const struct engine_metrics *em, const char *model_name,
                     size_t *len)
{
    struct metrics_buf b = {0};
    if (len) *len = 0;
    if (!m) return NULL;

    metrics_family(&b, "saserve_up", "gauge", "1 while the server is running.");
    metrics_u64(&b, "saserve_up", 1);

    metrics_family(&b, "saserve_model_info", "gauge", "The loaded model; the value is always 1.");
    metrics_put(&b, "saserve_model_info{model=\"", 26);
    metrics_put_label_value(&b, model_name ? model_name : "");
    metrics_put(&b, "\"} 1\n", 5);

    metrics_family(&b, "saserve_requests_total", "counter", "HTTP requests by endpoint and status.");
    for (int ep = 0; ep < METRICS_EP_COUNT; ep++) {
        for (size_t s = 0; s <= METRICS_N_STATUS; s++) {
            char st[8];
            if (s < METRICS_N_STATUS) snprintf(st, sizeof st, "%d", metrics_statuses[s]);
            else snprintf(st, sizeof st, "other");
            metrics_printf(&b, "saserve_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n", metrics_ep_names[ep],
                           st, (unsigned long long)m->requests[ep][s]);
        }
    }

    metrics_family(&b, "saserve_request_duration_seconds", "histogram",
                   "Time from request arrival to the last byte queued.");
    for (int ep = 0; ep < METRICS_EP_COUNT; ep++) {
        char labels[64];
        snprintf(labels, sizeof labels, "endpoint=\"%s\",", metrics_ep_names[ep]);
        metrics_hist_lines(&b, "saserve_request_duration_seconds", labels, &m->duration[ep]);
    }

    metrics_family(&b, "saserve_time_to_first_token_seconds", "histogram",
                   "Time from request arrival to the first generated token.");
    metrics_hist_lines(&b, "saserve_time_to_first_token_seconds", "", &m->ttft);

    metrics_family(&b, "saserve_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
    metrics_u64(&b, "saserve_prompt_tokens_total", m->prompt_tokens);
    metrics_family(&b, "saserve_generated_tokens_total", "counter", "Generated tokens of finished requests.");
    metrics_u64(&b, "saserve_generated_tokens_total", m->generated_tokens);
    metrics_family(&b, "saserve_kv_bytes_saved_total", "counter",
                   "KV cache bytes finished requests did not store thanks to Shared Attention (sum of cache.kv_bytes_saved).");
    metrics_u64(&b, "saserve_kv_bytes_saved_total", m->kv_saved_total);

    metrics_family(&b, "saserve_requests_shared_attention_total", "counter",
                   "Generation requests by Shared Attention setting.");
    metrics_u64(&b, "saserve_requests_shared_attention_total{mode=\"on\"}", m->share[1]);
    metrics_u64(&b, "saserve_requests_shared_attention_total{mode=\"off\"}", m->share[0]);
    metrics_family(&b, "saserve_requests_rebalance_total", "counter",
                   "Generation requests by attention re-balancer setting.");
    metrics_u64(&b, "saserve_requests_rebalance_total{mode=\"on\"}", m->rebalance[1]);
    metrics_u64(&b, "saserve_requests_rebalance_total{mode=\"off\"}", m->rebalance[0]);

    if (em) {
        metrics_family(&b, "saserve_queue_depth", "gauge", "Requests waiting for a sequence slot.");
        metrics_u64(&b, "saserve_queue_depth", em->queue_depth);
        metrics_family(&b, "saserve_queue_tokens", "gauge", "Prompt tokens of the waiting requests.");
        metrics_u64(&b, "saserve_queue_tokens", em->queue_tokens);
        metrics_family(&b, "saserve_queue_capacity", "gauge", "Waiting requests accepted before 503.");
        metrics_u64(&b, "saserve_queue_capacity", em->queue_max);
        metrics_family(&b, "saserve_active_sequences", "gauge", "Sequences being computed.");
        metrics_u64(&b, "saserve_active_sequences", em->active_sequences);
        metrics_family(&b, "saserve_slots", "gauge", "Sequences that can be computed concurrently.");
        metrics_u64(&b, "saserve_slots", em->n_slots);

        metrics_family(&b, "saserve_kv_bytes_used", "gauge", "KV cache bytes held by sequences, K and V.");
        metrics_u64(&b, "saserve_kv_bytes_used{kind=\"k\"}", em->kv_k_bytes_used);
        metrics_u64(&b, "saserve_kv_bytes_used{kind=\"v\"}", em->kv_v_bytes_used);
        metrics_family(&b, "saserve_kv_bytes_capacity", "gauge", "KV cache capacity in bytes.");
        metrics_u64(&b, "saserve_kv_bytes_capacity", em->kv_bytes_capacity);
        uint64_t v_saved = em->kv_bytes_saved > em->kv_k_bytes_saved ? em->kv_bytes_saved - em->kv_k_bytes_saved : 0;
        metrics_family(&b, "saserve_kv_bytes_saved", "gauge",
                       "KV cache bytes not held thanks to Shared Attention, K and V.");
        metrics_u64(&b, "saserve_kv_bytes_saved{kind=\"k\"}", em->kv_k_bytes_saved);
        metrics_u64(&b, "saserve_kv_bytes_saved{kind=\"v\"}", v_saved);

        metrics_family(&b, "saserve_active_sequences_peak", "gauge", "Most sequences computed at once since start.");
        metrics_u64(&b, "saserve_active_sequences_peak", em->active_sequences_peak);
        metrics_family(&b, "saserve_kv_page_bytes", "gauge", "Bytes of one KV page (block_tokens positions of one layer's K or V).");
        metrics_u64(&b, "saserve_kv_page_bytes", em->kv_page_bytes);
        metrics_family(&b, "saserve_kv_pages", "gauge",
                       "KV pool pages: total; used (by sequences or the prefix cache); reserved for admitted "
                       "sequences; held by the active sequences; cached (held by the prefix cache alone).");
        metrics_u64(&b, "saserve_kv_pages{state=\"total\"}", em->kv_pages_total);
        metrics_u64(&b, "saserve_kv_pages{state=\"used\"}", em->kv_pages_used);
        metrics_u64(&b, "saserve_kv_pages{state=\"reserved\"}", em->kv_pages_reserved);
        metrics_u64(&b, "saserve_kv_pages{state=\"held\"}", em->kv_pages_held);
        metrics_u64(&b, "saserve_kv_pages{state=\"cached\"}", em->kv_pages_cached);
        metrics_family(&b, "saserve_prefix_cache_hits_total", "counter", "Requests that reused a cached prompt prefix.");
        metrics_u64(&b, "saserve_prefix_cache_hits_total", em->prefix_hits_total);
        metrics_family(&b, "saserve_prefix_cache_tokens_total", "counter", "Prompt tokens taken from the prefix cache.");
        metrics_u64(&b, "saserve_prefix_cache_tokens_total", em->prefix_tokens_total);

        metrics_family(&b, "saserve_engine_steps_total", "counter", "Engine steps run.");
        metrics_u64(&b, "saserve_engine_steps_total", em->steps);
    }

    if (m->vision_on) {
        char lab[160];
        metrics_family(&b, "saserve_vision_requests_total", "counter",
                       "Image classification requests (/v2 infer) by model, recreation mode and status.");
        for (int mo = 0; mo < 5; mo++)
            for (size_t s = 0; s <= METRICS_N_STATUS; s++) {
                char st[8];
                if (s < METRICS_N_STATUS) snprintf(st, sizeof st, "%d", metrics_statuses[s]);
                else snprintf(st, sizeof st, "other");
                metrics_put(&b, "saserve_vision_requests_total{model=\"", strlen("saserve_vision_requests_total{model=\""));
                metrics_put_label_value(&b, m->vision_model);
                metrics_printf(&b, "\",mode=\"%s\",status=\"%s\"} %llu\n", metrics_vision_modes[mo], st,
                               (unsigned long long)m->vision_requests[mo][s]);
            }
        metrics_family(&b, "saserve_vision_request_duration_seconds", "histogram",
                       "Time from /v2 infer request arrival to the last byte queued.");
        snprintf(lab, sizeof lab, "model=\"%s\",", m->vision_model); /* a validated [A-Za-z0-9._-] name */
        metrics_hist_lines(&b, "saserve_vision_request_duration_seconds", lab, &m->vision_duration);
        metrics_family(&b, "saserve_vision_images_total", "counter", "Images classified, by model and recreation mode.");
        for (int mo = 0; mo < 4; mo++)
            metrics_printf(&b, "saserve_vision_images_total{model=\"%s\",mode=\"%s\"} %llu\n", m->vision_model,
                           metrics_vision_modes[mo], (unsigned long long)m->vision_images[mo]);
        if (em) {
            metrics_family(&b, "saserve_vision_queue_depth", "gauge", "Image classification jobs waiting or running.");
            metrics_u64(&b, "saserve_vision_queue_depth", em->vision_queue_depth);
        }
    }

    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}
