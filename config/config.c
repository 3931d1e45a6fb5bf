/*
 * config.c - the settings table and the four sources it drives: defaults,
 * the JSON file, command-line flags and SASERVE_* variables (see config.h).
 *
 * Every value, whatever its source, goes through the same per-type setter,
 * so a range or syntax rule is written once. Loading works on a private copy
 * that replaces the caller's struct only when every source was accepted.
 */
#include "config.h"

#include "engine/utf8.h"

#include "engine/defaults.h"
#include "engine/errors.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum config_type { CONFIG_TYPE_STRING, CONFIG_TYPE_UINT, CONFIG_TYPE_BOOL, CONFIG_TYPE_FLOAT, CONFIG_TYPE_SIZE };

struct config_setting {
    const char *key;          /* JSON name */
    enum config_type type;    /* STRING: char[size]; UINT: uint32_t; BOOL: bool; FLOAT: float; SIZE: uint64_t */
    size_t offset;            /* of the field in struct config */
    size_t size;              /* of the field (a string's capacity, NUL included) */
    const char *def;          /* default, written in the flag syntax */
    double min, max;          /* accepted range; for a string, min is the least length and max is unused */
    const char *env;          /* SASERVE_ + KEY upper-cased */
    const char *flag;         /* -- + key with '_' as '-' */
    char short_flag;          /* e.g. 'm' for -m; 0 = none */
    const char *const *choices; /* strings: the accepted values (NULL-terminated); NULL = any text */
    /* strings: extra syntax check; returns false and fills why on a bad value */
    bool (*check)(const char *value, char *why, size_t why_len);
    const char *help;
};

#define CONFIG_FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

static const char *const config_chat_templates[] = {"", "llama2", "chatml", "llama3", NULL};
static const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};

static bool config_check_spans(const char *value, char *why, size_t why_len);

/* clang-format off */
static const struct config_setting config_settings[] = {
    {"model", CONFIG_TYPE_STRING, CONFIG_FIELD(model), "", 0, 0, "SASERVE_MODEL", "--model", 'm', NULL, NULL,
     "path to the GGUF model file"},
    {"served_model_name", CONFIG_TYPE_STRING, CONFIG_FIELD(served_model_name), "", 0, 0, "SASERVE_SERVED_MODEL_NAME",
     "--served-model-name", 0, NULL, NULL, "the model id clients see (/v1/models, answers); \"\" = the model's own name"},
    {"host", CONFIG_TYPE_STRING, CONFIG_FIELD(host), "127.0.0.1", 1, 0, "SASERVE_HOST", "--host", 0, NULL, NULL,
     "address to listen on"},
    {"port", CONFIG_TYPE_UINT, CONFIG_FIELD(port), "8080", 1, 65535, "SASERVE_PORT", "--port", 0, NULL, NULL,
     "TCP port to listen on"},
    {"threads", CONFIG_TYPE_UINT, CONFIG_FIELD(threads), SA_DEFAULT_STR(SA_DEFAULT_THREADS), 1, 256, "SASERVE_THREADS", "--threads", 0, NULL,
     NULL, "compute threads"},
    {"ctx", CONFIG_TYPE_UINT, CONFIG_FIELD(ctx), "0", 0, 1048576, "SASERVE_CTX", "--ctx", 0, NULL, NULL,
     "tokens per sequence, prompt and generated (0 = the model's training context)"},
    {"slots", CONFIG_TYPE_UINT, CONFIG_FIELD(slots), SA_DEFAULT_STR(SA_DEFAULT_SLOTS), 1, 256, "SASERVE_SLOTS", "--slots", 0, NULL, NULL,
     "sequences computed concurrently"},
    {"queue_max", CONFIG_TYPE_UINT, CONFIG_FIELD(queue_max), SA_DEFAULT_STR(SA_DEFAULT_QUEUE_MAX), 0, 65536, "SASERVE_QUEUE_MAX", "--queue-max",
     0, NULL, NULL, "requests waiting for a slot before the server answers 503"},
    {"queue_max_tokens", CONFIG_TYPE_UINT, CONFIG_FIELD(queue_max_tokens), "262144", 0, 1u << 30,
     "SASERVE_QUEUE_MAX_TOKENS", "--queue-max-tokens", 0, NULL, NULL,
     "prompt tokens waiting before the server answers 503 (0 = no limit; an empty queue takes any request)"},
    {"prefill_chunk", CONFIG_TYPE_UINT, CONFIG_FIELD(prefill_chunk), SA_DEFAULT_STR(SA_DEFAULT_PREFILL_CHUNK), 1, 8192, "SASERVE_PREFILL_CHUNK",
     "--prefill-chunk", 0, NULL, NULL, "most prompt tokens prefilled in one step, over all sequences"},
    {"kv_budget", CONFIG_TYPE_SIZE, CONFIG_FIELD(kv_budget), "0", 0, 1024 * GIB, "SASERVE_KV_BUDGET",
     "--kv-budget", 0, NULL, NULL, "bytes of the paged KV pool (0 = slots full contexts without sharing)"},
    {"kv_block", CONFIG_TYPE_UINT, CONFIG_FIELD(kv_block), SA_DEFAULT_STR(SA_DEFAULT_KV_BLOCK), 1, 4096, "SASERVE_KV_BLOCK", "--kv-block", 0,
     NULL, NULL, "token positions per KV page"},
    {"kv_f16", CONFIG_TYPE_BOOL, CONFIG_FIELD(kv_f16), "false", 0, 1, "SASERVE_KV_F16", "--kv-f16", 0, NULL, NULL,
     "store the KV cache as F16 (half the bytes per token; attention reads it back to F32)"},
    {"prefix_cache", CONFIG_TYPE_BOOL, CONFIG_FIELD(prefix_cache), "true", 0, 1, "SASERVE_PREFIX_CACHE",
     "--prefix-cache", 0, NULL, NULL, "reuse cached prompt prefixes of earlier requests with the same plan"},
    {"mmap", CONFIG_TYPE_BOOL, CONFIG_FIELD(mmap), "false", 0, 1, "SASERVE_MMAP", "--mmap", 0, NULL, NULL,
     "memory-map the model file instead of reading it"},
    {"share", CONFIG_TYPE_BOOL, CONFIG_FIELD(share), "false", 0, 1, "SASERVE_SHARE", "--share", 0, NULL, NULL,
     "Shared Attention on by default (a request overrides it with ?share=on|off)"},
    {"share_spans", CONFIG_TYPE_STRING, CONFIG_FIELD(share_spans), "auto", 0, 0, "SASERVE_SHARE_SPANS",
     "--share-spans", 0, NULL, config_check_spans,
     "Shared Attention spans: 'auto' (calibrated at start-up), 'off', or 'a-b,c-d'"},
    {"share_threshold", CONFIG_TYPE_FLOAT, CONFIG_FIELD(share_threshold), SA_DEFAULT_STR(SA_DEFAULT_SHARE_THRESHOLD), -1, 1,
     "SASERVE_SHARE_THRESHOLD", "--share-threshold", 0, NULL, NULL,
     "least attention similarity of a layer to its source for 'auto' spans"},
    {"temperature", CONFIG_TYPE_FLOAT, CONFIG_FIELD(temperature), SA_DEFAULT_STR(SA_DEFAULT_TEMPERATURE), 0, 2,
     "SASERVE_TEMPERATURE", "--temperature", 0, NULL, NULL,
     "sampling temperature of a request that gives none (and of saserve generate)"},
    {"repeat_last_n", CONFIG_TYPE_UINT, CONFIG_FIELD(repeat_last_n), SA_DEFAULT_STR(SA_DEFAULT_REPEAT_LAST_N), 0,
     1u << 20, "SASERVE_REPEAT_LAST_N", "--repeat-last-n", 0, NULL, NULL,
     "tokens repeat_penalty looks back over (0 = the whole answer)"},
    {"rebalance", CONFIG_TYPE_BOOL, CONFIG_FIELD(rebalance), "false", 0, 1, "SASERVE_REBALANCE", "--rebalance",
     0, NULL, NULL, "attention re-balancer on by default (a request overrides it with ?rebalance=on|off)"},
    {"rebalance_alpha", CONFIG_TYPE_FLOAT, CONFIG_FIELD(rebalance_alpha), SA_DEFAULT_STR(SA_DEFAULT_REBALANCE_ALPHA), -10, 10,
     "SASERVE_REBALANCE_ALPHA", "--rebalance-alpha", 0, NULL, NULL, "re-balancer boost strength (alpha)"},
    {"rebalance_tau", CONFIG_TYPE_FLOAT, CONFIG_FIELD(rebalance_tau), SA_DEFAULT_STR(SA_DEFAULT_REBALANCE_TAU), 0, 1, "SASERVE_REBALANCE_TAU",
     "--rebalance-tau", 0, NULL, NULL, "re-balancer layer-0 attention threshold (tau)"},
    {"rebalance_renormalize", CONFIG_TYPE_BOOL, CONFIG_FIELD(rebalance_renormalize), "false", 0, 1,
     "SASERVE_REBALANCE_RENORMALIZE", "--rebalance-renormalize", 0, NULL, NULL,
     "renormalise re-balanced attention rows (the reference does not)"},
    {"max_body", CONFIG_TYPE_SIZE, CONFIG_FIELD(max_body), "1m", KIB, 64 * MIB, "SASERVE_MAX_BODY",
     "--max-body", 0, NULL, NULL, "largest request body in bytes (413 above)"},
    {"max_prompt_bytes", CONFIG_TYPE_SIZE, CONFIG_FIELD(max_prompt_bytes), "256k", 1, 16 * MIB,
     "SASERVE_MAX_PROMPT_BYTES", "--max-prompt-bytes", 0, NULL, NULL, "largest prompt text in bytes (400 above)"},
    {"max_tokens_limit", CONFIG_TYPE_UINT, CONFIG_FIELD(max_tokens_limit), "4096", 1, 1048576,
     "SASERVE_MAX_TOKENS_LIMIT", "--max-tokens-limit", 0, NULL, NULL, "largest max_tokens a request may ask for"},
    {"max_n", CONFIG_TYPE_UINT, CONFIG_FIELD(max_n), "8", 1, 64, "SASERVE_MAX_N", "--max-n", 0, NULL, NULL,
     "largest n (choices per request)"},
    {"max_logprobs", CONFIG_TYPE_UINT, CONFIG_FIELD(max_logprobs), "5", 0, 20, "SASERVE_MAX_LOGPROBS",
     "--max-logprobs", 0, NULL, NULL, "largest logprobs a request may ask for"},
    {"max_stop", CONFIG_TYPE_UINT, CONFIG_FIELD(max_stop), "16", 1, 16, "SASERVE_MAX_STOP", "--max-stop", 0, NULL,
     NULL, "most stop strings a request may give (each 1..256 bytes; 400 above)"},
    {"request_timeout", CONFIG_TYPE_UINT, CONFIG_FIELD(request_timeout), "15", 1, 3600, "SASERVE_REQUEST_TIMEOUT",
     "--request-timeout", 0, NULL, NULL, "seconds a client has to send the headers and the body"},
    {"idle_timeout", CONFIG_TYPE_UINT, CONFIG_FIELD(idle_timeout), "30", 1, 3600, "SASERVE_IDLE_TIMEOUT",
     "--idle-timeout", 0, NULL, NULL, "seconds an idle keep-alive connection is kept open"},
    {"shutdown_grace", CONFIG_TYPE_UINT, CONFIG_FIELD(shutdown_grace), "10", 0, 3600, "SASERVE_SHUTDOWN_GRACE",
     "--shutdown-grace", 0, NULL, NULL, "seconds in-flight requests may finish after SIGTERM"},
    {"max_connections", CONFIG_TYPE_UINT, CONFIG_FIELD(max_connections), "256", 1, 65536,
     "SASERVE_MAX_CONNECTIONS", "--max-connections", 0, NULL, NULL, "concurrent client connections (503 above)"},
    {"per_ip_connections", CONFIG_TYPE_UINT, CONFIG_FIELD(per_ip_connections), "32", 1, 65536,
     "SASERVE_PER_IP_CONNECTIONS", "--per-ip-connections", 0, NULL, NULL,
     "concurrent connections from one client address (429 above)"},
    {"max_stream_buffer", CONFIG_TYPE_SIZE, CONFIG_FIELD(max_stream_buffer), "4m", 4 * KIB, 1 * GIB,
     "SASERVE_MAX_STREAM_BUFFER", "--max-stream-buffer", 0, NULL, NULL,
     "bytes of a stream not yet taken by its client; a client that reads slower is cut (counted as 499)"},
    {"connection_memory", CONFIG_TYPE_SIZE, CONFIG_FIELD(connection_memory), "64k", 8 * KIB, 1 * MIB,
     "SASERVE_CONNECTION_MEMORY", "--connection-memory", 0, NULL, NULL,
     "per-connection buffer for the request line and headers (431/414 above)"},
    {"cors_origins", CONFIG_TYPE_STRING, CONFIG_FIELD(cors_origins), "", 0, 0, "SASERVE_CORS_ORIGINS",
     "--cors-origins", 0, NULL, NULL,
     "browser origins allowed to call the API (CORS): \"\" = none (off), \"*\" = any, or a comma-separated list"},
    {"api_key", CONFIG_TYPE_STRING, CONFIG_FIELD(api_key), "", 0, 0, "SASERVE_API_KEY", "--api-key", 0, NULL,
     NULL, "bearer token clients must send (empty = no authentication)"},
    {"chat_template", CONFIG_TYPE_STRING, CONFIG_FIELD(chat_template), "", 0, 0, "SASERVE_CHAT_TEMPLATE",
     "--chat-template", 0, config_chat_templates, NULL,
     "chat prompt format (empty = detected from the model's metadata)"},
    {"log_level", CONFIG_TYPE_STRING, CONFIG_FIELD(log_level), "info", 0, 0, "SASERVE_LOG_LEVEL", "--log-level",
     0, config_log_levels, NULL, "least severity that is logged"},
    {"vision_model", CONFIG_TYPE_STRING, CONFIG_FIELD(vision_model), "", 0, 0, "SASERVE_VISION_MODEL",
     "--vision-model", 0, NULL, NULL,
     "phiDNN image classifier (GGUF, architecture phidnn) served at /v2/models/{name} (empty = none)"},
    {"vision_max_batch", CONFIG_TYPE_UINT, CONFIG_FIELD(vision_max_batch), "64", 1, 1024,
     "SASERVE_VISION_MAX_BATCH", "--vision-max-batch", 0, NULL, NULL,
     "most images in one /v2 infer request (400 above)"},
    {"vision_queue_max", CONFIG_TYPE_UINT, CONFIG_FIELD(vision_queue_max), "16", 1, 4096,
     "SASERVE_VISION_QUEUE_MAX", "--vision-queue-max", 0, NULL, NULL,
     "image classification jobs waiting before the server answers 503"},
};
/* clang-format on */

#define CONFIG_N_SETTINGS (sizeof config_settings / sizeof config_settings[0])
#define CONFIG_ENV_PREFIX "SASERVE_"
#define CONFIG_ENV_FILE "SASERVE_CONFIG"
#define CONFIG_ECHO_MAX 64 /* bytes of a bad value quoted back in a message */

/* ---- messages ---- */

static int config_fail(char *msg, size_t msg_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int config_fail(char *msg, size_t msg_len, int code, const char *fmt, ...)
{
    if (msg && msg_len) {
        int n = snprintf(msg, msg_len, "config: ");
        if (n > 0 && (size_t)n < msg_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg + n, msg_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

/* "config: KEY: WHY (from SOURCE)" */
static int config_fail_setting(char *msg, size_t msg_len, const struct config_setting *s, const char *from,
                               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int config_fail_setting(char *msg, size_t msg_len, const struct config_setting *s, const char *from,
                               const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "%s: %s (from %s)", s->key, why, from);
}

/* Edit distance, for "did you mean"; names longer than 63 bytes never match. */
static size_t config_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[64];
    if (la > 63 || lb > 63) return (size_t)-1;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

enum config_name_kind { CONFIG_NAME_KEY, CONFIG_NAME_FLAG, CONFIG_NAME_ENV };

static const char *config_name_of(const struct config_setting *s, enum config_name_kind kind)
{
    return kind == CONFIG_NAME_KEY ? s->key : kind == CONFIG_NAME_FLAG ? s->flag : s->env;
}

/* " (did you mean 'port'?)" for the closest name within 2 edits, else "". */
static void config_suggest(const char *name, size_t len, enum config_name_kind kind, char *out, size_t out_len)
{
    const char *best = NULL;
    size_t best_d = 3;
    out[0] = 0;
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const char *cand = config_name_of(&config_settings[i], kind);
        size_t d = config_distance(name, len, cand, strlen(cand));
        if (d < best_d) best_d = d, best = cand;
    }
    if (best) snprintf(out, out_len, " (did you mean '%s'?)", best);
}

/* ---- value syntax ---- */

static bool config_ascii_equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* Whole-string decimal integer (optional '-', no spaces, no '+', no hex).
 * Returns 0, 1 (not an integer) or 2 (does not fit in a long long). */
static int config_parse_integer(const char *t, long long *out)
{
    if (!(isdigit((unsigned char)t[0]) || (t[0] == '-' && isdigit((unsigned char)t[1])))) return 1;
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (*end) return 1;
    if (errno == ERANGE) return 2;
    *out = v;
    return 0;
}

/* Digits with an optional k/m/g (or K/M/G) suffix, powers of 1024. Same returns. */
static int config_parse_size(const char *t, long long *out)
{
    if (!isdigit((unsigned char)t[0])) return 1;
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    bool overflow = errno == ERANGE;
    long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1LL << 10, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1LL << 20, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1LL << 30, end++;
    if (*end) return 1;
    if (overflow || v > LLONG_MAX / mult) return 2;
    *out = v * mult;
    return 0;
}

/* Whole-string decimal number (strtod); non-finite values are the caller's to reject. */
static bool config_parse_float(const char *t, double *out)
{
    if (!t[0] || isspace((unsigned char)t[0])) return false;
    char *end;
    double v = strtod(t, &end);
    if (*end) return false;
    *out = v; /* ERANGE: overflow gives +-HUGE_VAL (rejected as not finite), underflow a tiny value */
    return true;
}

static bool config_parse_bool(const char *t, bool *out)
{
    static const char *const yes[] = {"1", "true", "on", "yes"};
    static const char *const no[] = {"0", "false", "off", "no"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (config_ascii_equal_nocase(t, yes[i])) return *out = true, true;
        if (config_ascii_equal_nocase(t, no[i])) return *out = false, true;
    }
    return false;
}

/* share_spans: "auto", "off", "none", "" or "a-b,c-d" ("a" alone = "a-a").
 * Only the syntax is checked here; layer numbers are checked against the
 * model when it is loaded. */
static bool config_check_spans(const char *value, char *why, size_t why_len)
{
    if (!*value || !strcmp(value, "auto") || !strcmp(value, "off") || !strcmp(value, "none")) return true;
    const char *s = value;
    for (;;) {
        const char *start = s;
        unsigned long a, b;
        char *end;
        while (*s == ' ') s++;
        if (!isdigit((unsigned char)*s)) goto bad;
        a = strtoul(s, &end, 10);
        s = end;
        b = a;
        if (*s == '-') {
            s++;
            if (!isdigit((unsigned char)*s)) goto bad;
            b = strtoul(s, &end, 10);
            s = end;
        }
        while (*s == ' ') s++;
        if (*s != ',' && *s) goto bad;
        if (a < 1 || b < a || b > 65535) {
            snprintf(why, why_len, "span '%.*s': layers must satisfy 1 <= a <= b <= 65535", (int)(s - start), start);
            return false;
        }
        if (!*s) return true;
        s++;
        continue;
    bad:
        snprintf(why, why_len, "span '%.*s' is not 'a-b' with layer numbers ('auto', 'off' or e.g. '3-4,7-9')",
                 (int)strcspn(start, ","), start);
        return false;
    }
}

/* ---- formatting ---- */

/* Bytes with the largest exact k/m/g suffix ("1m", "1536k", "100"). */
static void config_format_size(uint64_t v, char *buf, size_t n)
{
    static const char suffix[] = "gmk";
    for (int i = 0; i < 3; i++) {
        uint64_t unit = 1ULL << (10 * (3 - i));
        if (v && v % unit == 0) {
            snprintf(buf, n, "%llu%c", (unsigned long long)(v / unit), suffix[i]);
            return;
        }
    }
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* The shortest text that reads back as the same float, always with a '.' or
 * an exponent so JSON readers see a real ("0.9", "-1.0", "1e-05"). */
static void config_format_float(float v, char *buf, size_t n)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) {
        size_t len = strlen(buf);
        if (len + 3 <= n) memcpy(buf + len, ".0", 3);
    }
}

static void config_format_range(const struct config_setting *s, char *buf, size_t n)
{
    if (s->type == CONFIG_TYPE_SIZE) {
        char lo[32], hi[32];
        config_format_size((uint64_t)s->min, lo, sizeof lo);
        config_format_size((uint64_t)s->max, hi, sizeof hi);
        snprintf(buf, n, "%s..%s", lo, hi);
    } else if (s->type == CONFIG_TYPE_FLOAT) {
        snprintf(buf, n, "%g..%g", s->min, s->max);
    } else {
        snprintf(buf, n, "%.0f..%.0f", s->min, s->max);
    }
}

/* "'debug', 'info', 'warn', 'error'" */
static void config_format_choices(const struct config_setting *s, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; s->choices[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s'%s'", i ? ", " : "", s->choices[i]);
}

/* ---- setters: every source ends here ---- */

static void *config_field(struct config *c, const struct config_setting *s)
{
    return (char *)c + s->offset;
}

static const void *config_field_const(const struct config *c, const struct config_setting *s)
{
    return (const char *)c + s->offset;
}

/* UINT and SIZE. shown is the value as the user wrote it. */
static int config_set_integer(struct config *c, const struct config_setting *s, long long v, const char *shown,
                              const char *from, char *msg, size_t msg_len)
{
    if ((double)v < s->min || (double)v > s->max) {
        char range[80];
        config_format_range(s, range, sizeof range);
        return config_fail_setting(msg, msg_len, s, from, "%.*s is out of range %s", CONFIG_ECHO_MAX, shown, range);
    }
    if (s->type == CONFIG_TYPE_UINT)
        *(uint32_t *)config_field(c, s) = (uint32_t)v;
    else
        *(uint64_t *)config_field(c, s) = (uint64_t)v;
    return 0;
}

static int config_set_float(struct config *c, const struct config_setting *s, double v, const char *shown,
                            const char *from, char *msg, size_t msg_len)
{
    if (!isfinite(v))
        return config_fail_setting(msg, msg_len, s, from, "%.*s is not a finite number", CONFIG_ECHO_MAX, shown);
    if (v < s->min || v > s->max) {
        char range[80];
        config_format_range(s, range, sizeof range);
        return config_fail_setting(msg, msg_len, s, from, "%.*s is out of range %s", CONFIG_ECHO_MAX, shown, range);
    }
    *(float *)config_field(c, s) = (float)v;
    return 0;
}

static int config_set_string(struct config *c, const struct config_setting *s, const char *v, const char *from,
                             char *msg, size_t msg_len)
{
    size_t len = strlen(v);
    if (!utf8_valid((const unsigned char *)v, strlen(v))) return config_fail_setting(msg, msg_len, s, from, "value is not valid UTF-8");
    if (len >= s->size)
        return config_fail_setting(msg, msg_len, s, from, "value is %zu bytes long, the limit is %zu", len,
                                   s->size - 1);
    if ((double)len < s->min) return config_fail_setting(msg, msg_len, s, from, "value must not be empty");
    if (s->choices) {
        size_t i = 0;
        while (s->choices[i] && strcmp(s->choices[i], v)) i++;
        if (!s->choices[i]) {
            char list[200];
            config_format_choices(s, list, sizeof list);
            return config_fail_setting(msg, msg_len, s, from, "'%.*s' is not one of %s", CONFIG_ECHO_MAX, v, list);
        }
    }
    if (s->check) {
        char why[200];
        if (!s->check(v, why, sizeof why)) return config_fail_setting(msg, msg_len, s, from, "%s", why);
    }
    memcpy(config_field(c, s), v, len + 1);
    return 0;
}

/* A value in the flag / environment syntax. */
static int config_set_text(struct config *c, const struct config_setting *s, const char *text, const char *from,
                           char *msg, size_t msg_len)
{
    long long iv;
    double fv;
    bool bv;
    int rc;
    switch (s->type) {
    case CONFIG_TYPE_STRING:
        return config_set_string(c, s, text, from, msg, msg_len);
    case CONFIG_TYPE_UINT:
        rc = config_parse_integer(text, &iv);
        if (rc == 1)
            return config_fail_setting(msg, msg_len, s, from, "'%.*s' is not an integer", CONFIG_ECHO_MAX, text);
        if (rc == 2) iv = LLONG_MAX; /* reported as out of range */
        return config_set_integer(c, s, iv, text, from, msg, msg_len);
    case CONFIG_TYPE_SIZE:
        rc = config_parse_size(text, &iv);
        if (rc == 1)
            return config_fail_setting(msg, msg_len, s, from,
                                       "'%.*s' is not a size (bytes, or a number with a k/m/g suffix such as 256m)",
                                       CONFIG_ECHO_MAX, text);
        if (rc == 2) iv = LLONG_MAX;
        return config_set_integer(c, s, iv, text, from, msg, msg_len);
    case CONFIG_TYPE_FLOAT:
        if (!config_parse_float(text, &fv))
            return config_fail_setting(msg, msg_len, s, from, "'%.*s' is not a number", CONFIG_ECHO_MAX, text);
        return config_set_float(c, s, fv, text, from, msg, msg_len);
    case CONFIG_TYPE_BOOL:
        if (!config_parse_bool(text, &bv))
            return config_fail_setting(msg, msg_len, s, from, "'%.*s' is not a boolean (true/false, on/off, 1/0)",
                                       CONFIG_ECHO_MAX, text);
        *(bool *)config_field(c, s) = bv;
        return 0;
    }
    return config_fail(msg, msg_len, SA_ERR_INTERNAL, "%s: unknown setting type", s->key);
}

static const char *config_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* A value from the JSON file: JSON types must match the setting's type. */
static int config_set_json(struct config *c, const struct config_setting *s, const json_t *v, const char *from,
                           char *msg, size_t msg_len)
{
    char shown[64];
    const char *want = "";
    switch (s->type) {
    case CONFIG_TYPE_STRING:
        if (!json_is_string(v)) {
            want = "a string";
            break;
        }
        return config_set_string(c, s, json_string_value(v), from, msg, msg_len);
    case CONFIG_TYPE_UINT:
        if (!json_is_integer(v)) {
            want = "an integer";
            break;
        }
        snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(v));
        return config_set_integer(c, s, (long long)json_integer_value(v), shown, from, msg, msg_len);
    case CONFIG_TYPE_SIZE:
        if (json_is_string(v)) return config_set_text(c, s, json_string_value(v), from, msg, msg_len);
        if (!json_is_integer(v)) {
            want = "an integer or a size string such as \"256m\"";
            break;
        }
        snprintf(shown, sizeof shown, "%lld", (long long)json_integer_value(v));
        return config_set_integer(c, s, (long long)json_integer_value(v), shown, from, msg, msg_len);
    case CONFIG_TYPE_FLOAT:
        if (!json_is_number(v)) {
            want = "a number";
            break;
        }
        snprintf(shown, sizeof shown, "%g", json_number_value(v));
        return config_set_float(c, s, json_number_value(v), shown, from, msg, msg_len);
    case CONFIG_TYPE_BOOL:
        if (!json_is_boolean(v)) {
            want = "true or false";
            break;
        }
        *(bool *)config_field(c, s) = json_is_true(v);
        return 0;
    }
    return config_fail_setting(msg, msg_len, s, from, "expected %s, got %s", want, config_json_type_name(v));
}

/* ---- sources ---- */

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        /* The defaults go through the same parser as user values; test_config
         * checks that every one of them is accepted, so this cannot fail. */
        (void)config_set_text(c, &config_settings[i], config_settings[i].def, "the defaults", NULL, 0);
    }
}

static const struct config_setting *config_find(const char *name, size_t len, enum config_name_kind kind)
{
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const char *cand = config_name_of(&config_settings[i], kind);
        if (strlen(cand) == len && !memcmp(cand, name, len)) return &config_settings[i];
    }
    return NULL;
}

static int config_apply_file(struct config *c, const char *path, char *msg, size_t msg_len)
{
    if (strlen(path) >= sizeof c->config_path)
        return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "the config file path is longer than %zu bytes",
                           sizeof c->config_path - 1);
    FILE *f = fopen(path, "rb");
    if (!f) return config_fail(msg, msg_len, SA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    json_error_t jerr;
    /* Without JSON_ALLOW_NUL jansson rejects "\u0000", so strings are C strings. */
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    bool read_failed = ferror(f) != 0;
    fclose(f);
    if (!root) {
        if (read_failed) return config_fail(msg, msg_len, SA_ERR_IO, "cannot read %s", path);
        return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "%s:%d:%d: %s", path, jerr.line, jerr.column,
                           jerr.text);
    }
    int rc = 0;
    if (!json_is_object(root)) {
        rc = config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "%s: expected a JSON object, got %s", path,
                         config_json_type_name(root));
    } else {
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) {
            const struct config_setting *s = config_find(key, strlen(key), CONFIG_NAME_KEY);
            if (!s) {
                char hint[96];
                config_suggest(key, strlen(key), CONFIG_NAME_KEY, hint, sizeof hint);
                rc = config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "unknown key '%.*s' in %s%s", CONFIG_ECHO_MAX, key,
                                 path, hint);
                break;
            }
            rc = config_set_json(c, s, val, path, msg, msg_len);
            if (rc) break;
        }
    }
    json_decref(root);
    if (!rc) memcpy(c->config_path, path, strlen(path) + 1);
    return rc;
}

enum config_flag_kind { CONFIG_FLAG_SETTING, CONFIG_FLAG_FILE, CONFIG_FLAG_HELP };

struct config_flag {
    enum config_flag_kind kind;
    const struct config_setting *s; /* CONFIG_FLAG_SETTING */
    const char *value;              /* SETTING and FILE */
    char from[96];                  /* the flag as written, without "=value" */
};

/* Reads the flag at argv[*i] (and the argument after it when that is its
 * value) and advances *i past them. */
static int config_next_flag(int argc, char **argv, int *i, struct config_flag *f, char *msg, size_t msg_len)
{
    const char *a = argv[(*i)++];
    memset(f, 0, sizeof *f);
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        f->kind = CONFIG_FLAG_HELP;
        return 0;
    }
    if (a[0] == '-' && a[1] == '-' && a[2]) {
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(f->from, sizeof f->from, "%.*s", (int)len, a);
        if (len == 8 && !memcmp(a, "--config", 8)) {
            f->kind = CONFIG_FLAG_FILE;
        } else {
            f->s = config_find(a, len, CONFIG_NAME_FLAG);
            if (!f->s && len > 5 && !memcmp(a, "--no-", 5)) {
                /* --no-KEY for a boolean: "--no-" + name matches "--" + name */
                char pos[96];
                snprintf(pos, sizeof pos, "--%.*s", (int)(len - 5), a + 5);
                const struct config_setting *s = config_find(pos, strlen(pos), CONFIG_NAME_FLAG);
                if (s && s->type == CONFIG_TYPE_BOOL) {
                    if (eq) return config_fail_setting(msg, msg_len, s, f->from, "%s takes no value", f->from);
                    f->s = s;
                    f->value = "false";
                    return 0;
                }
            }
            if (!f->s) {
                char hint[96];
                config_suggest(a, len, CONFIG_NAME_FLAG, hint, sizeof hint);
                return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "unknown flag '%.*s'%s", CONFIG_ECHO_MAX, f->from,
                                   hint);
            }
            if (f->s->type == CONFIG_TYPE_BOOL && !eq) {
                f->value = "true";
                return 0;
            }
        }
        if (eq) {
            f->value = eq + 1;
        } else if (*i < argc) {
            f->value = argv[(*i)++];
        } else {
            if (f->kind == CONFIG_FLAG_FILE)
                return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "--config needs a file path");
            return config_fail_setting(msg, msg_len, f->s, f->from, "missing value");
        }
        return 0;
    }
    if (a[0] == '-' && a[1] && !a[2]) {
        snprintf(f->from, sizeof f->from, "%s", a);
        for (size_t k = 0; k < CONFIG_N_SETTINGS; k++)
            if (config_settings[k].short_flag == a[1]) f->s = &config_settings[k];
        if (!f->s) return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "unknown flag '%s'", a);
        if (f->s->type == CONFIG_TYPE_BOOL) {
            f->value = "true";
        } else if (*i < argc) {
            f->value = argv[(*i)++];
        } else {
            return config_fail_setting(msg, msg_len, f->s, f->from, "missing value");
        }
        return 0;
    }
    return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "unexpected argument '%.*s' (options start with --)",
                       CONFIG_ECHO_MAX, a);
}

int config_load(struct config *c, int argc, char **argv, char **envp, bool *help_requested, char *msg,
                size_t msg_len)
{
    struct config tmp;
    const char *path = NULL;
    int rc;
    struct config_flag f;

    if (msg && msg_len) msg[0] = 0;
    if (help_requested) *help_requested = false;
    config_defaults(&tmp);
    if (argc < 0 || (argc > 0 && !argv))
        return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "invalid argument vector");
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "argv[%d] is NULL", i);

    /* Pass 1: syntax of every flag, --config and --help. A --help anywhere
     * wins over a bad flag before it, so "serve --bogus --help" prints help. */
    int first_err = 0;
    for (int i = 0; i < argc;) {
        char err[512];
        rc = config_next_flag(argc, argv, &i, &f, err, sizeof err);
        if (rc) {
            if (!first_err) {
                first_err = rc;
                if (msg && msg_len) snprintf(msg, msg_len, "%s", err);
            }
            continue;
        }
        if (f.kind == CONFIG_FLAG_HELP) {
            if (msg && msg_len) msg[0] = 0;
            if (help_requested) *help_requested = true;
            *c = tmp;
            return 0;
        }
        if (f.kind == CONFIG_FLAG_FILE) path = f.value;
    }
    if (first_err) return first_err;

    /* The file: SASERVE_CONFIG (environment) wins over --config. */
    for (char **e = envp; e && *e; e++) {
        size_t n = strlen(CONFIG_ENV_FILE);
        if (!strncmp(*e, CONFIG_ENV_FILE, n) && (*e)[n] == '=') path = *e + n + 1;
    }
    if (path && *path) {
        rc = config_apply_file(&tmp, path, msg, msg_len);
        if (rc) return rc;
    }

    /* Pass 2: the flags' values. */
    for (int i = 0; i < argc;) {
        rc = config_next_flag(argc, argv, &i, &f, msg, msg_len);
        if (rc) return rc;
        if (f.kind != CONFIG_FLAG_SETTING) continue;
        rc = config_set_text(&tmp, f.s, f.value, f.from, msg, msg_len);
        if (rc) return rc;
    }

    /* The environment. */
    for (char **e = envp; e && *e; e++) {
        const char *var = *e, *eq = strchr(var, '=');
        if (strncmp(var, CONFIG_ENV_PREFIX, strlen(CONFIG_ENV_PREFIX)) || !eq) continue;
        size_t len = (size_t)(eq - var);
        if (len == strlen(CONFIG_ENV_FILE) && !memcmp(var, CONFIG_ENV_FILE, len)) continue;
        const struct config_setting *s = config_find(var, len, CONFIG_NAME_ENV);
        if (!s) {
            char hint[96];
            config_suggest(var, len, CONFIG_NAME_ENV, hint, sizeof hint);
            return config_fail(msg, msg_len, SA_ERR_INVALID_ARG, "unknown environment variable %.*s%s",
                               (int)(len < CONFIG_ECHO_MAX ? len : CONFIG_ECHO_MAX), var, hint);
        }
        rc = config_set_text(&tmp, s, eq + 1, s->env, msg, msg_len);
        if (rc) return rc;
    }

    *c = tmp;
    return 0;
}

/* ---- output ---- */

void config_print_help(FILE *f)
{
    fprintf(f, "Options (precedence: built-in defaults < --config FILE < flags < SASERVE_* environment):\n"
               "  --config PATH                      SASERVE_CONFIG\n"
               "      JSON configuration file, e.g. config/saserve.json (none is loaded unless given)\n");
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const struct config_setting *s = &config_settings[i];
        char left[128], extra[256];
        static const char *const meta[] = {"TEXT", "N", "", "NUM", "SIZE"};
        const char *arg = s->choices ? "NAME" : s->check ? "SPANS" : meta[s->type];
        if (s->type == CONFIG_TYPE_BOOL)
            snprintf(left, sizeof left, "--[no-]%s", s->flag + 2);
        else if (s->short_flag)
            snprintf(left, sizeof left, "-%c, %s %s", s->short_flag, s->flag, arg);
        else
            snprintf(left, sizeof left, "%s %s", s->flag, arg);
        if (s->type == CONFIG_TYPE_STRING && s->choices) {
            char list[200];
            config_format_choices(s, list, sizeof list);
            snprintf(extra, sizeof extra, "default '%s'; one of %s", s->def, list);
        } else if (s->type == CONFIG_TYPE_STRING || s->type == CONFIG_TYPE_BOOL) {
            if (*s->def)
                snprintf(extra, sizeof extra, "default '%s'", s->def);
            else
                snprintf(extra, sizeof extra, "default empty");
        } else {
            char range[80];
            config_format_range(s, range, sizeof range);
            snprintf(extra, sizeof extra, "default %s, range %s", s->def, range);
        }
        fprintf(f, "  %-34s %s\n      %s (%s)\n", left, s->env, s->help, extra);
    }
    fprintf(f, "  -h, --help\n      this list\n");
}

static void config_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

int config_write_json(const struct config *c, FILE *f)
{
    fputs("{\n", f);
    for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
        const struct config_setting *s = &config_settings[i];
        const void *p = config_field_const(c, s);
        char buf[64];
        fprintf(f, "  \"%s\": ", s->key);
        switch (s->type) {
        case CONFIG_TYPE_STRING:
            if (s->offset == offsetof(struct config, api_key) && *(const char *)p)
                config_write_string(f, "***");
            else
                config_write_string(f, (const char *)p);
            break;
        case CONFIG_TYPE_UINT:
            fprintf(f, "%u", (unsigned)*(const uint32_t *)p);
            break;
        case CONFIG_TYPE_SIZE: {
            uint64_t v = *(const uint64_t *)p;
            config_format_size(v, buf, sizeof buf);
            if (v && v % 1024 == 0)
                fprintf(f, "\"%s\"", buf);
            else
                fputs(buf, f);
            break;
        }
        case CONFIG_TYPE_FLOAT:
            config_format_float(*(const float *)p, buf, sizeof buf);
            fputs(buf, f);
            break;
        case CONFIG_TYPE_BOOL:
            fputs(*(const bool *)p ? "true" : "false", f);
            break;
        }
        fputs(i + 1 < CONFIG_N_SETTINGS ? ",\n" : "\n", f);
    }
    fputs("}\n", f);
    return ferror(f) ? SA_ERR_IO : 0;
}
