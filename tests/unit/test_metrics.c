/*
 * test_metrics.c - Prometheus exposition: counters, cumulative histograms,
 * fixed label sets, label escaping (RELIABILITY.md D8), and `promtool check
 * metrics` when /usr/bin/promtool exists (Debian package "prometheus").
 * White-box: includes server/metrics.c.
 */
#include "../../server/metrics.c"
#include "../test.h"

#include <unistd.h>

/* Value of the series whose line starts with exactly `series` followed by a
 * space; -1 if absent. */
static double series_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

static size_t count_lines(const char *text, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, pl) == 0) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

static void test_fresh_render(void)
{
    struct metrics *m = metrics_create();
    ASSERT_TRUE(m != NULL);
    size_t len;
    char *s = metrics_render(m, NULL, "tiny", &len);
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ(len, strlen(s));
    ASSERT_TRUE(len > 0 && s[len - 1] == '\n');
    ASSERT_NEAR(series_value(s, "saserve_up"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_model_info{model=\"tiny\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"completions\",status=\"200\"}"), 0, 0);
    ASSERT_NEAR(series_value(s, "saserve_prompt_tokens_total"), 0, 0);
    /* no engine: no engine gauges */
    ASSERT_TRUE(strstr(s, "saserve_queue_depth") == NULL);
    static const char *const families[] = {
        "saserve_up gauge", "saserve_model_info gauge", "saserve_requests_total counter",
        "saserve_request_duration_seconds histogram", "saserve_time_to_first_token_seconds histogram",
        "saserve_prompt_tokens_total counter", "saserve_generated_tokens_total counter",
        "saserve_requests_shared_attention_total counter", "saserve_requests_rebalance_total counter",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char t[128], h[128];
        snprintf(t, sizeof t, "# TYPE %s\n", families[i]);
        ASSERT_CONTAINS(s, t);
        snprintf(h, sizeof h, "# HELP %.*s ", (int)(strchr(families[i], ' ') - families[i]), families[i]);
        ASSERT_CONTAINS(s, h);
    }
    free(s);
    metrics_destroy(m);
    metrics_destroy(NULL);
}

static void test_counters_move(void)
{
    struct metrics *m = metrics_create();
    metrics_request_done(m, METRICS_EP_COMPLETIONS, 200, 0.03);
    metrics_request_done(m, METRICS_EP_COMPLETIONS, 200, 0.04);
    metrics_request_done(m, METRICS_EP_CHAT, 503, 0.001);
    metrics_request_done(m, METRICS_EP_CHAT, 418, 0.001);              /* not in the list -> "other" */
    metrics_request_done(m, METRICS_EP_OTHER, 404, 0.0);
    metrics_request_done(m, (enum metrics_endpoint)99, 200, 0.0);     /* bad endpoint -> "other" */
    metrics_request_done(m, (enum metrics_endpoint)-1, 200, 0.0);
    metrics_tokens(m, 10, 20);
    metrics_tokens(m, 5, 1);
    metrics_sharing(m, true, false);
    metrics_sharing(m, true, true);
    metrics_sharing(m, false, false);
    size_t len;
    char *s = metrics_render(m, NULL, "m", &len);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"completions\",status=\"200\"}"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"chat_completions\",status=\"503\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"chat_completions\",status=\"other\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"other\",status=\"404\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"other\",status=\"200\"}"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_total{endpoint=\"models\",status=\"200\"}"), 0, 0);
    ASSERT_NEAR(series_value(s, "saserve_prompt_tokens_total"), 15, 0);
    ASSERT_NEAR(series_value(s, "saserve_generated_tokens_total"), 21, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_shared_attention_total{mode=\"on\"}"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_shared_attention_total{mode=\"off\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_rebalance_total{mode=\"on\"}"), 1, 0);
    ASSERT_NEAR(series_value(s, "saserve_requests_rebalance_total{mode=\"off\"}"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_request_duration_seconds_count{endpoint=\"completions\"}"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_request_duration_seconds_sum{endpoint=\"completions\"}"), 0.07, 1e-12);
    free(s);
    metrics_destroy(m);
}

/* Checks every _bucket line of one series is cumulative and ends at _count. */
static void check_hist(const char *s, const char *name, const char *labels, uint64_t want_count)
{
    static const char *const les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                      "1", "2.5", "5", "10", "30", "60", "+Inf"};
    double prev = 0;
    char series[256];
    for (size_t i = 0; i < sizeof les / sizeof les[0]; i++) {
        snprintf(series, sizeof series, "%s_bucket{%sle=\"%s\"}", name, labels, les[i]);
        double v = series_value(s, series);
        if (v < 0) {
            TEST_FAIL_("missing %s", series);
            return;
        }
        if (v < prev) TEST_FAIL_("%s not cumulative: %g < %g", series, v, prev);
        prev = v;
    }
    ASSERT_NEAR(prev, (double)want_count, 0);
    size_t ll = strlen(labels);
    if (ll) snprintf(series, sizeof series, "%s_count{%.*s}", name, (int)(ll - 1), labels);
    else snprintf(series, sizeof series, "%s_count", name);
    ASSERT_NEAR(series_value(s, series), (double)want_count, 0);
}

static void test_histograms(void)
{
    struct metrics *m = metrics_create();
    /* 0.003 -> le 0.005; 0.005 -> le 0.005 (inclusive); 0.03 -> 0.05; 0.7 -> 1; 100 -> +Inf only;
     * negative and NaN count as 0 */
    double obs[] = {0.003, 0.005, 0.03, 0.7, 100, -1, NAN};
    double sum = 0;
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
        metrics_first_token(m, obs[i]);
        metrics_request_done(m, METRICS_EP_HEALTH, 200, obs[i]);
        if (obs[i] > 0) sum += obs[i];
    }
    size_t len;
    char *s = metrics_render(m, NULL, "m", &len);
    const char *t = "saserve_time_to_first_token_seconds";
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"0.005\"}"), 4, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"0.01\"}"), 4, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"0.05\"}"), 5, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"0.5\"}"), 5, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"1\"}"), 6, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"60\"}"), 6, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 7, 0);
    ASSERT_NEAR(series_value(s, "saserve_time_to_first_token_seconds_sum"), sum, 1e-9);
    check_hist(s, t, "", 7);
    check_hist(s, "saserve_request_duration_seconds", "endpoint=\"health\",", 7);
    check_hist(s, "saserve_request_duration_seconds", "endpoint=\"models\",", 0);
    ASSERT_NEAR(series_value(s, "saserve_request_duration_seconds_sum{endpoint=\"health\"}"), sum, 1e-9);
    /* every endpoint has its histogram */
    ASSERT_EQ(count_lines(s, "saserve_request_duration_seconds_count{"), METRICS_EP_COUNT);
    free(s);
    metrics_destroy(m);
}

static void test_engine_gauges(void)
{
    struct metrics *m = metrics_create();
    struct engine_metrics em = {
        .queue_depth = 3, .active_sequences = 2, .n_slots = 4, .queue_max = 64,
        .kv_bytes_used = 3000, .kv_k_bytes_used = 1000, .kv_v_bytes_used = 2000, .kv_bytes_capacity = 1 << 20,
        .kv_bytes_saved = 700, .kv_k_bytes_saved = 700, .steps = 12345,
    };
    size_t len;
    char *s = metrics_render(m, &em, "m", &len);
    ASSERT_NEAR(series_value(s, "saserve_queue_depth"), 3, 0);
    ASSERT_NEAR(series_value(s, "saserve_queue_capacity"), 64, 0);
    ASSERT_NEAR(series_value(s, "saserve_active_sequences"), 2, 0);
    ASSERT_NEAR(series_value(s, "saserve_slots"), 4, 0);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_used{kind=\"k\"}"), 1000, 0);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_used{kind=\"v\"}"), 2000, 0);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_capacity"), 1 << 20, 0);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_saved{kind=\"k\"}"), 700, 0);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_saved{kind=\"v\"}"), 0, 0);
    ASSERT_NEAR(series_value(s, "saserve_engine_steps_total"), 12345, 0);
    ASSERT_CONTAINS(s, "# TYPE saserve_kv_bytes_used gauge\n");
    free(s);
    /* saved below the K share never underflows */
    em.kv_bytes_saved = 100;
    s = metrics_render(m, &em, "m", &len);
    ASSERT_NEAR(series_value(s, "saserve_kv_bytes_saved{kind=\"v\"}"), 0, 0);
    free(s);
    metrics_destroy(m);
}

static void test_label_escaping(void)
{
    struct metrics *m = metrics_create();
    size_t len;
    char *s = metrics_render(m, NULL, "a\\b\"c\nd", &len);
    ASSERT_CONTAINS(s, "saserve_model_info{model=\"a\\\\b\\\"c\\nd\"} 1\n");
    free(s);
    s = metrics_render(m, NULL, "x\xff" "y", &len);
    ASSERT_CONTAINS(s, "saserve_model_info{model=\"x\xef\xbf\xbdy\"} 1\n");
    free(s);
    s = metrics_render(m, NULL, NULL, &len);
    ASSERT_CONTAINS(s, "saserve_model_info{model=\"\"} 1\n");
    free(s);
    metrics_destroy(m);
}

/* D8: many requests with arbitrary statuses / endpoints never add series. */
static void test_series_bounded(void)
{
    struct metrics *m = metrics_create();
    size_t len;
    char *s0 = metrics_render(m, NULL, "m", &len);
    size_t lines0 = count_lines(s0, "saserve_");
    uint32_t x = 12345;
    for (int i = 0; i < 10000; i++) {
        x = x * 1103515245u + 12345u;
        metrics_request_done(m, (enum metrics_endpoint)(x % 9), (int)(x >> 8) % 700, (x % 1000) / 100.0);
        metrics_first_token(m, (x % 77) / 10.0);
        metrics_sharing(m, x & 1, x & 2);
    }
    char *s1 = metrics_render(m, NULL, "m", &len);
    ASSERT_EQ(count_lines(s1, "saserve_"), lines0);
    double total = 0;
    static const char *const eps[] = {"completions", "chat_completions", "models", "health", "metrics",
                                      "v2_infer",    "v2_models",        "v2_health", "tokenize", "embeddings", "ui",
                                      "similarity",  "other"};
    static const char *const sts[] = {"200", "204", "304", "400", "401", "404", "405", "408", "413", "414",
                                      "429", "431", "499", "500", "501", "503", "other"};
    for (size_t e = 0; e < sizeof eps / sizeof eps[0]; e++) {
        for (size_t k = 0; k < sizeof sts / sizeof sts[0]; k++) {
            char series[128];
            snprintf(series, sizeof series, "saserve_requests_total{endpoint=\"%s\",status=\"%s\"}", eps[e], sts[k]);
            double v = series_value(s1, series);
            ASSERT_TRUE(v >= 0);
            total += v;
        }
    }
    ASSERT_NEAR(total, 10000, 0);
    free(s0);
    free(s1);
    metrics_destroy(m);
}

static void test_promtool(void)
{
    if (access("/usr/bin/promtool", X_OK) != 0) {
        printf("note: /usr/bin/promtool not installed (Debian package \"prometheus\"); skipping promtool check\n");
        return;
    }
    struct metrics *m = metrics_create();
    metrics_request_done(m, METRICS_EP_COMPLETIONS, 200, 0.2);
    metrics_request_done(m, METRICS_EP_CHAT, 400, 0.001);
    metrics_first_token(m, 0.05);
    metrics_tokens(m, 7, 9);
    metrics_sharing(m, true, false);
    struct engine_metrics em = {.queue_depth = 1, .active_sequences = 1, .n_slots = 4, .queue_max = 8,
                                .kv_k_bytes_used = 10, .kv_v_bytes_used = 20, .kv_bytes_used = 30,
                                .kv_bytes_capacity = 1000, .kv_bytes_saved = 5, .kv_k_bytes_saved = 5, .steps = 3};
    size_t len;
    char *s = metrics_render(m, &em, "model \"q\"\\\n", &len);
    char path[] = "/tmp/saserve_metrics_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    if (fd >= 0) {
        ASSERT_EQ(write(fd, s, len), (long long)len);
        close(fd);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
        int rc = system(cmd);
        if (rc != 0) TEST_FAIL_("promtool check metrics failed (status %d) on:\n%s", rc, s);
        unlink(path);
    }
    free(s);
    metrics_destroy(m);
}

/* The phiDNN families appear only with a vision model; requests count by mode and status,
 * images add up by mode, and an unknown mode is "none". */
static void test_vision_families(void)
{
    struct metrics *m = metrics_create();
    size_t len;
    char *s0 = metrics_render(m, NULL, "m", &len);
    ASSERT_TRUE(s0 && strstr(s0, "saserve_vision_") == NULL);
    metrics_vision_model(m, "phidnn-fmnist");
    metrics_vision_request(m, 2, 200, 0.02, 64);  /* sr */
    metrics_vision_request(m, 2, 200, 0.03, 6);
    metrics_vision_request(m, 3, 503, 0.001, 0);  /* inpaint, busy */
    metrics_vision_request(m, -1, 400, 0.0, 0);   /* rejected before the mode was known */
    metrics_vision_request(m, 3, 418, 0.0, 0);    /* status not in the list */
    char *s1 = metrics_render(m, NULL, "m", &len);
    ASSERT_NEAR(series_value(s1, "saserve_vision_requests_total{model=\"phidnn-fmnist\",mode=\"sr\",status=\"200\"}"), 2, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_requests_total{model=\"phidnn-fmnist\",mode=\"inpaint\",status=\"503\"}"), 1, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_requests_total{model=\"phidnn-fmnist\",mode=\"none\",status=\"400\"}"), 1, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_requests_total{model=\"phidnn-fmnist\",mode=\"inpaint\",status=\"other\"}"), 1, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_images_total{model=\"phidnn-fmnist\",mode=\"sr\"}"), 70, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_images_total{model=\"phidnn-fmnist\",mode=\"off\"}"), 0, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_request_duration_seconds_count{model=\"phidnn-fmnist\"}"), 5, 0);
    ASSERT_NEAR(series_value(s1, "saserve_vision_request_duration_seconds_bucket{model=\"phidnn-fmnist\",le=\"0.025\"}"), 4, 0);
    free(s0);
    free(s1);
    metrics_destroy(m);
}

int main(void)
{
    TEST_RUN(test_vision_families);
    TEST_RUN(test_fresh_render);
    TEST_RUN(test_counters_move);
    TEST_RUN(test_histograms);
    TEST_RUN(test_engine_gauges);
    TEST_RUN(test_label_escaping);
    TEST_RUN(test_series_bounded);
    TEST_RUN(test_promtool);
    TEST_DONE();
}
