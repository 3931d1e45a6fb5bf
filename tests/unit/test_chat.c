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
    const struct chat_message bad_role[] = {{"user", "a"}, {"tool", "b"}};
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
    TEST_RUN(test_pick);
    TEST_RUN(test_errors);
    TEST_RUN(test_long_content);
    TEST_DONE();
}
