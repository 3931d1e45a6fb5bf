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

enum chat_role { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT, CHAT_ROLE_BAD };

static enum chat_role chat_role_of(const char *role)
{
    if (!strcmp(role, "system")) return CHAT_ROLE_SYSTEM;
    if (!strcmp(role, "user")) return CHAT_ROLE_USER;
    if (!strcmp(role, "assistant")) return CHAT_ROLE_ASSISTANT;
    return CHAT_ROLE_BAD;
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

static void chat_render_llama2(struct chat_buf *b, const struct chat_message *msgs, size_t n)
{
    struct chat_buf sys = {0};
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        switch (chat_role_of(msgs[i].role)) {
        case CHAT_ROLE_SYSTEM:
            if (sys.len) chat_put(&sys, "\n");
            chat_put(&sys, msgs[i].content);
            break;
        case CHAT_ROLE_USER:
            chat_llama2_user(b, first, &sys, msgs[i].content);
            sys.len = 0;
            first = false;
            break;
        case CHAT_ROLE_ASSISTANT:
            chat_put(b, " ");
            chat_put_trimmed(b, msgs[i].content);
            chat_put(b, " </s>");
            first = false;
            break;
        case CHAT_ROLE_BAD:
            break; /* rejected before rendering */
        }
    }
    if (sys.len) chat_llama2_user(b, first, &sys, "");
    if (sys.oom) b->oom = true;
    free(sys.p);
}

int chat_render(enum chat_format f, const struct chat_message *msgs, size_t n, bool add_generation_prompt,
                char **out)
{
    if (!out) return SA_ERR_INVALID_ARG;
    *out = NULL;
    if (!n || !msgs) return SA_ERR_INVALID_ARG;
    if (f != CHAT_FORMAT_LLAMA2 && f != CHAT_FORMAT_CHATML && f != CHAT_FORMAT_LLAMA3) return SA_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) return SA_ERR_INVALID_ARG;
        if (chat_role_of(msgs[i].role) == CHAT_ROLE_BAD) return SA_ERR_INVALID_ARG;
    }

    struct chat_buf b = {0};
    chat_put(&b, ""); /* an empty render is still a string */
    switch (f) {
    case CHAT_FORMAT_LLAMA2:
        chat_render_llama2(&b, msgs, n);
        break;
    case CHAT_FORMAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            chat_put(&b, "<|im_start|>");
            chat_put(&b, msgs[i].role);
            chat_put(&b, "\n");
            chat_put(&b, msgs[i].content);
            chat_put(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) chat_put(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_FORMAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            chat_put(&b, "<|start_header_id|>");
            chat_put(&b, msgs[i].role);
            chat_put(&b, "<|end_header_id|>\n\n");
            chat_put_trimmed(&b, msgs[i].content);
            chat_put(&b, "<|eot_id|>");
        }
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
