/*
 * test_request.c - request body and query validation (RELIABILITY.md B2, B4,
 * C1-C8). White-box: includes server/request.c (the test binaries link the
 * engine library only).
 */
#include "../../server/request.c"
#include "../test.h"

#include "engine/errors.h"

static const struct request_limits LIM = {
    .max_prompt_bytes = 1024,
    .max_tokens_limit = 4096,
    .max_n = 8,
    .max_logprobs = 5,
    .n_vocab = 32000,
    .default_temperature = 1, /* as the settings table's default */
    .n_ctx = 512,
};

static int parse_kind(enum request_kind kind, const char *body, size_t len, struct api_request *r,
                      struct api_error *e)
{
    request_init(r);
    memset(e, 0, sizeof *e);
    return request_parse(kind, body, len, &LIM, r, e);
}

/* Parses and frees; returns rc and leaves err for the caller. */
static int try_body(enum request_kind kind, const char *body, struct api_error *e)
{
    struct api_request r;
    int rc = parse_kind(kind, body, strlen(body), &r, e);
    request_free(&r);
    return rc;
}

#define EXPECT_OK(kind, body)                                                           \
    do {                                                                                \
        struct api_error e_;                                                            \
        int rc_ = try_body(kind, body, &e_);                                            \
        if (rc_ != 0) TEST_FAIL_("expected ok: %s -> %s (%s)", body, e_.param, e_.message); \
    } while (0)

#define EXPECT_BAD(kind, body, want_param)                                              \
    do {                                                                                \
        struct api_error e_;                                                            \
        int rc_ = try_body(kind, body, &e_);                                            \
        if (rc_ != SA_ERR_INVALID_ARG) TEST_FAIL_("expected 400 (SA_ERR_INVALID_ARG): %s -> %d", body, rc_);                            \
        else {                                                                          \
            ASSERT_EQ(e_.status, 400);                                                  \
            ASSERT_STR_EQ(e_.type, "invalid_request_error");                            \
            if (strcmp(e_.param, want_param) != 0)                                      \
                TEST_FAIL_("%s: param \"%s\" != \"%s\"", body, e_.param, want_param);   \
            ASSERT_TRUE(e_.message[0] != '\0');                                         \
        }                                                                               \
    } while (0)

/* ---- the parameter table: every param x {min-1, min, max, max+1, -1,
 * 2^31, 2^63-1, 1e308, 1e-320, float where int expected, string, null} ---- */

struct pcase {
    const char *param;
    const char *value;
    int ok; /* 1 accepted, 0 rejected naming param */
};

static const struct pcase completion_cases[] = {
    /* max_tokens: 1..max_tokens_limit (4096) */
    {"max_tokens", "0", 0}, {"max_tokens", "1", 1}, {"max_tokens", "4096", 1}, {"max_tokens", "4097", 0},
    {"max_tokens", "-1", 0}, {"max_tokens", "2147483648", 0}, {"max_tokens", "9223372036854775807", 0},
    {"max_tokens", "1e308", 0}, {"max_tokens", "1e-320", 0}, {"max_tokens", "1.5", 0},
    {"max_tokens", "2.0", 0}, {"max_tokens", "\"16\"", 0}, {"max_tokens", "true", 0},
    {"max_tokens", "null", 1}, {"max_tokens", "1000000000000000000", 0},
    /* temperature: [0, 2] */
    {"temperature", "-0.0001", 0}, {"temperature", "-1", 0}, {"temperature", "0", 1},
    {"temperature", "2", 1}, {"temperature", "2.0001", 0}, {"temperature", "2147483648", 0},
    {"temperature", "9223372036854775807", 0}, {"temperature", "1e308", 0}, {"temperature", "1e-320", 1},
    {"temperature", "1e-45", 1}, {"temperature", "1", 1}, {"temperature", "0.7", 1},
    {"temperature", "\"1\"", 0}, {"temperature", "null", 1}, {"temperature", "[1]", 0},
    /* top_p: (0, 1] */
    {"top_p", "0", 0}, {"top_p", "-0.0", 0}, {"top_p", "1e-320", 0}, {"top_p", "0.0001", 1},
    {"top_p", "1", 1}, {"top_p", "1.0000001", 0}, {"top_p", "2", 0}, {"top_p", "-1", 0},
    {"top_p", "2147483648", 0}, {"top_p", "9223372036854775807", 0}, {"top_p", "1e308", 0},
    {"top_p", "\"0.5\"", 0}, {"top_p", "null", 1},
    /* min_p: [0, 1] */
    {"min_p", "-0.0001", 0}, {"min_p", "-1", 0}, {"min_p", "0", 1}, {"min_p", "1", 1},
    {"min_p", "1.5", 0}, {"min_p", "1e-320", 1}, {"min_p", "2147483648", 0}, {"min_p", "1e308", 0},
    {"min_p", "\"0\"", 0}, {"min_p", "null", 1},
    /* top_k: >= 0, clamped to n_vocab */
    {"top_k", "-5", 0}, {"top_k", "-1", 0}, {"top_k", "0", 1}, {"top_k", "1", 1}, {"top_k", "32000", 1},
    {"top_k", "32001", 1}, {"top_k", "2147483648", 1}, {"top_k", "9223372036854775807", 1},
    {"top_k", "1e308", 0}, {"top_k", "1e-320", 0}, {"top_k", "1.5", 0}, {"top_k", "\"5\"", 0},
    {"top_k", "null", 1},
    /* presence / frequency penalties: [-2, 2] */
    {"presence_penalty", "-2.0001", 0}, {"presence_penalty", "-2", 1}, {"presence_penalty", "2", 1},
    {"presence_penalty", "2.0001", 0}, {"presence_penalty", "-3", 0}, {"presence_penalty", "3", 0},
    {"presence_penalty", "-1", 1}, {"presence_penalty", "2147483648", 0}, {"presence_penalty", "1e308", 0},
    {"presence_penalty", "1e-320", 1}, {"presence_penalty", "\"1\"", 0}, {"presence_penalty", "null", 1},
    {"frequency_penalty", "-2.0001", 0}, {"frequency_penalty", "-2", 1}, {"frequency_penalty", "2", 1},
    {"frequency_penalty", "2.0001", 0}, {"frequency_penalty", "-3", 0}, {"frequency_penalty", "3", 0},
    {"frequency_penalty", "9223372036854775807", 0}, {"frequency_penalty", "1e308", 0},
    {"frequency_penalty", "false", 0}, {"frequency_penalty", "null", 1},
    /* repeat_penalty: (0, 10] */
    {"repeat_penalty", "0", 0}, {"repeat_penalty", "1e-320", 0}, {"repeat_penalty", "-1", 0},
    {"repeat_penalty", "0.5", 1}, {"repeat_penalty", "10", 1}, {"repeat_penalty", "10.001", 0},
    {"repeat_penalty", "2147483648", 0}, {"repeat_penalty", "1e308", 0}, {"repeat_penalty", "\"1\"", 0},
    {"repeat_penalty", "null", 1},
    /* seed: 0 .. 2^63-1 */
    {"seed", "-1", 0}, {"seed", "0", 1}, {"seed", "2147483648", 1}, {"seed", "9223372036854775807", 1},
    {"seed", "1e308", 0}, {"seed", "1e-320", 0}, {"seed", "1.5", 0}, {"seed", "\"1\"", 0}, {"seed", "null", 1},
    /* n: 1..max_n (8) */
    {"n", "0", 0}, {"n", "1", 1}, {"n", "8", 1}, {"n", "9", 0}, {"n", "-1", 0}, {"n", "1000000", 0},
    {"n", "2147483648", 0}, {"n", "9223372036854775807", 0}, {"n", "1e308", 0}, {"n", "1e-320", 0},
    {"n", "1.5", 0}, {"n", "\"2\"", 0}, {"n", "null", 1},
    /* logprobs (completions): 0..max_logprobs (5) */
    {"logprobs", "-1", 0}, {"logprobs", "0", 1}, {"logprobs", "5", 1}, {"logprobs", "6", 0},
    {"logprobs", "1000000", 0}, {"logprobs", "2147483648", 0}, {"logprobs", "9223372036854775807", 0},
    {"logprobs", "1e308", 0}, {"logprobs", "1.5", 0}, {"logprobs", "true", 0}, {"logprobs", "\"1\"", 0},
    {"logprobs", "null", 1},
    /* stop: string or <= 16 strings, each 1..256 bytes */
    {"stop", "\"\"", 0}, {"stop", "\"a\"", 1}, {"stop", "[]", 1}, {"stop", "[\"a\",\"b\"]", 1},
    {"stop", "[\"\"]", 0}, {"stop", "[1]", 0}, {"stop", "[null]", 0}, {"stop", "1", 0}, {"stop", "-1", 0},
    {"stop", "1e308", 0}, {"stop", "{}", 0}, {"stop", "null", 1},
    /* booleans */
    {"stream", "true", 1}, {"stream", "false", 1}, {"stream", "1", 0}, {"stream", "\"true\"", 0},
    {"stream", "null", 1}, {"echo", "true", 1}, {"echo", "0", 0}, {"echo", "null", 1},
    /* stream_options */
    {"stream_options", "{\"include_usage\":true}", 1}, {"stream_options", "{}", 1},
    {"stream_options", "1", 0}, {"stream_options", "null", 1},
    /* strings */
    {"model", "\"tiny\"", 1}, {"model", "1", 0}, {"model", "null", 1}, {"model", "[\"a\"]", 0},
    {"user", "\"u-1\"", 1}, {"user", "false", 0}, {"user", "null", 1},
    /* extensions */
    {"share_spans", "\"auto\"", 1}, {"share_spans", "\"off\"", 1}, {"share_spans", "\"3-4,7-9\"", 1},
    {"share_spans", "\"3\"", 1}, {"share_spans", "\"\"", 0}, {"share_spans", "\"x\"", 0},
    {"share_spans", "\"3-4;rm\"", 0}, {"share_spans", "\"--,\"", 0}, {"share_spans", "1", 0},
    {"share_spans", "null", 1},
    {"rebalance_alpha", "-0.1", 0}, {"rebalance_alpha", "0", 1}, {"rebalance_alpha", "10", 1},
    {"rebalance_alpha", "10.5", 0}, {"rebalance_alpha", "-1", 0}, {"rebalance_alpha", "2147483648", 0},
    {"rebalance_alpha", "1e308", 0}, {"rebalance_alpha", "1e-320", 1}, {"rebalance_alpha", "\"0.2\"", 0},
    {"rebalance_alpha", "null", 1},
    {"rebalance_tau", "-0.1", 0}, {"rebalance_tau", "0", 1}, {"rebalance_tau", "1", 1},
    {"rebalance_tau", "1.1", 0}, {"rebalance_tau", "1e308", 0}, {"rebalance_tau", "\"0.01\"", 0},
    {"rebalance_tau", "null", 1},
};

static const struct pcase chat_cases[] = {
    {"max_tokens", "0", 0}, {"max_tokens", "1", 1}, {"max_tokens", "4096", 1}, {"max_tokens", "4097", 0},
    {"max_completion_tokens", "0", 0}, {"max_completion_tokens", "4096", 1},
    {"max_completion_tokens", "4097", 0}, {"max_completion_tokens", "1.5", 0},
    {"max_completion_tokens", "null", 1},
    {"logprobs", "true", 1}, {"logprobs", "false", 1}, {"logprobs", "1", 0}, {"logprobs", "null", 1},
    {"temperature", "2.5", 0}, {"temperature", "0", 1}, {"n", "9", 0}, {"n", "8", 1},
    {"stop", "[\"a\"]", 1}, {"seed", "-1", 0},
};

static void run_cases(enum request_kind kind, const char *base, const struct pcase *cases, size_t n)
{
    char body[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(body, sizeof body, "{%s,\"%s\":%s}", base, cases[i].param, cases[i].value);
        struct api_error e;
        int rc = try_body(kind, body, &e);
        if (cases[i].ok && rc != 0) {
            TEST_FAIL_("expected ok: %s -> param %s: %s", body, e.param, e.message);
        } else if (!cases[i].ok) {
            if (rc != SA_ERR_INVALID_ARG) {
                TEST_FAIL_("expected 400: %s", body);
                continue;
            }
            if (e.status != 400 || strcmp(e.param, cases[i].param) != 0)
                TEST_FAIL_("%s: status %d param \"%s\" (want 400 \"%s\")", body, e.status, e.param, cases[i].param);
        }
    }
}

static void test_param_table_completions(void)
{
    run_cases(REQUEST_COMPLETION, "\"prompt\":\"hi\"", completion_cases,
              sizeof completion_cases / sizeof completion_cases[0]);
}

static void test_param_table_chat(void)
{
    run_cases(REQUEST_CHAT, "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]", chat_cases,
              sizeof chat_cases / sizeof chat_cases[0]);
}

/* Integers beyond json_int_t fail in jansson's parser: named "body". */
static void test_integer_overflow(void)
{
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"seed\":9223372036854775808}", "body");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"n\":-9223372036854775809}", "body");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"temperature\":1e999}", "body");
}

static void test_defaults(void)
{
    struct api_request r;
    struct api_error e;
    const char *b = "{\"prompt\":\"hello\"}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.kind, REQUEST_COMPLETION);
    ASSERT_EQ(r.n_prompts, 1);
    ASSERT_STR_EQ(r.prompts[0], "hello");
    ASSERT_TRUE(r.prompt_ids == NULL);
    ASSERT_EQ(r.max_tokens, 16);
    ASSERT_TRUE(!r.max_tokens_set);
    ASSERT_NEAR(r.temperature, 1.0, 0);
    ASSERT_NEAR(r.top_p, 1.0, 0);
    ASSERT_NEAR(r.min_p, 0.0, 0);
    ASSERT_NEAR(r.repeat_penalty, 1.0, 0);
    ASSERT_NEAR(r.presence_penalty, 0.0, 0);
    ASSERT_NEAR(r.frequency_penalty, 0.0, 0);
    ASSERT_EQ(r.top_k, 0);
    ASSERT_TRUE(!r.seed_set);
    ASSERT_EQ(r.n_stop, 0);
    ASSERT_TRUE(!r.stream && !r.echo && !r.include_usage);
    ASSERT_EQ(r.logprobs, -1);
    ASSERT_EQ(r.n, 1);
    ASSERT_TRUE(r.share_spans == NULL && r.model == NULL && r.user == NULL);
    ASSERT_TRUE(!r.rebalance_alpha_set && !r.rebalance_tau_set);
    ASSERT_EQ(r.share_query, -1);
    ASSERT_EQ(r.rebalance_query, -1);
    request_free(&r);

    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.kind, REQUEST_CHAT);
    ASSERT_EQ(r.max_tokens, 4096); /* chat: until the limit / context */
    ASSERT_EQ(r.n_prompts, 0);
    ASSERT_EQ(r.n_messages, 1);
    ASSERT_EQ(r.logprobs, -1);
    request_free(&r);
}

static void test_values_read(void)
{
    struct api_request r;
    struct api_error e;
    const char *b = "{\"prompt\":\"x\",\"max_tokens\":99,\"temperature\":0.5,\"top_p\":0.9,\"min_p\":0.05,"
                    "\"top_k\":99999999999,\"presence_penalty\":-1.5,\"frequency_penalty\":1.25,"
                    "\"repeat_penalty\":1.1,\"seed\":9223372036854775807,\"stop\":[\"\\n\",\"END\"],"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"echo\":true,\"logprobs\":3,"
                    "\"n\":4,\"model\":\"m1\",\"user\":\"u\",\"share_spans\":\"3-4,7-9\","
                    "\"rebalance_alpha\":0.3,\"rebalance_tau\":0.02}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.max_tokens, 99);
    ASSERT_TRUE(r.max_tokens_set);
    ASSERT_NEAR(r.temperature, 0.5, 1e-7);
    ASSERT_NEAR(r.top_p, 0.9, 1e-7);
    ASSERT_NEAR(r.min_p, 0.05, 1e-7);
    ASSERT_EQ(r.top_k, 32000); /* clamped to n_vocab */
    ASSERT_NEAR(r.presence_penalty, -1.5, 1e-7);
    ASSERT_NEAR(r.frequency_penalty, 1.25, 1e-7);
    ASSERT_NEAR(r.repeat_penalty, 1.1, 1e-6);
    ASSERT_TRUE(r.seed_set);
    ASSERT_TRUE(r.seed == 9223372036854775807ULL);
    ASSERT_EQ(r.n_stop, 2);
    ASSERT_STR_EQ(r.stop[0], "\n");
    ASSERT_STR_EQ(r.stop[1], "END");
    ASSERT_TRUE(r.stream && r.include_usage && r.echo);
    ASSERT_EQ(r.logprobs, 3);
    ASSERT_EQ(r.n, 4);
    ASSERT_STR_EQ(r.model, "m1");
    ASSERT_STR_EQ(r.user, "u");
    ASSERT_STR_EQ(r.share_spans, "3-4,7-9");
    ASSERT_TRUE(r.rebalance_alpha_set && r.rebalance_tau_set);
    ASSERT_NEAR(r.rebalance_alpha, 0.3, 1e-7);
    ASSERT_NEAR(r.rebalance_tau, 0.02, 1e-7);
    request_free(&r);

    /* 1e-320 temperature is accepted (greedy) and narrows to 0 */
    b = "{\"prompt\":\"x\",\"temperature\":1e-320}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_TRUE(r.temperature == 0.0f);
    request_free(&r);

    /* max_tokens 0: completions with echo only (scoring the prompt); chat never */
    b = "{\"prompt\":\"x\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.max_tokens, 0);
    ASSERT_TRUE(r.echo);
    request_free(&r);
    b = "{\"prompt\":\"x\",\"max_tokens\":0,\"echo\":false}";
    ASSERT_TRUE(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e) != 0 && e.status == 400 &&
                strcmp(e.param, "max_tokens") == 0);
    request_free(&r);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}";
    ASSERT_TRUE(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e) != 0 && strcmp(e.param, "max_tokens") == 0);
    request_free(&r);
}

/* Nothing is silently ignored: a field saserve does not implement is a 400
 * unsupported_parameter naming it, except the no-op OpenAI fields and nulls. */
static void test_unknown_fields_rejected(void)
{
    EXPECT_OK(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"user\":\"u\",\"store\":false,\"metadata\":{\"k\":\"v\"},"
                                  "\"service_tier\":\"auto\",\"suffix\":null,\"tools\":null}");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"name\":\"x\"}]}");
    static const char *const completion_bad[][2] = {
        {"\"foo\":{\"bar\":[1,2]}", "foo"}, {"\"suffix\":\"x\"", "suffix"}, {"\"best_of\":2", "best_of"},
        {"\"messages\":5", "messages"}, {"\"tools\":[]", "tools"},
        {"\"parallel_tool_calls\":true", "parallel_tool_calls"}, {"\"top_logprobs\":2", "top_logprobs"},
        {"\"x\\u00e9\":1", "body"},
    };
    for (size_t i = 0; i < sizeof completion_bad / sizeof completion_bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",%s}", completion_bad[i][0]);
        EXPECT_BAD(REQUEST_COMPLETION, body, completion_bad[i][1]);
        struct api_error e;
        if (try_body(REQUEST_COMPLETION, body, &e) == SA_ERR_INVALID_ARG) ASSERT_STR_EQ(e.code, "unsupported_parameter");
    }
    static const char *const chat_bad[][2] = {
        {"\"prompt\":5", "prompt"}, {"\"echo\":true", "echo"}, {"\"functions\":[]", "functions"},
        {"\"function_call\":\"auto\"", "function_call"},
    };
    for (size_t i = 0; i < sizeof chat_bad / sizeof chat_bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],%s}", chat_bad[i][0]);
        EXPECT_BAD(REQUEST_CHAT, body, chat_bad[i][1]);
    }
}

/* Function calling: tools, tool_choice, parallel_tool_calls, the tool role and
 * assistant tool_calls read; each bad value a 400 naming it with its code. */
#define TOOL_W "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\",\"strict\":true," \
               "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}"
#define TOOL_T "{\"type\":\"function\",\"function\":{\"name\":\"t-2_x\"}}"
#define USER "{\"role\":\"user\",\"content\":\"a\"}"
#define CALL(id) "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"" id "\",\"type\":\"function\"," \
                 "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]}"
static void expect_chat_error(const char *body, const char *param, const char *code)
{
    struct api_error e;
    int rc = try_body(REQUEST_CHAT, body, &e);
    ASSERT_EQ(rc, SA_ERR_INVALID_ARG);
    if (rc != SA_ERR_INVALID_ARG) return;
    if (strcmp(e.param, param) != 0 || strcmp(e.code ? e.code : "", code) != 0)
        TEST_FAIL_("%s: param %s code %s (want %s %s): %s", body, e.param, e.code, param, code, e.message);
}

static void test_tools(void)
{
    struct api_request r;
    struct api_error e;
    const char *b = "{\"messages\":[" USER "," CALL("c1") ",{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":"
                    "[{\"type\":\"text\",\"text\":\"sun\"}]}],\"tools\":[" TOOL_W "," TOOL_T "],"
                    "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"t-2_x\"}},\"parallel_tool_calls\":false}";
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_tools, 2);
    if (r.n_tools == 2) {
        ASSERT_STR_EQ(r.tools[0].name, "get_weather");
        ASSERT_STR_EQ(r.tools[0].parameters, "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}");
        ASSERT_TRUE(r.tools[1].parameters == NULL);
        ASSERT_CONTAINS(r.tools[0].json, "\"description\":\"d\"");
    }
    ASSERT_EQ(r.tool_choice, TOOL_CHOICE_NAMED);
    ASSERT_EQ(r.tool_choice_index, 1);
    ASSERT_TRUE(!r.parallel_tool_calls);
    ASSERT_EQ(r.n_messages, 3);
    if (r.n_messages == 3) {
        ASSERT_STR_EQ(r.messages[1].content, "");
        ASSERT_EQ(r.messages[1].n_tool_calls, 1);
        if (r.messages[1].n_tool_calls == 1) {
            ASSERT_STR_EQ(r.messages[1].tool_calls[0].id, "c1");
            ASSERT_STR_EQ(r.messages[1].tool_calls[0].arguments, "{\"city\": \"Paris\"}"); /* re-serialised */
        }
        ASSERT_STR_EQ(r.messages[2].role, "tool");
        ASSERT_STR_EQ(r.messages[2].tool_call_id, "c1");
        ASSERT_STR_EQ(r.messages[2].content, "sun");
    }
    request_free(&r);
    /* defaults: tools -> auto, none -> none; "tools": [] is no tools */
    b = "{\"messages\":[" USER "],\"tools\":[" TOOL_T "]}";
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.tool_choice, TOOL_CHOICE_AUTO);
    ASSERT_TRUE(r.parallel_tool_calls);
    request_free(&r);
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[" USER "],\"tools\":[],\"tool_choice\":\"none\"}");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[" USER "],\"tools\":[" TOOL_T "],\"tool_choice\":\"required\"}");

    static const char *const bad[][3] = {
        {"\"tools\":{}", "tools", "invalid_type"},
        {"\"tools\":[5]", "tools[0]", "invalid_type"},
        {"\"tools\":[{\"type\":\"code\",\"function\":{\"name\":\"f\"}}]", "tools[0].type", "invalid_value"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{}}]", "tools[0].function.name", "missing_required_parameter"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get weather\"}}]", "tools[0].function.name", "invalid_value"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f.g\"}}]", "tools[0].function.name", "invalid_value"},
        {"\"tools\":[" TOOL_T "," TOOL_T "]", "tools[1].function.name", "invalid_value"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
         "\"properties\":{\"s\":{\"type\":\"string\",\"pattern\":\"^a\"}}}}}]", "tools[0].function.parameters", "unsupported_schema"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"string\"}}}]",
         "tools[0].function.parameters", "invalid_value"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]", "tools[0].function.parameters", "invalid_type"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"strict\":1}}]", "tools[0].function.strict", "invalid_type"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"examples\":[]}}]", "tools[0].function.examples", "unsupported_parameter"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"},\"cache\":1}]", "tools[0]", "unsupported_parameter"},
        {"\"tool_choice\":\"auto\"", "tool_choice", "invalid_value"},
        {"\"tools\":[" TOOL_T "],\"tool_choice\":\"any\"", "tool_choice", "invalid_value"},
        {"\"tools\":[" TOOL_T "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}", "tool_choice", "invalid_value"},
        {"\"tools\":[" TOOL_T "],\"tool_choice\":{\"type\":\"function\"}", "tool_choice", "invalid_type"},
        {"\"tools\":[" TOOL_T "],\"parallel_tool_calls\":\"yes\"", "parallel_tool_calls", "invalid_type"},
        {"\"tools\":[" TOOL_T "],\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}", "tool_choice", "invalid_value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"messages\":[" USER "],%s}", bad[i][0]);
        expect_chat_error(body, bad[i][1], bad[i][2]);
    }
    /* messages */
    expect_chat_error("{\"messages\":[" USER ",{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[1].tool_call_id",
                      "missing_required_parameter");
    expect_chat_error("{\"messages\":[" USER ",{\"role\":\"tool\",\"tool_call_id\":\"zz\",\"content\":\"x\"}]}",
                      "messages[1].tool_call_id", "invalid_value");
    expect_chat_error("{\"messages\":[" USER "," CALL("c1") ",{\"role\":\"tool\",\"tool_call_id\":\"c1\"}]}",
                      "messages[2].content", "invalid_type");
    expect_chat_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_call_id\":\"c\"}]}", "messages[0].tool_call_id",
                      "invalid_value");
    expect_chat_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[]}]}", "messages[0].tool_calls",
                      "invalid_value");
    expect_chat_error("{\"messages\":[" USER "," CALL("c1") "," CALL("c1") "]}", "messages[2].tool_calls[0].id", "invalid_value");
    expect_chat_error("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"arguments\":\"{not json\"}}]}]}",
                      "messages[0].tool_calls[0].function.arguments", "invalid_value");
    expect_chat_error("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]}",
                      "messages[0].tool_calls[0].function.arguments", "invalid_type");
    expect_chat_error("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                      "\"function\":{\"name\":\"a b\",\"arguments\":\"{}\"}}]}]}",
                      "messages[0].tool_calls[0].function.name", "invalid_value");
    expect_chat_error("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}",
                      "messages[0].tool_calls[0].id", "invalid_type");
    /* at most REQUEST_MAX_CONV_TOOL_CALLS calls in all the messages: 9 x 128 is over */
    size_t cap = 200000, len = 0;
    char *big = malloc(cap);
    ASSERT_TRUE(big != NULL);
    if (big) {
        len += (size_t)snprintf(big + len, cap - len, "{\"messages\":[" USER);
        for (int m = 0; m < 9; m++) {
            len += (size_t)snprintf(big + len, cap - len, ",{\"role\":\"assistant\",\"tool_calls\":[");
            for (int k = 0; k < REQUEST_MAX_TOOL_CALLS; k++)
                len += (size_t)snprintf(big + len, cap - len,
                                        "%s{\"id\":\"c%d_%d\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                                        "\"arguments\":\"{}\"}}",
                                        k ? "," : "", m, k);
            len += (size_t)snprintf(big + len, cap - len, "]}");
        }
        snprintf(big + len, cap - len, "]}");
        expect_chat_error(big, "messages[9].tool_calls", "invalid_value");
        free(big);
    }
    /* tools on completions: not implemented there */
    struct api_error ce;
    ASSERT_EQ(try_body(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"tools\":[" TOOL_T "]}", &ce), SA_ERR_INVALID_ARG);
    ASSERT_STR_EQ(ce.code, "unsupported_parameter");
}

/* logit_bias, ignore_eos, min_tokens, stop_token_ids: read, and each bad value a 400 naming it. */
static void test_token_controls(void)
{
    struct api_request r;
    struct api_error e;
    const char *b = "{\"prompt\":\"a\",\"max_tokens\":10,\"logit_bias\":{\"5\":-100,\"31999\":2.5},"
                    "\"ignore_eos\":true,\"min_tokens\":4,\"stop_token_ids\":[13,2]}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_logit_bias, 2);
    ASSERT_EQ(r.logit_bias[0].id, 5);
    ASSERT_NEAR(r.logit_bias[0].bias, -100, 0);
    ASSERT_EQ(r.logit_bias[1].id, 31999);
    ASSERT_NEAR(r.logit_bias[1].bias, 2.5, 0);
    ASSERT_TRUE(r.ignore_eos);
    ASSERT_EQ(r.min_tokens, 4);
    ASSERT_EQ(r.n_stop_token_ids, 2);
    ASSERT_EQ(r.stop_token_ids[0], 13);
    ASSERT_EQ(r.stop_token_ids[1], 2);
    request_free(&r);
    static const char *const bad[][2] = {
        {"\"logit_bias\":[1]", "logit_bias"}, {"\"logit_bias\":{\"32000\":1}", "logit_bias"},
        {"\"logit_bias\":{\"-1\":1}", "logit_bias"}, {"\"logit_bias\":{\"a\":1}", "logit_bias"},
        {"\"logit_bias\":{\"\":1}", "logit_bias"}, {"\"logit_bias\":{\"1\":101}", "logit_bias"},
        {"\"logit_bias\":{\"1\":\"x\"}", "logit_bias"}, {"\"logit_bias\":{\" 1\":1}", "logit_bias"},
        {"\"ignore_eos\":1", "ignore_eos"}, {"\"min_tokens\":-1", "min_tokens"},
        {"\"min_tokens\":17", "min_tokens"}, {"\"min_tokens\":1.5", "min_tokens"},
        {"\"stop_token_ids\":3", "stop_token_ids"}, {"\"stop_token_ids\":[32000]", "stop_token_ids"},
        {"\"stop_token_ids\":[1.0]", "stop_token_ids"},
        {"\"stop_token_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", "stop_token_ids"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",%s}", bad[i][0]); /* max_tokens 16 */
        EXPECT_BAD(REQUEST_COMPLETION, body, bad[i][1]);
    }
}

/* ---- prompts (B2, C2, C6) ---- */

static void test_prompt_variants(void)
{
    static const char *const ok[] = {
        "\"\"", "\"hello\"", "[\"a\",\"b\"]", "[\"\"]", "[1,2,3]", "[0]", "[31999]", "[[1,2],[3]]",
        "[[0]]", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]",
    };
    static const char *const bad[] = {
        "[]", "[-1]", "[32000]", "[4294967296]", "[2147483648]", "[-2147483649]", "[9223372036854775807]",
        "[1.5]", "[1.0]", "[\"a\",1]", "[1,\"a\"]", "[\"a\"]x", "[[1],[]]", "[[]]", "[[1],2]",
        "[[1.5]]", "[[[1]]]", "[[-1]]", "[[32000]]", "[null]", "[true]", "[{}]", "1", "1.5", "true", "{}",
        "null", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]",
        "[[1],[1],[1],[1],[1],[1],[1],[1],[1]]", "[\"a\",null]", "[[1],null]",
    };
    char body[256];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(body, sizeof body, "{\"prompt\":%s}", ok[i]);
        EXPECT_OK(REQUEST_COMPLETION, body);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"prompt\":%s}", bad[i]);
        /* "[\"a\"]x" is a syntax error of the body */
        EXPECT_BAD(REQUEST_COMPLETION, body, strcmp(bad[i], "[\"a\"]x") == 0 ? "body" : "prompt");
    }
    EXPECT_BAD(REQUEST_COMPLETION, "{}", "prompt");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"model\":\"x\"}", "prompt");

    /* contents */
    struct api_request r;
    struct api_error e;
    const char *b = "{\"prompt\":[[5,6,7],[31999]]}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_prompts, 2);
    ASSERT_TRUE(r.prompts == NULL && r.prompt_ids && r.prompt_id_lens);
    ASSERT_EQ(r.prompt_id_lens[0], 3);
    ASSERT_EQ(r.prompt_ids[0][2], 7);
    ASSERT_EQ(r.prompt_id_lens[1], 1);
    ASSERT_EQ(r.prompt_ids[1][0], 31999);
    request_free(&r);

    b = "{\"prompt\":[\"a\",\"\",\"\\u00e9\"]}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_prompts, 3);
    ASSERT_STR_EQ(r.prompts[1], "");
    ASSERT_STR_EQ(r.prompts[2], "\xc3\xa9");
    request_free(&r);

    b = "{\"prompt\":[1,2,3]}";
    ASSERT_OK(parse_kind(REQUEST_COMPLETION, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_prompts, 1);
    ASSERT_EQ(r.prompt_id_lens[0], 3);
    request_free(&r);
}

static void test_prompt_sizes(void)
{
    /* text: exactly max_prompt_bytes ok, one more rejected */
    size_t cap = LIM.max_prompt_bytes;
    char *body = malloc(cap + 64);
    char *p = body + sprintf(body, "{\"prompt\":\"");
    memset(p, 'a', cap);
    strcpy(p + cap, "\"}");
    EXPECT_OK(REQUEST_COMPLETION, body);
    p = body + sprintf(body, "{\"prompt\":\"");
    memset(p, 'a', cap + 1);
    strcpy(p + cap + 1, "\"}");
    EXPECT_BAD(REQUEST_COMPLETION, body, "prompt");
    free(body);

    /* ids: n_ctx ok, n_ctx + 1 rejected */
    size_t big = 16 + (LIM.n_ctx + 1) * 2;
    body = malloc(big);
    for (int extra = 0; extra <= 1; extra++) {
        size_t o = (size_t)sprintf(body, "{\"prompt\":[");
        for (uint32_t i = 0; i < LIM.n_ctx + (uint32_t)extra; i++) o += (size_t)sprintf(body + o, i ? ",1" : "1");
        strcpy(body + o, "]}");
        if (extra) EXPECT_BAD(REQUEST_COMPLETION, body, "prompt");
        else EXPECT_OK(REQUEST_COMPLETION, body);
    }
    free(body);
}

static void test_fan_out(void)
{
    /* C2: n x prompts <= max_n (8) */
    EXPECT_OK(REQUEST_COMPLETION, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":2}");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":3}", "n");
    EXPECT_OK(REQUEST_COMPLETION, "{\"prompt\":[[1],[2]],\"n\":4}");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":[[1],[2]],\"n\":5}", "n");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"n\":1000000}", "n");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":8}");
}

static void test_stop_limits(void)
{
    char body[8192];
    /* 16 strings ok, 17 rejected */
    for (int k = 16; k <= 17; k++) {
        size_t o = (size_t)sprintf(body, "{\"prompt\":\"a\",\"stop\":[");
        for (int i = 0; i < k; i++) o += (size_t)sprintf(body + o, "%s\"s%d\"", i ? "," : "", i);
        strcpy(body + o, "]}");
        if (k == 16) EXPECT_OK(REQUEST_COMPLETION, body);
        else EXPECT_BAD(REQUEST_COMPLETION, body, "stop");
    }
    /* 256 bytes ok, 257 rejected (string and array forms) */
    for (int len = 256; len <= 257; len++) {
        for (int arr = 0; arr <= 1; arr++) {
            size_t o = (size_t)sprintf(body, "{\"prompt\":\"a\",\"stop\":%s\"", arr ? "[" : "");
            memset(body + o, 'z', (size_t)len);
            o += (size_t)len;
            strcpy(body + o, arr ? "\"]}" : "\"}");
            if (len == 256) EXPECT_OK(REQUEST_COMPLETION, body);
            else EXPECT_BAD(REQUEST_COMPLETION, body, "stop");
        }
    }
    /* 16 stops filled, then an error on the 17th must not leak (checked by ASan) */
}

/* ---- chat ---- */

static void test_chat_messages(void)
{
    EXPECT_BAD(REQUEST_CHAT, "{}", "messages");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":null}", "messages");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[]}", "messages");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":\"hi\"}", "messages");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":{}}", "messages");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[1]}", "messages[0]");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},null]}", "messages[1]");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"content\":\"a\"}]}", "messages[0].role");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"bot\",\"content\":\"a\"}]}", "messages[0].role");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"USER\",\"content\":\"a\"}]}", "messages[0].role");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":1,\"content\":\"a\"}]}", "messages[0].role");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content");
    EXPECT_BAD(REQUEST_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
               "messages[0].content[1]");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[1]}]}", "messages[0].content[0]");
    EXPECT_BAD(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
               "messages[0].content[0]");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"content\":null}]}");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}");
    EXPECT_OK(REQUEST_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}");

    struct api_request r;
    struct api_error e;
    const char *b = "{\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ab\"},{\"type\":\"text\",\"text\":\"cd\"}]},"
                    "{\"role\":\"assistant\",\"content\":\"ok\"}]}";
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.n_messages, 3);
    ASSERT_STR_EQ(r.messages[0].role, "system");
    ASSERT_STR_EQ(r.messages[0].content, "be brief");
    ASSERT_STR_EQ(r.messages[1].role, "user");
    ASSERT_STR_EQ(r.messages[1].content, "abcd");
    ASSERT_STR_EQ(r.messages[2].role, "assistant");
    request_free(&r);

    /* total content over max_prompt_bytes (two messages of 600 bytes) */
    char *big = malloc(4096);
    size_t o = (size_t)sprintf(big, "{\"messages\":[");
    for (int i = 0; i < 2; i++) {
        o += (size_t)sprintf(big + o, "%s{\"role\":\"user\",\"content\":\"", i ? "," : "");
        memset(big + o, 'q', 600);
        o += 600;
        o += (size_t)sprintf(big + o, "\"}");
    }
    strcpy(big + o, "]}");
    EXPECT_BAD(REQUEST_CHAT, big, "messages");
    free(big);
}

static void test_chat_logprobs(void)
{
    struct api_request r;
    struct api_error e;
    const char *base = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[256];
    snprintf(b, sizeof b, "{%s,\"logprobs\":true,\"top_logprobs\":3}", base);
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.logprobs, 3);
    request_free(&r);
    snprintf(b, sizeof b, "{%s,\"logprobs\":true}", base);
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.logprobs, 0);
    request_free(&r);
    snprintf(b, sizeof b, "{%s,\"logprobs\":false}", base);
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.logprobs, -1);
    request_free(&r);
    snprintf(b, sizeof b, "{%s,\"top_logprobs\":3}", base);
    EXPECT_BAD(REQUEST_CHAT, b, "top_logprobs");
    snprintf(b, sizeof b, "{%s,\"logprobs\":true,\"top_logprobs\":6}", base);
    EXPECT_BAD(REQUEST_CHAT, b, "top_logprobs");
    snprintf(b, sizeof b, "{%s,\"logprobs\":true,\"top_logprobs\":-1}", base);
    EXPECT_BAD(REQUEST_CHAT, b, "top_logprobs");
    snprintf(b, sizeof b, "{%s,\"logprobs\":true,\"top_logprobs\":1.5}", base);
    EXPECT_BAD(REQUEST_CHAT, b, "top_logprobs");
    snprintf(b, sizeof b, "{%s,\"max_tokens\":10,\"max_completion_tokens\":20}", base);
    ASSERT_OK(parse_kind(REQUEST_CHAT, b, strlen(b), &r, &e));
    ASSERT_EQ(r.max_tokens, 20);
    request_free(&r);
    snprintf(b, sizeof b, "{%s,\"stream_options\":{\"include_usage\":1}}", base);
    EXPECT_BAD(REQUEST_CHAT, b, "stream_options.include_usage");
}

/* ---- malformed bodies (B4) ---- */

static void expect_bad_raw(const char *body, size_t len, const char *want_param, const char *must_not_echo)
{
    struct api_request r;
    struct api_error e;
    int rc = parse_kind(REQUEST_COMPLETION, body, len, &r, &e);
    request_free(&r);
    if (rc != SA_ERR_INVALID_ARG) {
        TEST_FAIL_("expected 400 for a malformed body of %zu bytes", len);
        return;
    }
    ASSERT_EQ(e.status, 400);
    ASSERT_STR_EQ(e.param, want_param);
    if (must_not_echo && strstr(e.message, must_not_echo))
        TEST_FAIL_("message echoes input: %s", e.message);
    /* the message is plain ASCII: no request bytes */
    for (const char *p = e.message; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20) TEST_FAIL_("message has a raw byte");
}

#define BAD_RAW(lit, param, echo) expect_bad_raw(lit, sizeof(lit) - 1, param, echo)

static void test_malformed_json(void)
{
    BAD_RAW("", "body", NULL);
    BAD_RAW("{", "body", NULL);
    BAD_RAW("[", "body", NULL);
    BAD_RAW("{\"prompt\":\"EVILTEXT", "body", "EVIL");
    BAD_RAW("{\"prompt\":\"a\"", "body", NULL);
    BAD_RAW("{\"prompt\":\"a\"} trailing", "body", "trailing");
    BAD_RAW("{\"prompt\":\"a\",\"prompt\":\"b\"}", "prompt", NULL);
    BAD_RAW("{\"prompt\":\"a\",\"temperature\":1,\"temperature\":1}", "temperature", NULL);
    BAD_RAW("{\"prompt\":\"a\",\"EVILKEY\":1,\"EVILKEY\":2}", "body", "EVIL");
    BAD_RAW("{\"prompt\":\"a\",\"temperature\":NaN}", "body", "NaN");
    BAD_RAW("{\"prompt\":\"a\",\"temperature\":Infinity}", "body", "Infinity");
    BAD_RAW("{\"prompt\":\"a\",\"temperature\":-Infinity}", "body", "Infinity");
    BAD_RAW("{\"prompt\":\"a\",\"temperature\":1e999}", "body", "1e999");
    BAD_RAW("{\"prompt\":\"a\\u0000b\"}", "body", "u0000");
    BAD_RAW("{\"prompt\":\"\xff\xfe\"}", "body", NULL);
    BAD_RAW("{\"prompt\":\"\xc0\xaf\"}", "body", NULL);             /* overlong */
    BAD_RAW("{\"prompt\":\"\xed\xa0\x80\"}", "body", NULL);         /* surrogate */
    BAD_RAW("{\"prompt\":\"\xe2\x82\"}", "body", NULL);             /* truncated sequence */
    BAD_RAW("{\"prompt\":\"\\ud800\"}", "body", NULL);              /* lone escaped surrogate */
    BAD_RAW("{\"prompt\":\"a\x01\"}", "body", NULL);                /* raw control char */
    BAD_RAW("{\"prompt\":\"a\0b\"}", "body", NULL);                 /* raw NUL byte */
    BAD_RAW("[1,2]", "body", NULL);
    BAD_RAW("[]", "body", NULL);
    BAD_RAW("\"prompt\"", "body", NULL);
    BAD_RAW("42", "body", NULL);
    BAD_RAW("null", "body", NULL);
    BAD_RAW("{prompt:\"a\"}", "body", NULL);
    BAD_RAW("{'prompt':'a'}", "body", NULL);
    BAD_RAW("{\"prompt\":\"a\",}", "body", NULL);
    /* GBK bytes (B4 anchor) */
    BAD_RAW("{\"prompt\":\"\xc4\xe3\xba\xc3\"}", "body", NULL);

    /* deep nesting beyond jansson's limit */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 32);
    size_t o = (size_t)sprintf(deep, "{\"prompt\":\"a\",\"x\":");
    memset(deep + o, '[', depth);
    o += depth;
    memset(deep + o, ']', depth);
    o += depth;
    deep[o++] = '}';
    expect_bad_raw(deep, o, "body", NULL);
    free(deep);

    /* NULL body */
    struct api_request r;
    struct api_error e;
    request_init(&r);
    ASSERT_EQ(request_parse(REQUEST_COMPLETION, NULL, 0, &LIM, &r, &e), SA_ERR_INVALID_ARG);
    ASSERT_STR_EQ(e.param, "body");
    request_free(&r);
}

/* ---- query toggles (C7) ---- */

static void test_query_args(void)
{
    struct api_request r;
    struct api_error e;

    request_init(&r);
    ASSERT_OK(request_query_arg(&r, "share", "on", &e));
    ASSERT_OK(request_query_arg(&r, "rebalance", "off", &e));
    ASSERT_EQ(r.share_query, 1);
    ASSERT_EQ(r.rebalance_query, 0);
    /* the body parse keeps them */
    const char *b = "{\"prompt\":\"a\"}";
    ASSERT_OK(request_parse(REQUEST_COMPLETION, b, strlen(b), &LIM, &r, &e));
    ASSERT_EQ(r.share_query, 1);
    ASSERT_EQ(r.rebalance_query, 0);
    /* duplicate */
    ASSERT_EQ(request_query_arg(&r, "share", "off", &e), SA_ERR_INVALID_ARG);
    ASSERT_EQ(e.status, 400);
    ASSERT_STR_EQ(e.param, "share");
    request_free(&r);

    static const struct {
        const char *key, *value, *param;
    } bad[] = {
        {"share", "maybe", "share"}, {"share", "", "share"},     {"share", NULL, "share"},
        {"share", "ON", "share"},    {"share", "on x", "share"}, {"share", " on", "share"},
        {"share", "1", "share"},     {"share", "true", "share"}, {"rebalance", "yes", "rebalance"},
        {"SHARE", "on", "SHARE"},    {"foo", "1", "foo"},        {"", "on", "query"},
        {"sh\"are", "on", "query"},  {"\xff", "on", "query"},    {"recreate", "on", "recreate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        request_init(&r);
        memset(&e, 0, sizeof e);
        int rc = request_query_arg(&r, bad[i].key, bad[i].value, &e);
        if (rc != SA_ERR_INVALID_ARG) TEST_FAIL_("query %zu accepted", i);
        ASSERT_EQ(e.status, 400);
        ASSERT_STR_EQ(e.param, bad[i].param);
        ASSERT_EQ(r.share_query, -1);
        /* the value never appears in the message */
        if (bad[i].value && strlen(bad[i].value) > 2) ASSERT_TRUE(strstr(e.message, bad[i].value) == NULL);
        request_free(&r);
    }

    /* duplicate rebalance, and a NULL key */
    request_init(&r);
    ASSERT_OK(request_query_arg(&r, "rebalance", "on", &e));
    ASSERT_EQ(request_query_arg(&r, "rebalance", "on", &e), SA_ERR_INVALID_ARG);
    ASSERT_STR_EQ(e.param, "rebalance");
    ASSERT_EQ(request_query_arg(&r, NULL, "on", &e), SA_ERR_INVALID_ARG);
    ASSERT_STR_EQ(e.param, "query");
    request_free(&r);
}

static void test_error_helper(void)
{
    struct api_error e;
    request_error(&e, "prompt", "too long: %d", 5);
    ASSERT_EQ(e.status, 400);
    ASSERT_STR_EQ(e.type, "invalid_request_error");
    ASSERT_STR_EQ(e.param, "prompt");
    ASSERT_STR_EQ(e.message, "too long: 5");
    request_error(&e, NULL, "x");
    ASSERT_STR_EQ(e.param, "");
    request_free(NULL);
}

/* Every failure path after partial allocation frees cleanly (ASan/LSan). */
static void test_partial_free(void)
{
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":[\"a\",\"b\",3]}", "prompt");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":[[1,2],[3],[-4]]}", "prompt");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":\"a\",\"model\":\"m\",\"stop\":[\"x\",\"y\",\"\"]}", "stop");
    EXPECT_BAD(REQUEST_COMPLETION, "{\"prompt\":[1,2],\"user\":\"u\",\"share_spans\":\"bad!\"}", "share_spans");
    EXPECT_BAD(REQUEST_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":7}]}",
               "messages[1].content");
}

int main(void)
{
    TEST_RUN(test_param_table_completions);
    TEST_RUN(test_param_table_chat);
    TEST_RUN(test_integer_overflow);
    TEST_RUN(test_defaults);
    TEST_RUN(test_values_read);
    TEST_RUN(test_unknown_fields_rejected);
    TEST_RUN(test_tools);
    TEST_RUN(test_token_controls);
    TEST_RUN(test_prompt_variants);
    TEST_RUN(test_prompt_sizes);
    TEST_RUN(test_fan_out);
    TEST_RUN(test_stop_limits);
    TEST_RUN(test_chat_messages);
    TEST_RUN(test_chat_logprobs);
    TEST_RUN(test_malformed_json);
    TEST_RUN(test_query_args);
    TEST_RUN(test_error_helper);
    TEST_RUN(test_partial_free);
    TEST_DONE();
}
