/*
 * test_response.c - error table, completion / chat bodies, SSE framing and
 * invalid UTF-8 in generated text (RELIABILITY.md B3). White-box: includes
 * server/response.c and server/request.c (not linked into test binaries).
 */
#include "../../server/request.c"
#include "../../server/response.c"
#include "../test.h"

/* Parses s as JSON; NULL (and a failure) if it is not. */
static json_t *parse_back(const char *s, size_t len)
{
    if (!s) {
        TEST_FAIL_("builder returned NULL");
        return NULL;
    }
    ASSERT_EQ(strlen(s), len);
    json_error_t je;
    json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) TEST_FAIL_("not JSON (%s): %s", je.text, s);
    return j;
}

static const char *jstr(json_t *o, const char *path)
{
    /* path of object keys separated by '.', array index as a number */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) {
        if (json_is_array(cur)) cur = json_array_get(cur, (size_t)atoi(tok));
        else cur = json_object_get(cur, tok);
    }
    return cur && json_is_string(cur) ? json_string_value(cur) : NULL;
}

static json_t *jget(json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) {
        if (json_is_array(cur)) cur = json_array_get(cur, (size_t)atoi(tok));
        else cur = json_object_get(cur, tok);
    }
    return cur;
}

static long long jint(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    if (!json_is_integer(v)) {
        TEST_FAIL_("%s is not an integer", path);
        return -12345;
    }
    return (long long)json_integer_value(v);
}

static double jnum(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    if (!json_is_number(v)) {
        TEST_FAIL_("%s is not a number", path);
        return -12345;
    }
    return json_number_value(v);
}

/* ---- errors ---- */

static void test_error_table(void)
{
    static const struct {
        int code, status;
        const char *type, *ecode;
    } rows[] = {
        {SA_ERR_INVALID_ARG, 400, "invalid_request_error", "invalid_value"},
        {SA_ERR_RANGE, 400, "invalid_request_error", "invalid_value"},
        {SA_ERR_TYPE, 400, "invalid_request_error", "invalid_type"},
        {SA_ERR_TOKENIZER, 400, "invalid_request_error", "invalid_prompt"},
        {SA_ERR_CONTEXT_FULL, 400, "invalid_request_error", "context_length_exceeded"},
        {SA_ERR_NOT_FOUND, 404, "invalid_request_error", "not_found"},
        {SA_ERR_TOO_LARGE, 413, "invalid_request_error", "request_too_large"},
        {SA_ERR_BUSY, 503, "server_error", "server_busy"},
        {SA_ERR_CANCELLED, 503, "server_error", "cancelled"},
        {SA_ERR_NOMEM, 503, "server_error", "out_of_memory"},
        {SA_ERR_IO, 500, "server_error", "internal_error"},
        {SA_ERR_BAD_MODEL, 500, "server_error", "internal_error"},
        {SA_ERR_UNSUPPORTED, 500, "server_error", "internal_error"},
        {SA_ERR_INTERNAL, 500, "server_error", "internal_error"},
        {SA_ERR_OK, 500, "server_error", "internal_error"},
        {-999, 500, "server_error", "internal_error"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct api_error e;
        response_error_from_code(rows[i].code, i % 2 ? "prompt" : NULL, NULL, &e);
        ASSERT_EQ(e.status, rows[i].status);
        ASSERT_STR_EQ(e.type, rows[i].type);
        ASSERT_STR_EQ(e.code, rows[i].ecode);
        ASSERT_STR_EQ(e.message, sa_err_str(rows[i].code));
        size_t len;
        char *s = response_error_json(&e, &len);
        json_t *j = parse_back(s, len);
        if (j) {
            ASSERT_EQ(json_object_size(j), 1);
            json_t *err = json_object_get(j, "error");
            ASSERT_EQ(json_object_size(err), 4);
            ASSERT_STR_EQ(jstr(j, "error.message"), sa_err_str(rows[i].code));
            ASSERT_STR_EQ(jstr(j, "error.type"), rows[i].type);
            ASSERT_STR_EQ(jstr(j, "error.code"), rows[i].ecode);
            if (i % 2) ASSERT_STR_EQ(jstr(j, "error.param"), "prompt");
            else ASSERT_TRUE(json_is_null(json_object_get(err, "param")));
        }
        json_decref(j);
        free(s);
    }
}

static void test_error_http(void)
{
    static const struct {
        enum response_http_error kind;
        int status;
        const char *type, *code;
    } rows[] = {
        {RESPONSE_HTTP_BAD_REQUEST, 400, "invalid_request_error", "invalid_request"},
        {RESPONSE_HTTP_UNAUTHORIZED, 401, "authentication_error", "invalid_api_key"},
        {RESPONSE_HTTP_NOT_FOUND, 404, "invalid_request_error", "unknown_url"},
        {RESPONSE_HTTP_METHOD_NOT_ALLOWED, 405, "invalid_request_error", "method_not_allowed"},
        {RESPONSE_HTTP_TIMEOUT, 408, "invalid_request_error", "request_timeout"},
        {RESPONSE_HTTP_BODY_TOO_LARGE, 413, "invalid_request_error", "request_too_large"},
        {RESPONSE_HTTP_RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded"},
        {RESPONSE_HTTP_UNAVAILABLE, 503, "server_error", "server_unavailable"},
        {RESPONSE_HTTP_BUSY, 503, "server_error", "server_busy"},
        {RESPONSE_HTTP_BAD_FRAMING, 400, "invalid_request_error", "invalid_framing"},
        {RESPONSE_HTTP_URI_TOO_LONG, 414, "invalid_request_error", "uri_too_long"},
        {RESPONSE_HTTP_HEADERS_TOO_LARGE, 431, "invalid_request_error", "headers_too_large"},
        {RESPONSE_HTTP_NOT_IMPLEMENTED, 501, "invalid_request_error", "unsupported_transfer_encoding"},
        {RESPONSE_HTTP_CLIENT_CLOSED, 499, "server_error", "client_closed"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct api_error e;
        response_error_http(rows[i].kind, NULL, NULL, &e);
        ASSERT_EQ(e.status, rows[i].status);
        ASSERT_STR_EQ(e.type, rows[i].type);
        ASSERT_STR_EQ(e.code, rows[i].code);
        ASSERT_TRUE(e.message[0] != '\0');
        ASSERT_STR_EQ(e.param, "");
    }
    struct api_error e;
    response_error_http((enum response_http_error)77, NULL, NULL, &e);
    ASSERT_EQ(e.status, 500);

    /* exact bytes */
    response_error_http(RESPONSE_HTTP_METHOD_NOT_ALLOWED, NULL, "use POST", &e);
    size_t len;
    char *s = response_error_json(&e, &len);
    ASSERT_STR_EQ(s, "{\"error\":{\"message\":\"use POST\",\"type\":\"invalid_request_error\",\"param\":null,"
                     "\"code\":\"method_not_allowed\"}}");
    ASSERT_EQ(len, strlen(s));
    free(s);

    /* a request error (from request.c) renders with its param */
    request_error(&e, "temperature", "'temperature' must be a number in [0, 2]");
    s = response_error_json(&e, &len);
    ASSERT_STR_EQ(s, "{\"error\":{\"message\":\"'temperature' must be a number in [0, 2]\","
                     "\"type\":\"invalid_request_error\",\"param\":\"temperature\",\"code\":\"invalid_value\"}}");
    free(s);

    /* code NULL renders as null */
    e.code = NULL;
    s = response_error_json(&e, &len);
    ASSERT_CONTAINS(s, "\"code\":null");
    free(s);
}

static void test_error_truncation_utf8(void)
{
    /* 300 x "é" (600 bytes) cut at a character boundary within 255 bytes */
    char msg[601];
    for (int i = 0; i < 300; i++) memcpy(msg + 2 * i, "\xc3\xa9", 2);
    msg[600] = '\0';
    struct api_error e;
    response_error_from_code(SA_ERR_INVALID_ARG, "p", msg, &e);
    ASSERT_EQ(strlen(e.message), 254);
    size_t len;
    char *s = response_error_json(&e, &len);
    json_t *j = parse_back(s, len);
    json_decref(j);
    free(s);
    /* invalid bytes in a message or param never break the JSON */
    response_error_from_code(SA_ERR_INVALID_ARG, "\xff\xfe", "bad \xc0 byte", &e);
    s = response_error_json(&e, &len);
    j = parse_back(s, len);
    if (j) ASSERT_STR_EQ(jstr(j, "error.message"), "bad \xef\xbf\xbd byte");
    json_decref(j);
    free(s);
}

/* ---- completions ---- */

/* The DESIGN.md example. */
static struct engine_cache_stats example_cache(void)
{
    struct engine_cache_stats c;
    memset(&c, 0, sizeof c);
    c.shared_attention = true;
    c.n_spans = 1;
    c.spans[0] = (struct share_span){3, 4};
    c.rebalance = false;
    c.layers = 5;
    c.sharing_layers = 2;
    /* 142 tokens in pages of 16: 9 blocks, K in 3 layers, V in 5; 64 bytes a token and layer */
    c.block_tokens = 16;
    c.k_pages = 27;
    c.v_pages = 45;
    c.kv_bytes_paged = 72 * 16 * 64;
    c.tokens = 142;
    c.k_bytes = 27264;
    c.v_bytes = 45440;
    c.kv_bytes = 72704;
    c.kv_bytes_without_sharing = 90880;
    c.kv_bytes_saved = 18176;
    c.kv_saved_ratio = 0.2;
    c.attention_flops_saved = 1234567;
    return c;
}

static struct engine_timings example_timings(void)
{
    struct engine_timings t = {.queued_ms = 1.5, .prompt_ms = 20, .generation_ms = 100,
                               .prompt_per_second = 6000, .generation_per_second = 160};
    return t;
}

static void check_example_cache(json_t *cache)
{
    static const char *const keys[] = {
        "shared_attention", "spans", "rebalance", "layers", "sharing_layers", "tokens", "k_bytes", "v_bytes",
        "kv_bytes", "kv_bytes_without_sharing", "kv_bytes_saved", "kv_saved_ratio", "attention_flops_saved",
        "block_tokens", "k_pages", "v_pages", "kv_bytes_paged",
    };
    ASSERT_TRUE(json_is_object(cache));
    ASSERT_EQ(json_object_size(cache), sizeof keys / sizeof keys[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!json_object_get(cache, keys[i])) TEST_FAIL_("cache lacks %s", keys[i]);
    ASSERT_TRUE(json_is_true(json_object_get(cache, "shared_attention")));
    ASSERT_TRUE(json_is_false(json_object_get(cache, "rebalance")));
    json_t *spans = json_object_get(cache, "spans");
    ASSERT_EQ(json_array_size(spans), 1);
    ASSERT_STR_EQ(json_string_value(json_array_get(spans, 0)), "3-4");
    ASSERT_EQ(jint(cache, "layers"), 5);
    ASSERT_EQ(jint(cache, "sharing_layers"), 2);
    ASSERT_EQ(jint(cache, "tokens"), 142);
    ASSERT_EQ(jint(cache, "k_bytes"), 27264);
    ASSERT_EQ(jint(cache, "v_bytes"), 45440);
    ASSERT_EQ(jint(cache, "kv_bytes"), 72704);
    ASSERT_EQ(jint(cache, "kv_bytes_without_sharing"), 90880);
    ASSERT_EQ(jint(cache, "kv_bytes_saved"), 18176);
    ASSERT_NEAR(jnum(cache, "kv_saved_ratio"), 0.2, 1e-12);
    ASSERT_EQ(jint(cache, "attention_flops_saved"), 1234567);
    ASSERT_EQ(jint(cache, "block_tokens"), 16);
    ASSERT_EQ(jint(cache, "k_pages"), 27);
    ASSERT_EQ(jint(cache, "v_pages"), 45);
    ASSERT_EQ(jint(cache, "kv_bytes_paged"), 73728);
}

static void check_example_timings(json_t *t)
{
    ASSERT_EQ(json_object_size(t), 5);
    ASSERT_NEAR(jnum(t, "queued_ms"), 1.5, 1e-9);
    ASSERT_NEAR(jnum(t, "prompt_ms"), 20, 1e-9);
    ASSERT_NEAR(jnum(t, "generation_ms"), 100, 1e-9);
    ASSERT_NEAR(jnum(t, "prompt_per_second"), 6000, 1e-9);
    ASSERT_NEAR(jnum(t, "generation_per_second"), 160, 1e-9);
}

static void test_cache_json_exact(void)
{
    struct engine_cache_stats c = example_cache();
    size_t len;
    char *s = response_cache_json(&c, &len);
    ASSERT_STR_EQ(s, "{\"shared_attention\":true,\"spans\":[\"3-4\"],\"rebalance\":false,\"layers\":5,"
                     "\"sharing_layers\":2,\"tokens\":142,\"k_bytes\":27264,\"v_bytes\":45440,\"kv_bytes\":72704,"
                     "\"kv_bytes_without_sharing\":90880,\"kv_bytes_saved\":18176,\"kv_saved_ratio\":0.2,"
                     "\"attention_flops_saved\":1234567,\"block_tokens\":16,\"k_pages\":27,\"v_pages\":45,"
                     "\"kv_bytes_paged\":73728}");
    free(s);

    /* several spans, and "off" -> [] */
    c.n_spans = 2;
    c.spans[1] = (struct share_span){7, 9};
    s = response_cache_json(&c, &len);
    ASSERT_CONTAINS(s, "\"spans\":[\"3-4\",\"7-9\"]");
    free(s);
    c.n_spans = 0;
    c.shared_attention = false;
    s = response_cache_json(&c, &len);
    ASSERT_CONTAINS(s, "\"spans\":[]");
    free(s);
    memset(c.spans, 0, sizeof c.spans);
    s = response_cache_json(&c, &len);
    ASSERT_CONTAINS(s, "\"spans\":[]");
    free(s);

    struct engine_timings t = example_timings();
    s = response_timings_json(&t, &len);
    ASSERT_STR_EQ(s, "{\"queued_ms\":1.5,\"prompt_ms\":20.0,\"generation_ms\":100.0,\"prompt_per_second\":6000.0,"
                     "\"generation_per_second\":160.0}");
    free(s);
}

static void test_completion_json(void)
{
    struct response_top_logprob top0[2] = {{"Hel", 3, -0.25f}, {"He", 2, -1.5f}};
    struct response_top_logprob top1[1] = {{"lo", 2, -0.5f}};
    struct response_token_logprob lps[2] = {
        {"Hel", 3, -0.25f, 0, 2, top0, false},
        {"lo", 2, -0.5f, 3, 1, top1, false},
    };
    struct response_choice ch = {
        .index = 0, .text = "Hello", .text_len = 5, .finish_reason = "length", .has_logprobs = true,
        .n_logprobs = 2, .logprobs = lps, .prompt_tokens = 140, .completion_tokens = 2,
        .cache = example_cache(), .timings = example_timings(),
    };
    struct response_completion c = {
        .id = "cmpl-abc", .created = 1700000000, .model = "stories", .n_choices = 1, .choices = &ch,
        .usage = {140, 2},
    };
    size_t len;
    char *s = response_completion_json(&c, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_STR_EQ(jstr(j, "id"), "cmpl-abc");
        ASSERT_STR_EQ(jstr(j, "object"), "text_completion");
        ASSERT_EQ(jint(j, "created"), 1700000000);
        ASSERT_STR_EQ(jstr(j, "model"), "stories");
        ASSERT_EQ(json_array_size(json_object_get(j, "choices")), 1);
        ASSERT_EQ(jint(j, "choices.0.index"), 0);
        ASSERT_STR_EQ(jstr(j, "choices.0.text"), "Hello");
        ASSERT_STR_EQ(jstr(j, "choices.0.finish_reason"), "length");
        ASSERT_EQ(json_array_size(jget(j, "choices.0.logprobs.tokens")), 2);
        ASSERT_STR_EQ(jstr(j, "choices.0.logprobs.tokens.1"), "lo");
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.token_logprobs.0"), -0.25, 1e-7);
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.top_logprobs.0.He"), -1.5, 1e-7);
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.top_logprobs.1.lo"), -0.5, 1e-7);
        ASSERT_EQ(jint(j, "choices.0.logprobs.text_offset.1"), 3);
        ASSERT_EQ(jint(j, "usage.prompt_tokens"), 140);
        ASSERT_EQ(jint(j, "usage.completion_tokens"), 2);
        ASSERT_EQ(jint(j, "usage.total_tokens"), 142);
        check_example_cache(json_object_get(j, "cache"));
        check_example_timings(json_object_get(j, "timings"));
        check_example_cache(jget(j, "choices.0.cache"));
        check_example_timings(jget(j, "choices.0.timings"));
        ASSERT_EQ(jint(j, "choices.0.usage.completion_tokens"), 2);
    }
    json_decref(j);
    free(s);

    /* echo: the first prompt token has no logprob -> null in token_logprobs and top_logprobs */
    lps[0].no_logprob = true;
    s = response_completion_json(&c, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_TRUE(json_is_null(jget(j, "choices.0.logprobs.token_logprobs.0")));
        ASSERT_TRUE(json_is_null(jget(j, "choices.0.logprobs.top_logprobs.0")));
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.token_logprobs.1"), -0.5, 1e-7);
        ASSERT_STR_EQ(jstr(j, "choices.0.logprobs.tokens.0"), "Hel");
    }
    json_decref(j);
    free(s);
    lps[0].no_logprob = false;

    /* logprobs not requested -> null; finish_reason NULL -> null */
    ch.has_logprobs = false;
    ch.finish_reason = NULL;
    s = response_completion_json(&c, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_TRUE(json_is_null(jget(j, "choices.0.logprobs")));
        ASSERT_TRUE(json_is_null(jget(j, "choices.0.finish_reason")));
    }
    json_decref(j);
    free(s);
}

static void test_completion_aggregate(void)
{
    struct response_choice ch[2];
    memset(ch, 0, sizeof ch);
    for (int i = 0; i < 2; i++) {
        ch[i].index = (uint32_t)i;
        ch[i].text = i ? "b" : "a";
        ch[i].text_len = 1;
        ch[i].finish_reason = "stop";
        ch[i].prompt_tokens = 10;
        ch[i].completion_tokens = (uint32_t)(5 + i * 5);
        ch[i].cache = example_cache();
        ch[i].timings.queued_ms = 1 + i;
        ch[i].timings.prompt_ms = 100 * (i + 1); /* 100, 200 */
        ch[i].timings.generation_ms = 500;
    }
    ch[1].cache.tokens = 100;
    struct response_completion c = {.id = "cmpl-x", .created = 1, .model = "m", .n_choices = 2, .choices = ch,
                                    .usage = {10, 15}};
    size_t len;
    char *s = response_completion_json(&c, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_EQ(json_array_size(json_object_get(j, "choices")), 2);
        ASSERT_EQ(jint(j, "choices.1.index"), 1);
        ASSERT_STR_EQ(jstr(j, "choices.1.text"), "b");
        ASSERT_EQ(jint(j, "choices.1.cache.tokens"), 100);
        ASSERT_EQ(jint(j, "cache.tokens"), 242);
        ASSERT_EQ(jint(j, "cache.k_bytes"), 2 * 27264);
        ASSERT_EQ(jint(j, "cache.kv_bytes_saved"), 2 * 18176);
        ASSERT_EQ(jint(j, "cache.layers"), 5);
        ASSERT_EQ(jint(j, "cache.attention_flops_saved"), 2 * 1234567);
        ASSERT_NEAR(jnum(j, "cache.kv_saved_ratio"), 0.2, 1e-9);
        ASSERT_STR_EQ(jstr(j, "cache.spans.0"), "3-4");
        ASSERT_NEAR(jnum(j, "timings.queued_ms"), 2, 1e-9);
        ASSERT_NEAR(jnum(j, "timings.prompt_ms"), 200, 1e-9);
        ASSERT_NEAR(jnum(j, "timings.prompt_per_second"), 20 * 1000.0 / 200, 1e-9);
        ASSERT_NEAR(jnum(j, "timings.generation_per_second"), 15 * 1000.0 / 500, 1e-9);
        ASSERT_EQ(jint(j, "usage.total_tokens"), 25);
    }
    json_decref(j);
    free(s);

    /* no choices at all */
    c.n_choices = 0;
    c.choices = NULL;
    s = response_completion_json(&c, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_EQ(json_array_size(json_object_get(j, "choices")), 0);
        ASSERT_EQ(jint(j, "cache.kv_bytes"), 0);
    }
    json_decref(j);
    free(s);
}

static void test_chat_json(void)
{
    struct response_top_logprob top[2] = {{"Hi", 2, -0.1f}, {"\xff", 1, -3.0f}};
    struct response_token_logprob lp = {"Hi", 2, -0.1f, 0, 2, top, false};
    struct response_choice ch = {.index = 0, .text = "Hi", .text_len = 2, .finish_reason = "stop",
                                 .has_logprobs = true, .n_logprobs = 1, .logprobs = &lp,
                                 .prompt_tokens = 7, .completion_tokens = 1, .cache = example_cache(),
                                 .timings = example_timings()};
    struct response_completion c = {.id = "chatcmpl-1", .created = 5, .model = "m", .n_choices = 1,
                                    .choices = &ch, .usage = {7, 1}};
    size_t len;
    char *s = response_chat_json(&c, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_STR_EQ(jstr(j, "object"), "chat.completion");
        ASSERT_STR_EQ(jstr(j, "choices.0.message.role"), "assistant");
        ASSERT_STR_EQ(jstr(j, "choices.0.message.content"), "Hi");
        ASSERT_STR_EQ(jstr(j, "choices.0.finish_reason"), "stop");
        ASSERT_TRUE(jget(j, "choices.0.text") == NULL);
        ASSERT_STR_EQ(jstr(j, "choices.0.logprobs.content.0.token"), "Hi");
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.content.0.logprob"), -0.1, 1e-7);
        ASSERT_EQ(jint(j, "choices.0.logprobs.content.0.bytes.0"), 'H');
        ASSERT_EQ(json_array_size(jget(j, "choices.0.logprobs.content.0.top_logprobs")), 2);
        ASSERT_STR_EQ(jstr(j, "choices.0.logprobs.content.0.top_logprobs.1.token"), "\xef\xbf\xbd");
        ASSERT_EQ(jint(j, "choices.0.logprobs.content.0.top_logprobs.1.bytes.0"), 255);
        ASSERT_EQ(jint(j, "usage.total_tokens"), 8);
        check_example_cache(json_object_get(j, "cache"));
        check_example_timings(json_object_get(j, "timings"));
    }
    json_decref(j);
    free(s);
}

/* ---- streaming ---- */

static void test_chunks(void)
{
    struct response_chunk ch;
    memset(&ch, 0, sizeof ch);
    ch.id = "cmpl-1";
    ch.created = 9;
    ch.model = "m";
    ch.text = "He";
    ch.text_len = 2;
    size_t len;
    char *s = response_completion_chunk_json(&ch, &len);
    ASSERT_STR_EQ(s, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":9,\"model\":\"m\","
                     "\"choices\":[{\"index\":0,\"text\":\"He\",\"logprobs\":null,\"finish_reason\":null}]}");
    free(s);

    /* chat: role chunk, content chunk, finishing chunk */
    ch.id = "chatcmpl-1";
    ch.role = true;
    ch.text = "";
    ch.text_len = 0;
    s = response_chat_chunk_json(&ch, &len);
    ASSERT_STR_EQ(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":9,\"model\":\"m\","
                     "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                     "\"logprobs\":null,\"finish_reason\":null}]}");
    free(s);
    ch.role = false;
    ch.text = "lo";
    ch.text_len = 2;
    s = response_chat_chunk_json(&ch, &len);
    ASSERT_CONTAINS(s, "\"delta\":{\"content\":\"lo\"}");
    free(s);

    struct response_choice done = {.index = 0, .finish_reason = "stop", .prompt_tokens = 3,
                                   .completion_tokens = 2, .cache = example_cache(),
                                   .timings = example_timings()};
    struct response_completion sum = {.id = "chatcmpl-1", .created = 9, .model = "m", .n_choices = 1,
                                      .choices = &done, .usage = {3, 2}};
    ch.text = NULL;
    ch.text_len = 0;
    ch.finish_reason = "stop";
    ch.done = &done;
    s = response_chat_chunk_json(&ch, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_EQ(json_object_size(jget(j, "choices.0.delta")), 0);
        ASSERT_STR_EQ(jstr(j, "choices.0.finish_reason"), "stop");
        check_example_cache(jget(j, "choices.0.cache"));
        check_example_timings(jget(j, "choices.0.timings"));
        ASSERT_TRUE(json_object_get(j, "usage") == NULL);
    }
    json_decref(j);
    free(s);

    /* the last chunk without include_usage carries the summary */
    ch.summary = &sum;
    s = response_chat_chunk_json(&ch, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_EQ(jint(j, "usage.total_tokens"), 5);
        check_example_cache(json_object_get(j, "cache"));
        check_example_timings(json_object_get(j, "timings"));
    }
    json_decref(j);
    free(s);

    /* include_usage: a separate chunk with empty choices */
    s = response_chat_usage_chunk_json(&sum, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_STR_EQ(jstr(j, "object"), "chat.completion.chunk");
        ASSERT_TRUE(json_is_array(json_object_get(j, "choices")));
        ASSERT_EQ(json_array_size(json_object_get(j, "choices")), 0);
        ASSERT_EQ(jint(j, "usage.prompt_tokens"), 3);
        ASSERT_EQ(jint(j, "usage.completion_tokens"), 2);
        check_example_cache(json_object_get(j, "cache"));
    }
    json_decref(j);
    free(s);
    s = response_completion_usage_chunk_json(&sum, &len);
    j = parse_back(s, len);
    if (j) ASSERT_STR_EQ(jstr(j, "object"), "text_completion");
    json_decref(j);
    free(s);

    /* completion chunk with logprobs */
    struct response_top_logprob top = {"a", 1, -0.5f};
    struct response_token_logprob lp = {"a", 1, -0.5f, 7, 1, &top, false};
    memset(&ch, 0, sizeof ch);
    ch.id = "c";
    ch.text = "a";
    ch.text_len = 1;
    ch.has_logprobs = true;
    ch.n_logprobs = 1;
    ch.logprobs = &lp;
    s = response_completion_chunk_json(&ch, &len);
    ASSERT_CONTAINS(s, "\"logprobs\":{\"tokens\":[\"a\"],\"token_logprobs\":[-0.5],\"top_logprobs\":[{\"a\":-0.5}],"
                       "\"text_offset\":[7]}");
    free(s);
}

static void test_sse_framing(void)
{
    size_t len;
    char *s = response_sse_event("{\"a\":1}", 7, &len);
    ASSERT_STR_EQ(s, "data: {\"a\":1}\n\n");
    ASSERT_EQ(len, 15);
    free(s);
    s = response_sse_event("", 0, &len);
    ASSERT_STR_EQ(s, "data: \n\n");
    free(s);
    s = response_sse_event("a\nb", 3, &len);
    ASSERT_STR_EQ(s, "data: a\ndata: b\n\n");
    free(s);
    s = response_sse_event("a\r\nb\rc", 6, &len);
    ASSERT_STR_EQ(s, "data: a\ndata: b\ndata: c\n\n");
    ASSERT_EQ(len, strlen(s));
    free(s);
    s = response_sse_event("\n\n", 2, &len);
    ASSERT_STR_EQ(s, "data: \ndata: \ndata: \n\n");
    free(s);
    ASSERT_STR_EQ(response_sse_done(), "data: [DONE]\n\n");
    ASSERT_STR_EQ(response_sse_keepalive(), ": keep-alive\n\n");

    struct api_error e;
    response_error_from_code(SA_ERR_BUSY, NULL, "queue full", &e);
    s = response_sse_error(&e, &len);
    ASSERT_STR_EQ(s, "data: {\"error\":{\"message\":\"queue full\",\"type\":\"server_error\",\"param\":null,"
                     "\"code\":\"server_busy\"}}\n\n");
    ASSERT_EQ(len, strlen(s));
    free(s);

    /* a whole chunk framed */
    struct response_chunk ch;
    memset(&ch, 0, sizeof ch);
    ch.id = "x";
    ch.text = "a\nb";
    ch.text_len = 3;
    size_t jl;
    char *js = response_completion_chunk_json(&ch, &jl);
    s = response_sse_event(js, jl, &len);
    ASSERT_TRUE(strncmp(s, "data: {", 7) == 0);
    ASSERT_TRUE(strstr(s, "\n") == s + len - 2); /* the newline in text is escaped */
    ASSERT_TRUE(strcmp(s + len - 2, "\n\n") == 0);
    free(js);
    free(s);
}

/* ---- invalid UTF-8 and odd numbers never crash (B3) ---- */

static void test_invalid_utf8_text(void)
{
    static const char *const texts[] = {
        "\xff", "abc\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82\xac ok",
        "\x80\x80\x80", "caf\xc3", "\xf0\x9f\x98", "\xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *t = texts[i];
        size_t tl = strlen(t);
        struct response_top_logprob top = {t, tl, -1.0f};
        struct response_token_logprob lp = {t, tl, -1.0f, 0, 1, &top, false};
        struct response_choice ch = {.text = t, .text_len = tl, .finish_reason = "stop", .has_logprobs = true,
                                     .n_logprobs = 1, .logprobs = &lp};
        struct response_completion c = {.id = t, .created = 0, .model = t, .n_choices = 1, .choices = &ch};
        size_t len;
        char *s = response_completion_json(&c, &len);
        json_t *j = parse_back(s, len);
        json_decref(j);
        free(s);
        s = response_chat_json(&c, &len);
        j = parse_back(s, len);
        json_decref(j);
        free(s);
        struct response_chunk k = {.id = t, .model = t, .text = t, .text_len = tl, .role = true,
                                   .has_logprobs = true, .n_logprobs = 1, .logprobs = &lp};
        s = response_chat_chunk_json(&k, &len);
        j = parse_back(s, len);
        json_decref(j);
        free(s);
        s = response_completion_chunk_json(&k, &len);
        j = parse_back(s, len);
        json_decref(j);
        free(s);
    }

    /* exact replacement, and an embedded NUL */
    struct response_choice ch = {.text = "a\xff" "b\0c", .text_len = 5};
    struct response_completion c = {.id = "i", .n_choices = 1, .choices = &ch};
    size_t len;
    char *s = response_completion_json(&c, &len);
    ASSERT_CONTAINS(s, "\"text\":\"a\xef\xbf\xbd" "b\\u0000c\"");
    free(s);

    /* NULL strings everywhere */
    struct response_choice nch;
    memset(&nch, 0, sizeof nch);
    struct response_completion nc = {.n_choices = 1, .choices = &nch};
    s = response_completion_json(&nc, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_STR_EQ(jstr(j, "id"), "");
        ASSERT_STR_EQ(jstr(j, "choices.0.text"), "");
    }
    json_decref(j);
    free(s);

    /* non-finite numbers */
    struct response_top_logprob top = {"x", 1, -INFINITY};
    struct response_token_logprob lp = {"x", 1, NAN, 0, 1, &top, false};
    struct response_choice fch = {.text = "x", .text_len = 1, .has_logprobs = true, .n_logprobs = 1, .logprobs = &lp};
    fch.cache.kv_saved_ratio = NAN;
    fch.timings.prompt_per_second = INFINITY;
    struct response_completion fc = {.id = "f", .n_choices = 1, .choices = &fch};
    s = response_completion_json(&fc, &len);
    j = parse_back(s, len);
    if (j) {
        ASSERT_TRUE(json_is_null(jget(j, "choices.0.logprobs.token_logprobs.0")));
        ASSERT_NEAR(jnum(j, "choices.0.logprobs.top_logprobs.0.x"), -9999.0, 0);
        ASSERT_TRUE(json_is_null(jget(j, "cache.kv_saved_ratio")));
        ASSERT_TRUE(json_is_null(jget(j, "timings.prompt_per_second")));
    }
    json_decref(j);
    free(s);

    /* the sanitiser on its own */
    size_t ol;
    char *clean = resp_utf8_sanitize("\xe2\x82\xac\xff", 4, &ol);
    ASSERT_STR_EQ(clean, "\xe2\x82\xac\xef\xbf\xbd");
    ASSERT_EQ(ol, 6);
    free(clean);
}

static void test_models_json(void)
{
    struct response_model_info m = {.id = "stories260K", .created = 1700000000, .layers = 5, .context_length = 512,
                                    .n_params = 260000, .share_default = true, .share_spans = "3-4",
                                    .rebalance_default = false};
    size_t len;
    char *s = response_models_json(&m, &len);
    ASSERT_STR_EQ(s, "{\"object\":\"list\",\"data\":[{\"id\":\"stories260K\",\"object\":\"model\",\"created\":1700000000,"
                     "\"owned_by\":\"saserve\",\"layers\":5,\"context_length\":512,\"n_params\":260000,"
                     "\"share_default\":true,\"share_spans\":\"3-4\",\"rebalance_default\":false,\"chat_template\":\"llama2\"}]}");
    free(s);
    m.id = "bad\xff";
    m.share_spans = NULL;
    s = response_models_json(&m, &len);
    json_t *j = parse_back(s, len);
    if (j) {
        ASSERT_STR_EQ(jstr(j, "data.0.id"), "bad\xef\xbf\xbd");
        ASSERT_STR_EQ(jstr(j, "data.0.share_spans"), "off");
    }
    json_decref(j);
    free(s);
}

int main(void)
{
    TEST_RUN(test_error_table);
    TEST_RUN(test_error_http);
    TEST_RUN(test_error_truncation_utf8);
    TEST_RUN(test_cache_json_exact);
    TEST_RUN(test_completion_json);
    TEST_RUN(test_completion_aggregate);
    TEST_RUN(test_chat_json);
    TEST_RUN(test_chunks);
    TEST_RUN(test_sse_framing);
    TEST_RUN(test_invalid_utf8_text);
    TEST_RUN(test_models_json);
    TEST_DONE();
}
