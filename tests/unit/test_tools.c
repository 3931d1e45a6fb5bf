/* test_tools.c - function calling around the chat formats (server/tools.h):
 * calls parsed from generated text, the streaming hold-back, and the call
 * grammar (compiled by the engine's grammar compiler and run on exact texts).
 * White-box: includes server/tools.c (links server/schema.o). */
#include "../test.h"

#include "../../server/tools.c"
#include "engine/grammar.h"

static char *const NAMES[] = {"get_weather", "time"};

static void expect_calls(enum chat_format f, const char *text, size_t n_calls, size_t content_len, const char *name0,
                         const char *args0)
{
    struct tools_parsed p;
    ASSERT_OK(tools_parse_output(f, text, strlen(text), NAMES, 2, &p));
    ASSERT_EQ(p.n_calls, n_calls);
    ASSERT_EQ(p.content_len, content_len);
    if (n_calls && p.n_calls) {
        ASSERT_STR_EQ(p.calls[0].name, name0);
        ASSERT_STR_EQ(p.calls[0].arguments, args0);
    }
    tools_parsed_free(&p);
}

static void test_parse_chatml(void)
{
    const char *one = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": 2}}\n</tool_call>";
    expect_calls(CHAT_FORMAT_CHATML, one, 1, 5, "get_weather", "{\"city\":\"Paris\",\"n\":2}");
    expect_calls(CHAT_FORMAT_LLAMA2, one, 1, 5, "get_weather", "{\"city\":\"Paris\",\"n\":2}");
    /* two calls; no closing tag on the last; arguments given as a JSON string; "parameters" */
    expect_calls(CHAT_FORMAT_CHATML,
                 "<tool_call>{\"name\": \"time\", \"arguments\": \"{}\"}</tool_call>\n<tool_call>\n{\"name\": "
                 "\"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
                 2, 0, "time", "{}");
    /* a cut-off last call after a complete one is dropped, the complete one kept */
    expect_calls(CHAT_FORMAT_CHATML,
                 "<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_w", 1,
                 0, "time", "{}");
    /* not calls: all content */
    const char *no[] = {
        "plain text",
        "<tool_call>\n{\"name\": \"get_w",                                             /* cut off, alone */
        "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>",           /* unknown tool */
        "<tool_call>\n{\"name\": \"time\", \"arguments\": [1]}\n</tool_call>",           /* not an object */
        "<tool_call>\n{\"name\": \"time\"}\n</tool_call>",                              /* no arguments */
        "<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call><tool_call>x</tool_call>", /* one bad: none */
        "<tool_call>\n{\"name\": \"time\", \"arguments\": \"{x\"}\n</tool_call>",         /* string, not JSON */
    };
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) expect_calls(CHAT_FORMAT_CHATML, no[i], 0, strlen(no[i]), NULL, NULL);
}

static void test_parse_llama3(void)
{
    expect_calls(CHAT_FORMAT_LLAMA3, " {\"name\": \"time\", \"parameters\": {}} ", 1, 0, "time", "{}");
    expect_calls(CHAT_FORMAT_LLAMA3, "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}", 1, 0,
                 "get_weather", "{\"city\":\"Oslo\"}");
    expect_calls(CHAT_FORMAT_LLAMA3, "{\"name\": \"time\", \"parameters\": {}}\n{\"name\": \"get_weather\", \"parameters\": {}}",
                 2, 0, "time", "{}");
    const char *no[] = {"Hello {\"name\": \"time\", \"parameters\": {}}", "{\"name\": \"time\", \"parameters\": {}} and",
                        "{\"name\": \"x\", \"parameters\": {}}", "{\"name\": \"time\", \"parameters\": {", ""};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) expect_calls(CHAT_FORMAT_LLAMA3, no[i], 0, strlen(no[i]), NULL, NULL);
}

static void expect_stream(enum chat_format f, const char *text, size_t want, bool started)
{
    bool s = !started;
    ASSERT_EQ(tools_stream_content(f, text, strlen(text), 0, &s), want);
    ASSERT_EQ(s, started);
    /* fed one byte at a time, with what was sent carried over: the same answer */
    size_t sent = 0, n = strlen(text);
    s = false;
    for (size_t i = 1; i <= n && !s; i++) sent = tools_stream_content(f, text, i, sent, &s);
    ASSERT_EQ(sent, want);
    ASSERT_EQ(s, started);
}

static void test_stream(void)
{
    expect_stream(CHAT_FORMAT_CHATML, "abc", 3, false);
    expect_stream(CHAT_FORMAT_CHATML, "abc<", 3, false);
    expect_stream(CHAT_FORMAT_CHATML, "abc<tool_ca", 3, false);
    expect_stream(CHAT_FORMAT_CHATML, "abc<tool_call>{\"na", 3, true);
    expect_stream(CHAT_FORMAT_LLAMA2, "a <b> c", 7, false);
    expect_stream(CHAT_FORMAT_LLAMA3, " \n", 0, false);
    expect_stream(CHAT_FORMAT_LLAMA3, " {\"name", 0, true);
    expect_stream(CHAT_FORMAT_LLAMA3, "<|pyth", 0, false);
    expect_stream(CHAT_FORMAT_LLAMA3, "<|python_tag|>", 0, true);
    expect_stream(CHAT_FORMAT_LLAMA3, "Hi {", 4, false);
}

/* Does grammar text g accept exactly the bytes of s (all accepted, and complete)? */
static bool grammar_takes(const char *g, const char *s)
{
    struct grammar *gr = NULL;
    struct grammar_matcher *m = NULL;
    char msg[256] = "";
    if (grammar_compile(g, strlen(g), &gr, msg, sizeof msg) != 0) {
        fprintf(stderr, "  grammar does not compile: %s\n", msg);
        return false;
    }
    bool ok = grammar_matcher_create(gr, &m) == 0 && grammar_accept_bytes(m, (const uint8_t *)s, strlen(s)) == 0 &&
              grammar_can_end(m);
    grammar_matcher_destroy(m);
    grammar_unref(gr);
    return ok;
}

static void test_grammar(void)
{
    struct api_tool tools[] = {
        {"get_weather", "",
         "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},"
         "\"required\":[\"city\",\"days\"],\"additionalProperties\":false}"},
        {"time", "", NULL},
    };
    struct api_request r;
    memset(&r, 0, sizeof r);
    r.parallel_tool_calls = true;
    r.tools = tools;
    r.n_tools = 2;
    char *g = NULL, msg[200] = "";
    /* auto and none: no grammar */
    r.tool_choice = TOOL_CHOICE_AUTO;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_CHATML, &r, &g, msg, sizeof msg));
    ASSERT_TRUE(g == NULL);
    /* a named function: exactly its call, its arguments as the schema says */
    r.tool_choice = TOOL_CHOICE_NAMED;
    r.tool_choice_index = 0;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_CHATML, &r, &g, msg, sizeof msg));
    const char *call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>";
    ASSERT_TRUE(g && grammar_takes(g, call));
    ASSERT_TRUE(!grammar_takes(g, "<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>"));
    ASSERT_TRUE(!grammar_takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
    ASSERT_TRUE(!grammar_takes(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 1, \"days\": 3}}\n</tool_call>"));
    ASSERT_TRUE(!grammar_takes(g, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\", \"days\": 3}}"));
    free(g);
    /* required: any tool; with parallel_tool_calls up to TOOLS_MAX_PARALLEL calls, one per line */
    r.tool_choice = TOOL_CHOICE_REQUIRED;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_LLAMA2, &r, &g, msg, sizeof msg));
    const char *t = "<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";
    char two[512], five[1024];
    snprintf(two, sizeof two, "%s\n%s", call, t);
    snprintf(five, sizeof five, "%s\n%s\n%s\n%s\n%s", t, t, t, t, t);
    ASSERT_TRUE(g && grammar_takes(g, t) && grammar_takes(g, two) && !grammar_takes(g, five));
    ASSERT_TRUE(!grammar_takes(g, "<tool_call>\n{\"name\": \"time\", \"arguments\": {\"x\": 1}}\n</tool_call>"));
    free(g);
    r.parallel_tool_calls = false;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_CHATML, &r, &g, msg, sizeof msg));
    ASSERT_TRUE(g && grammar_takes(g, t) && !grammar_takes(g, two));
    free(g);
    /* llama3: the bare object with "parameters" */
    r.parallel_tool_calls = true;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_LLAMA3, &r, &g, msg, sizeof msg));
    ASSERT_TRUE(g && grammar_takes(g, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"x\", \"days\": -1}}"));
    ASSERT_TRUE(!grammar_takes(g, "{\"name\": \"time\", \"parameters\": {}}\n{\"name\": \"time\", \"parameters\": {}}"));
    free(g);
    /* a property name longer than schema.c's format buffer (found by fuzz_request: the literal
     * was cut, and the grammar did not compile) */
    char name[301], params[1024], want[1024];
    memset(name, 'k', 300);
    name[300] = 0;
    snprintf(params, sizeof params, "{\"type\":\"object\",\"properties\":{\"%s\":{\"type\":\"integer\"}},\"required\":[\"%s\"]}",
             name, name);
    struct api_tool longt = {"time", "", params};
    r.tools = &longt;
    r.n_tools = 1;
    r.tool_choice = TOOL_CHOICE_NAMED;
    r.tool_choice_index = 0;
    ASSERT_OK(tools_grammar(CHAT_FORMAT_CHATML, &r, &g, msg, sizeof msg));
    snprintf(want, sizeof want, "<tool_call>\n{\"name\": \"time\", \"arguments\": {\"%s\": 7}}\n</tool_call>", name);
    ASSERT_TRUE(g && grammar_takes(g, want));
    free(g);
    /* what the grammar generates, the parser reads back */
    struct tools_parsed p;
    ASSERT_OK(tools_parse_output(CHAT_FORMAT_CHATML, two, strlen(two), NAMES, 2, &p));
    ASSERT_EQ(p.n_calls, 2);
    tools_parsed_free(&p);
}

int main(void)
{
    TEST_RUN(test_parse_chatml);
    TEST_RUN(test_parse_llama3);
    TEST_RUN(test_stream);
    TEST_RUN(test_grammar);
    TEST_DONE();
}
