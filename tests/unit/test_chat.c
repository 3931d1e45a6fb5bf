/* test_chat.c - chat formats rendered to exact strings, format detection, errors. */
#include "../test.h"

#include "engine/chat.h"
#include "engine/errors.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Renders and compares with want; frees the result. */
static void expect_render(enum chat_format f, const struct chat_message *m, size_t n, bool gen, const char *want)
{
    char *out = (char *)0x1;
    int rc = chat_render(f, m, n, gen, &out);
    ASSERT_EQ(rc, 0);
    if (rc) return;
    ASSERT_STR_EQ(out, want);
    free(out);
}

static const struct chat_message sys_user[] = {
    {"system", "You are terse."},
    {"user", "Hi!"},
};

static const struct chat_message multi[] = {
    {"system", "Be kind."},
    {"user", "What is 2+2?"},
    {"assistant", "4"},
    {"user", "And 3+3?"},
};

static void test_llama2(void)
{
    expect_render(CHAT_FORMAT_LLAMA2, sys_user, N(sys_user), false,
                  "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST]");
    /* the model continues after [/INST]: the generation prompt adds nothing */
    expect_render(CHAT_FORMAT_LLAMA2, sys_user, N(sys_user), true,
                  "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST]");
    expect_render(CHAT_FORMAT_LLAMA2, multi, N(multi), true,
                  "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST]");
    /* no system message; a conversation ending with the assistant */
    const struct chat_message m[] = {{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}};
    expect_render(CHAT_FORMAT_LLAMA2, m, N(m), false, "[INST] a [/INST] b </s><s>[INST] c [/INST] d </s>");
    expect_render(CHAT_FORMAT_LLAMA2, m, 1, false, "[INST] a [/INST]");
    /* whitespace around user and assistant text is stripped, as content.strip() does */
    const struct chat_message ws[] = {{"user", "  hello \n"}, {"assistant", "\tthere  "}, {"user", " x "}};
    expect_render(CHAT_FORMAT_LLAMA2, ws, N(ws), false, "[INST] hello [/INST] there </s><s>[INST] x [/INST]");
    /* two system messages are joined; a system message alone becomes an empty user turn */
    const struct chat_message ss[] = {{"system", "A"}, {"system", "B"}, {"user", "u"}};
    expect_render(CHAT_FORMAT_LLAMA2, ss, N(ss), false, "[INST] <<SYS>>\nA\nB\n<</SYS>>\n\nu [/INST]");
    const struct chat_message so[] = {{"system", "S"}};
    expect_render(CHAT_FORMAT_LLAMA2, so, N(so), false, "[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
    /* a system message later in the conversation goes to the next user turn */
    const struct chat_message late[] = {{"user", "u1"}, {"assistant", "a1"}, {"system", "S"}, {"user", "u2"}};
    expect_render(CHAT_FORMAT_LLAMA2, late, N(late), false,
                  "[INST] u1 [/INST] a1 </s><s>[INST] <<SYS>>\nS\n<</SYS>>\n\nu2 [/INST]");
    /* consecutive user turns each get their own [INST] block */
    const struct chat_message uu[] = {{"user", "x"}, {"user", "y"}};
    expect_render(CHAT_FORMAT_LLAMA2, uu, N(uu), false, "[INST] x [/INST]<s>[INST] y [/INST]");
}

static void test_chatml(void)
{
    expect_render(CHAT_FORMAT_CHATML, sys_user, N(sys_user), false,
                  "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n");
    expect_render(CHAT_FORMAT_CHATML, sys_user, N(sys_user), true,
                  "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render(CHAT_FORMAT_CHATML, multi, N(multi), true,
                  "<|im_start|>system\nBe kind.<|im_end|>\n"
                  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n4<|im_end|>\n"
                  "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    /* content is verbatim */
    const struct chat_message ws[] = {{"user", " a \n"}};
    expect_render(CHAT_FORMAT_CHATML, ws, 1, false, "<|im_start|>user\n a \n<|im_end|>\n");
    const struct chat_message empty[] = {{"user", ""}};
    expect_render(CHAT_FORMAT_CHATML, empty, 1, false, "<|im_start|>user\n<|im_end|>\n");
}

static void test_llama3(void)
{
    expect_render(CHAT_FORMAT_LLAMA3, sys_user, N(sys_user), false,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>");
    expect_render(CHAT_FORMAT_LLAMA3, sys_user, N(sys_user), true,
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(CHAT_FORMAT_LLAMA3, multi, N(multi), false,
                  "<|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>");
    /* content trimmed as the reference template's "| trim" does */
    const struct chat_message ws[] = {{"user", "\n hi \t"}};
    expect_render(CHAT_FORMAT_LLAMA3, ws, 1, false, "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

/* ---- tools (the formats of chat.h, written out by hand) ---- */

static const char TOOL_W[] = "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "
                             "{\"type\": \"object\"}}}";
static const char TOOL_W4[] = "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\"\n    }\n}";
static const char TOOL_T[] = "{\"type\": \"function\", \"function\": {\"name\": \"time\"}}";
#define HERMES_TOOLS(list)                                                                                            \
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"                                \
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" list "\n</tools>\n\n"      \
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> " \
    "XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
#define LLAMA31_TOOLS                                                                                               \
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that " \
    "best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": dictionary "  \
    "of argument name and its value}.Do not use variables.\n\n"

/* system, user, assistant with a call (and content), two tool results, user */
static const struct chat_message round_trip[] = {
    {"system", "Be brief."}, {"user", "Weather in Paris?"}, {"assistant", "Checking."},
    {"tool", "{\"temp\": 21}"}, {"tool", "12:00"}, {"user", "Thanks"},
};
static const struct chat_tool_call rt_calls[] = {{"get_weather", "{\"city\": \"Paris\"}"}, {"time", "{}"}};
static const struct chat_tool_calls rt_per_msg[] = {{NULL, 0}, {NULL, 0}, {rt_calls, 2}, {NULL, 0}, {NULL, 0}, {NULL, 0}};

static void expect_tools(enum chat_format f, const struct chat_message *m, const struct chat_tool_calls *calls, size_t n,
                         const char *const *tools, size_t n_tools, const char *want)
{
    char *out = (char *)0x1;
    int rc = chat_render_tools(f, m, calls, n, tools, n_tools, true, &out);
    ASSERT_EQ(rc, 0);
    if (rc) return;
    ASSERT_STR_EQ(out, want);
    free(out);
}

static void test_tools_chatml(void)
{
    const char *tools[] = {TOOL_W, TOOL_T};
    expect_tools(CHAT_FORMAT_CHATML, round_trip, rt_per_msg, N(round_trip), tools, 2,
                 "<|im_start|>system\nBe brief.\n\n"
                 HERMES_TOOLS("\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "
                              "{\"type\": \"object\"}}}\n{\"type\": \"function\", \"function\": {\"name\": \"time\"}}")
                 "<|im_end|>\n"
                 "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
                 "<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                 "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n"
                 "</tool_call><|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\n12:00\n"
                 "</tool_response><|im_end|>\n"
                 "<|im_start|>user\nThanks<|im_end|>\n"
                 "<|im_start|>assistant\n");
    /* no system message: the tools block is the system message; no tools: only the calls and results */
    const struct chat_message u[] = {{"user", "hi"}};
    expect_tools(CHAT_FORMAT_CHATML, u, NULL, 1, tools + 1, 1,
                 "<|im_start|>system\n" HERMES_TOOLS("\n{\"type\": \"function\", \"function\": {\"name\": \"time\"}}")
                 "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const struct chat_message call_only[] = {{"user", "t?"}, {"assistant", ""}, {"tool", "noon"}};
    const struct chat_tool_calls co[] = {{NULL, 0}, {rt_calls + 1, 1}, {NULL, 0}};
    expect_tools(CHAT_FORMAT_CHATML, call_only, co, 3, NULL, 0,
                 "<|im_start|>user\nt?<|im_end|>\n"
                 "<|im_start|>assistant\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call><|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\nnoon\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
    ASSERT_STR_EQ(chat_tool_call_open(CHAT_FORMAT_CHATML), "<tool_call>\n");
    ASSERT_STR_EQ(chat_tool_call_close(CHAT_FORMAT_CHATML), "\n</tool_call>");
    ASSERT_STR_EQ(chat_tool_arguments_key(CHAT_FORMAT_CHATML), "arguments");
    ASSERT_EQ(chat_tools_indent(CHAT_FORMAT_CHATML), 0);
}

static void test_tools_llama3(void)
{
    const char *tools[] = {TOOL_W4};
    expect_tools(CHAT_FORMAT_LLAMA3, round_trip, rt_per_msg, N(round_trip), tools, 1,
                 "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\n" LLAMA31_TOOLS
                 "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\"\n    }\n}\n\n"
                 "Weather in Paris?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": "
                 "{\"city\": \"Paris\"}}\n{\"name\": \"time\", \"parameters\": {}}<|eot_id|>"
                 "<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>"
                 "<|start_header_id|>ipython<|end_header_id|>\n\n12:00<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    ASSERT_STR_EQ(chat_tool_call_open(CHAT_FORMAT_LLAMA3), "");
    ASSERT_STR_EQ(chat_tool_arguments_key(CHAT_FORMAT_LLAMA3), "parameters");
    ASSERT_EQ(chat_tools_indent(CHAT_FORMAT_LLAMA3), 4);
}

static void test_tools_llama2(void)
{
    const char *tools[] = {TOOL_T};
    expect_tools(CHAT_FORMAT_LLAMA2, round_trip, rt_per_msg, N(round_trip), tools, 1,
                 "[INST] <<SYS>>\nBe brief.\n\n"
                 HERMES_TOOLS("\n{\"type\": \"function\", \"function\": {\"name\": \"time\"}}")
                 "\n<</SYS>>\n\nWeather in Paris? [/INST] Checking.\n<tool_call>\n{\"name\": \"get_weather\", "
                 "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": "
                 "{}}\n</tool_call> </s><s>[INST] <tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\n"
                 "12:00\n</tool_response> [/INST]<s>[INST] Thanks [/INST]");
    /* tools and no system message; the tools alone (no user turn yet) */
    const struct chat_message u[] = {{"user", "hi"}};
    expect_tools(CHAT_FORMAT_LLAMA2, u, NULL, 1, tools, 1,
                 "[INST] <<SYS>>\n" HERMES_TOOLS("\n{\"type\": \"function\", \"function\": {\"name\": \"time\"}}")
                 "\n<</SYS>>\n\nhi [/INST]");
    ASSERT_STR_EQ(chat_tool_call_open(CHAT_FORMAT_LLAMA2), "<tool_call>\n");
}

static void test_tools_errors(void)
{
    char *out = (char *)0x1;
    const struct chat_message u[] = {{"user", "hi"}};
    const struct chat_tool_calls on_user[] = {{rt_calls, 1}};
    ASSERT_EQ(chat_render_tools(CHAT_FORMAT_CHATML, u, on_user, 1, NULL, 0, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_TRUE(out == NULL);
    const char *null_tool[] = {NULL};
    ASSERT_EQ(chat_render_tools(CHAT_FORMAT_LLAMA3, u, NULL, 1, null_tool, 1, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render_tools(CHAT_FORMAT_LLAMA2, u, NULL, 1, NULL, 1, true, &out), SA_ERR_INVALID_ARG);
    const struct chat_message a[] = {{"assistant", ""}};
    const struct chat_tool_call bad_call[] = {{"f", NULL}};
    const struct chat_tool_calls bc[] = {{bad_call, 1}};
    ASSERT_EQ(chat_render_tools(CHAT_FORMAT_CHATML, a, bc, 1, NULL, 0, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_TRUE(out == NULL);
}

static void test_pick(void)
{
    enum chat_format f = 0;
    /* explicit names */
    ASSERT_OK(chat_format_pick("llama2", NULL, &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA2);
    ASSERT_OK(chat_format_pick("chatml", NULL, &f));
    ASSERT_EQ(f, CHAT_FORMAT_CHATML);
    ASSERT_OK(chat_format_pick("llama3", NULL, &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA3);
    /* the name wins over the template */
    ASSERT_OK(chat_format_pick("llama2", "{{ '<|im_start|>' + message['role'] }}", &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA2);

    /* detection from template snippets */
    const char *chatml_tmpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                              "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    const char *llama3_tmpl = "{% set content = '<|start_header_id|>' + message['role'] + "
                              "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}";
    const char *llama2_tmpl = "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                              "content.strip() + ' [/INST]' }}{% endif %}";
    ASSERT_OK(chat_format_pick(NULL, chatml_tmpl, &f));
    ASSERT_EQ(f, CHAT_FORMAT_CHATML);
    ASSERT_OK(chat_format_pick("", llama3_tmpl, &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA3);
    ASSERT_OK(chat_format_pick(NULL, llama2_tmpl, &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA2);
    /* nothing known: llama2 */
    f = 0;
    ASSERT_OK(chat_format_pick(NULL, NULL, &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA2);
    f = 0;
    ASSERT_OK(chat_format_pick("", "{{ messages }}", &f));
    ASSERT_EQ(f, CHAT_FORMAT_LLAMA2);

    /* names */
    ASSERT_STR_EQ(chat_format_name(CHAT_FORMAT_LLAMA2), "llama2");
    ASSERT_STR_EQ(chat_format_name(CHAT_FORMAT_CHATML), "chatml");
    ASSERT_STR_EQ(chat_format_name(CHAT_FORMAT_LLAMA3), "llama3");
    ASSERT_STR_EQ(chat_format_name((enum chat_format)0), "unknown");
    ASSERT_STR_EQ(chat_format_name((enum chat_format)99), "unknown");
}

static void test_errors(void)
{
    enum chat_format f = CHAT_FORMAT_CHATML;
    ASSERT_EQ(chat_format_pick("llama4", NULL, &f), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_format_pick("ChatML", NULL, &f), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_format_pick("llama2", NULL, NULL), SA_ERR_INVALID_ARG);
    ASSERT_EQ(f, CHAT_FORMAT_CHATML); /* untouched on error */

    char *out = (char *)0x1;
    const struct chat_message bad_role[] = {{"user", "a"}, {"function", "b"}};
    for (int fmt = CHAT_FORMAT_LLAMA2; fmt <= CHAT_FORMAT_LLAMA3; fmt++) {
        ASSERT_EQ(chat_render((enum chat_format)fmt, bad_role, 2, true, &out), SA_ERR_INVALID_ARG);
        ASSERT_TRUE(out == NULL);
    }
    const struct chat_message null_content[] = {{"user", NULL}};
    ASSERT_EQ(chat_render(CHAT_FORMAT_CHATML, null_content, 1, true, &out), SA_ERR_INVALID_ARG);
    const struct chat_message null_role[] = {{NULL, "x"}};
    ASSERT_EQ(chat_render(CHAT_FORMAT_LLAMA3, null_role, 1, true, &out), SA_ERR_INVALID_ARG);
    const struct chat_message upper[] = {{"User", "x"}};
    ASSERT_EQ(chat_render(CHAT_FORMAT_LLAMA2, upper, 1, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render(CHAT_FORMAT_CHATML, sys_user, 0, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render(CHAT_FORMAT_CHATML, NULL, 1, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render((enum chat_format)0, sys_user, 2, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render((enum chat_format)7, sys_user, 2, true, &out), SA_ERR_INVALID_ARG);
    ASSERT_EQ(chat_render(CHAT_FORMAT_CHATML, sys_user, 2, true, NULL), SA_ERR_INVALID_ARG);
    ASSERT_TRUE(out == NULL);
}

static void test_long_content(void)
{
    /* grows past the initial buffer many times */
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    ASSERT_TRUE(big != NULL);
    if (!big) return;
    memset(big, 'x', n);
    big[n] = 0;
    struct chat_message m[] = {{"user", big}, {"assistant", big}, {"user", big}};
    for (int fmt = CHAT_FORMAT_LLAMA2; fmt <= CHAT_FORMAT_LLAMA3; fmt++) {
        char *out = NULL;
        ASSERT_OK(chat_render((enum chat_format)fmt, m, 3, true, &out));
        ASSERT_TRUE(out && strlen(out) > 3 * n && strlen(out) < 3 * n + 300);
        free(out);
    }
    free(big);
}

int main(void)
{
    TEST_RUN(test_llama2);
    TEST_RUN(test_chatml);
    TEST_RUN(test_llama3);
    TEST_RUN(test_tools_chatml);
    TEST_RUN(test_tools_llama3);
    TEST_RUN(test_tools_llama2);
    TEST_RUN(test_tools_errors);
    TEST_RUN(test_pick);
    TEST_RUN(test_errors);
    TEST_RUN(test_long_content);
    TEST_DONE();
}
