/*
 * chat.c - chat formats (see chat.h for their definitions).
 */
#include "chat.h"

#include "errors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A growable string; a failed allocation is remembered and reported once at the end. */
struct chat_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void chat_put_n(struct chat_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void chat_put(struct chat_buf *b, const char *s)
{
    chat_put_n(b, s, strlen(s));
}

static bool chat_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Strip whitespace at both ends of b->p[start..len). */
static void chat_trim_from(struct chat_buf *b, size_t start)
{
    if (b->oom || !b->p) return;
    size_t lo = start, hi = b->len;
    while (lo < hi && chat_is_space(b->p[lo])) lo++;
    while (hi > lo && chat_is_space(b->p[hi - 1])) hi--;
    memmove(b->p + start, b->p + lo, hi - lo);
    b->len = start + (hi - lo);
    b->p[b->len] = 0;
}

/* Append s stripped of whitespace at both ends. */
static void chat_put_trimmed(struct chat_buf *b, const char *s)
{
    size_t n = strlen(s);
    while (n && chat_is_space(*s)) s++, n--;
    while (n && chat_is_space(s[n - 1])) n--;
    chat_put_n(b, s, n);
}

int chat_format_pick(const char *name, const char *gguf_template, enum chat_format *out)
{
    if (!out) return SA_ERR_INVALID_ARG;
    if (name && *name) {
        for (int f = CHAT_FORMAT_LLAMA2; f <= CHAT_FORMAT_LLAMA3; f++) {
            if (!strcmp(name, chat_format_name((enum chat_format)f))) {
                *out = (enum chat_format)f;
                return 0;
            }
        }
        return SA_ERR_INVALID_ARG;
    }
    if (gguf_template && strstr(gguf_template, "<|im_start|>"))
        *out = CHAT_FORMAT_CHATML;
    else if (gguf_template && strstr(gguf_template, "<|start_header_id|>"))
        *out = CHAT_FORMAT_LLAMA3;
    else
        *out = CHAT_FORMAT_LLAMA2; /* "[INST]", or nothing recognisable */
    return 0;
}

const char *chat_format_name(enum chat_format f)
{
    switch (f) {
    case CHAT_FORMAT_LLAMA2: return "llama2";
    case CHAT_FORMAT_CHATML: return "chatml";
    case CHAT_FORMAT_LLAMA3: return "llama3";
    }
    return "unknown";
}

enum chat_role { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT, CHAT_ROLE_TOOL, CHAT_ROLE_BAD };

static enum chat_role chat_role_of(const char *role)
{
    if (!strcmp(role, "system")) return CHAT_ROLE_SYSTEM;
    if (!strcmp(role, "user")) return CHAT_ROLE_USER;
    if (!strcmp(role, "assistant")) return CHAT_ROLE_ASSISTANT;
    if (!strcmp(role, "tool")) return CHAT_ROLE_TOOL;
    return CHAT_ROLE_BAD;
}

/* The tools block of the chatml and llama2 formats (Hermes / Qwen2.5 wording), each tool's JSON on its own line. */
static void chat_put_tools_hermes(struct chat_buf *b, const char *const *tools, size_t n_tools)
{
    chat_put(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (size_t i = 0; i < n_tools; i++) {
        chat_put(b, "\n");
        chat_put(b, tools[i]);
    }
    chat_put(b, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
}

/* The number of tool calls of message i (calls may be NULL). */
#define NCALLS(i) (calls ? calls[i].n : 0)

/* One call as the model writes it: {"name": "N", "<key>": ARGS}. */
static void chat_put_call_json(struct chat_buf *b, const struct chat_tool_call *c, const char *key)
{
    chat_put(b, "{\"name\": \"");
    chat_put(b, c->name);
    chat_put(b, "\", \"");
    chat_put(b, key);
    chat_put(b, "\": ");
    chat_put(b, c->arguments);
    chat_put(b, "}");
}

/* One llama2 user turn, with the pending system text (if any) folded in. */
static void chat_llama2_user(struct chat_buf *b, bool first, const struct chat_buf *sys, const char *user)
{
    if (!first) chat_put(b, "<s>");
    chat_put(b, "[INST] ");
    size_t start = b->len;
    if (sys->len) {
        chat_put(b, "<<SYS>>\n");
        chat_put_n(b, sys->p, sys->len);
        chat_put(b, "\n<</SYS>>\n\n");
    }
    chat_put(b, user);
    chat_trim_from(b, start);
    chat_put(b, " [/INST]");
}

static void chat_render_llama2(struct chat_buf *b, const struct chat_message *msgs,
                               const struct chat_tool_calls *calls, size_t n, const char *const *tools, size_t n_tools)
{
    struct chat_buf sys = {0}, turn = {0};
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        switch (chat_role_of(msgs[i].role)) {
        case CHAT_ROLE_SYSTEM:
            if (sys.len) chat_put(&sys, "\n");
            chat_put(&sys, msgs[i].content);
            break;
        case CHAT_ROLE_USER:
        case CHAT_ROLE_TOOL:
            if (n_tools && first) { /* the tools join the system text of the first user turn */
                if (sys.len) chat_put(&sys, "\n\n");
                chat_put_tools_hermes(&sys, tools, n_tools);
            }
            turn.len = 0;
            chat_put(&turn, "");
            if (chat_role_of(msgs[i].role) == CHAT_ROLE_USER) {
                chat_put(&turn, msgs[i].content);
            } else { /* consecutive tool results: one user turn */
                for (; i < n && chat_role_of(msgs[i].role) == CHAT_ROLE_TOOL; i++) {
                    if (turn.len) chat_put(&turn, "\n");
                    chat_put(&turn, "<tool_response>\n");
                    chat_put(&turn, msgs[i].content);
                    chat_put(&turn, "\n</tool_response>");
                }
                i--;
            }
            chat_llama2_user(b, first, &sys, turn.p ? turn.p : "");
            sys.len = 0;
            first = false;
            break;
        case CHAT_ROLE_ASSISTANT:
            chat_put(b, " ");
            turn.len = 0;
            chat_put(&turn, msgs[i].content);
            for (size_t k = 0; k < NCALLS(i); k++) {
                chat_put(&turn, turn.len ? "\n<tool_call>\n" : "<tool_call>\n");
                chat_put_call_json(&turn, &calls[i].calls[k], "arguments");
                chat_put(&turn, "\n</tool_call>");
            }
            chat_put_trimmed(b, turn.p ? turn.p : "");
            chat_put(b, " </s>");
            first = false;
            break;
        case CHAT_ROLE_BAD:
            break; /* rejected before rendering */
        }
    }
    if (n_tools && first) {
        if (sys.len) chat_put(&sys, "\n\n");
        chat_put_tools_hermes(&sys, tools, n_tools);
    }
    if (sys.len) chat_llama2_user(b, first, &sys, "");
    if (sys.oom || turn.oom) b->oom = true;
    free(sys.p);
    free(turn.p);
}

static void chat_render_chatml(struct chat_buf *b, const struct chat_message *msgs,
                               const struct chat_tool_calls *calls, size_t n, const char *const *tools, size_t n_tools)
{
    size_t i = 0;
    if (n_tools) { /* one system message first: the first system message's text, then the tools */
        chat_put(b, "<|im_start|>system\n");
        if (chat_role_of(msgs[0].role) == CHAT_ROLE_SYSTEM) {
            chat_put(b, msgs[0].content);
            chat_put(b, "\n\n");
            i = 1;
        }
        chat_put_tools_hermes(b, tools, n_tools);
        chat_put(b, "<|im_end|>\n");
    }
    for (; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        enum chat_role r = chat_role_of(m->role);
        if (r == CHAT_ROLE_TOOL) { /* consecutive tool results: one user message */
            chat_put(b, "<|im_start|>user");
            for (; i < n && chat_role_of(msgs[i].role) == CHAT_ROLE_TOOL; i++) {
                chat_put(b, "\n<tool_response>\n");
                chat_put(b, msgs[i].content);
                chat_put(b, "\n</tool_response>");
            }
            i--;
            chat_put(b, "<|im_end|>\n");
            continue;
        }
        chat_put(b, "<|im_start|>");
        chat_put(b, m->role);
        if (r == CHAT_ROLE_ASSISTANT && NCALLS(i)) {
            if (*m->content) {
                chat_put(b, "\n");
                chat_put(b, m->content);
            }
            for (size_t k = 0; k < NCALLS(i); k++) {
                chat_put(b, "\n<tool_call>\n");
                chat_put_call_json(b, &calls[i].calls[k], "arguments");
                chat_put(b, "\n</tool_call>");
            }
        } else {
            chat_put(b, "\n");
            chat_put(b, m->content);
        }
        chat_put(b, "<|im_end|>\n");
    }
}

static void chat_render_llama3(struct chat_buf *b, const struct chat_message *msgs,
                               const struct chat_tool_calls *calls, size_t n, const char *const *tools, size_t n_tools)
{
    bool tools_pending = n_tools > 0;
    for (size_t i = 0; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        enum chat_role r = chat_role_of(m->role);
        chat_put(b, "<|start_header_id|>");
        chat_put(b, r == CHAT_ROLE_TOOL ? "ipython" : m->role);
        chat_put(b, "<|end_header_id|>\n\n");
        if (r == CHAT_ROLE_USER && tools_pending) { /* Llama 3.1: the tools go in the first user message */
            chat_put(b, "Given the following functions, please respond with a JSON for a function call with its "
                        "proper arguments that best answers the given prompt.\n\n"
                        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
                        "name and its value}.Do not use variables.\n\n");
            for (size_t k = 0; k < n_tools; k++) {
                chat_put(b, tools[k]);
                chat_put(b, "\n\n");
            }
            tools_pending = false;
            chat_put_trimmed(b, m->content);
        } else if (r == CHAT_ROLE_ASSISTANT && NCALLS(i)) { /* the calls only, one JSON object per line */
            for (size_t k = 0; k < NCALLS(i); k++) {
                if (k) chat_put(b, "\n");
                chat_put_call_json(b, &calls[i].calls[k], "parameters");
            }
        } else if (r == CHAT_ROLE_TOOL) {
            chat_put(b, m->content);
        } else {
            chat_put_trimmed(b, m->content);
        }
        chat_put(b, "<|eot_id|>");
    }
}

int chat_render_tools(enum chat_format f, const struct chat_message *msgs, const struct chat_tool_calls *calls,
                      size_t n, const char *const *tools, size_t n_tools, bool add_generation_prompt, char **out)
{
    if (!out) return SA_ERR_INVALID_ARG;
    *out = NULL;
    if (!n || !msgs) return SA_ERR_INVALID_ARG;
    if (f != CHAT_FORMAT_LLAMA2 && f != CHAT_FORMAT_CHATML && f != CHAT_FORMAT_LLAMA3) return SA_ERR_INVALID_ARG;
    if (n_tools && !tools) return SA_ERR_INVALID_ARG;
    for (size_t k = 0; k < n_tools; k++)
        if (!tools[k]) return SA_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) return SA_ERR_INVALID_ARG;
        enum chat_role r = chat_role_of(msgs[i].role);
        if (r == CHAT_ROLE_BAD) return SA_ERR_INVALID_ARG;
        if (NCALLS(i) && (r != CHAT_ROLE_ASSISTANT || !calls[i].calls)) return SA_ERR_INVALID_ARG;
        for (size_t k = 0; k < NCALLS(i); k++)
            if (!calls[i].calls[k].name || !calls[i].calls[k].arguments) return SA_ERR_INVALID_ARG;
    }

    struct chat_buf b = {0};
    chat_put(&b, ""); /* an empty render is still a string */
    switch (f) {
    case CHAT_FORMAT_LLAMA2:
        chat_render_llama2(&b, msgs, calls, n, tools, n_tools);
        break;
    case CHAT_FORMAT_CHATML:
        chat_render_chatml(&b, msgs, calls, n, tools, n_tools);
        if (add_generation_prompt) chat_put(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_FORMAT_LLAMA3:
        chat_render_llama3(&b, msgs, calls, n, tools, n_tools);
        if (add_generation_prompt) chat_put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    }
    if (b.oom) {
        free(b.p);
        return SA_ERR_NOMEM;
    }
    *out = b.p;
    return 0;
}

int chat_render(enum chat_format f, const struct chat_message *msgs, size_t n, bool add_generation_prompt,
                char **out)
{
    return chat_render_tools(f, msgs, NULL, n, NULL, 0, add_generation_prompt, out);
}

int chat_tools_indent(enum chat_format f)
{
    return f == CHAT_FORMAT_LLAMA3 ? 4 : 0;
}

const char *chat_tool_call_open(enum chat_format f)
{
    return f == CHAT_FORMAT_LLAMA3 ? "" : "<tool_call>\n";
}

const char *chat_tool_call_close(enum chat_format f)
{
    return f == CHAT_FORMAT_LLAMA3 ? "" : "\n</tool_call>";
}

const char *chat_tool_arguments_key(enum chat_format f)
{
    return f == CHAT_FORMAT_LLAMA3 ? "parameters" : "arguments";
}
