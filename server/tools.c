/*
 * tools.c - function calling: rendering inputs, the call grammar, parsing
 * (contracts: tools.h).
 */
#include "tools.h"

#include "engine/errors.h"
#include "schema.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tools_render_json(enum chat_format f, const struct api_tool *t, char **out)
{
    *out = NULL;
    json_t *v = json_loads(t->json, 0, NULL);
    if (!v) return SA_ERR_NOMEM; /* it was dumped by request.c: only memory can fail */
    int indent = chat_tools_indent(f);
    *out = json_dumps(v, indent ? JSON_INDENT(indent) : 0);
    json_decref(v);
    return *out ? 0 : SA_ERR_NOMEM;
}

/* ---- the grammar ---- */

int tools_grammar(enum chat_format f, const struct api_request *r, char **gbnf, char *msg, size_t msg_len)
{
    *gbnf = NULL;
    if (r->tool_choice != TOOL_CHOICE_REQUIRED && r->tool_choice != TOOL_CHOICE_NAMED) return 0;
    bool named = r->tool_choice == TOOL_CHOICE_NAMED;
    int max_calls = !named && r->parallel_tool_calls && f != CHAT_FORMAT_LLAMA3 ? TOOLS_MAX_PARALLEL : 1;
    struct gbnf_buf b = {0};
    int rc = 0;
    if (max_calls > 1) {
        gbnf_printf(&b, "root ::= tc-call ( \"\\n\" tc-call ){0,%d}\n", max_calls - 1);
    } else {
        gbnf_puts(&b, "root ::= tc-call\n");
    }
    gbnf_puts(&b, "tc-call ::= ");
    const char *call_open = chat_tool_call_open(f), *call_close = chat_tool_call_close(f);
    gbnf_literal(&b, call_open, strlen(call_open));
    gbnf_puts(&b, " \"{\\\"name\\\": \" ( ");
    for (size_t i = 0, alt = 0; i < r->n_tools; i++) {
        if (named && i != r->tool_choice_index) continue;
        gbnf_printf(&b, "%stc-f%zu", alt++ ? " | " : "", i);
    }
    gbnf_puts(&b, " ) \"}\" ");
    gbnf_literal(&b, call_close, strlen(call_close));
    gbnf_puts(&b, "\n");
    for (size_t i = 0; i < r->n_tools && !rc; i++) {
        if (named && i != r->tool_choice_index) continue;
        const struct api_tool *t = &r->tools[i];
        char pfx[32], head[160];
        snprintf(pfx, sizeof pfx, "tc-a%zu", i);
        snprintf(head, sizeof head, "\"%s\", \"%s\": ", t->name, chat_tool_arguments_key(f));
        gbnf_printf(&b, "tc-f%zu ::= ", i);
        gbnf_literal(&b, head, strlen(head));
        gbnf_puts(&b, " ");
        gbnf_puts(&b, pfx);
        gbnf_puts(&b, "\n");
        if (!t->parameters) {
            gbnf_puts(&b, pfx);
            gbnf_puts(&b, " ::= \"{}\"\n");
            continue;
        }
        json_t *schema = json_loads(t->parameters, 0, NULL);
        char *rules = NULL;
        rc = schema ? schema_to_gbnf_rules(schema, pfx, &rules, msg, msg_len) : SA_ERR_NOMEM;
        json_decref(schema);
        if (!rc) gbnf_puts(&b, rules);
        free(rules);
    }
    gbnf_puts(&b, schema_json_lib_gbnf());
    if (!rc && b.oom) rc = SA_ERR_NOMEM;
    if (rc) {
        free(b.p);
        return rc;
    }
    *gbnf = b.p;
    return 0;
}

/* ---- parsing ---- */

static bool tl_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Searches [p, end) for the bytes of needle. */
static const char *tl_find(const char *p, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (; p + n <= end; p++)
        if (memcmp(p, needle, n) == 0) return p;
    return NULL;
}

/* One call object -> out (name, compact arguments); false when it is not one. */
static bool tl_call(json_t *o, char *const *names, size_t n_names, struct tools_call *out, bool *oom)
{
    json_t *name = json_object_get(o, "name");
    json_t *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    if (!json_is_object(o) || !json_is_string(name) || !args) return false;
    size_t k = 0;
    while (k < n_names && strcmp(names[k], json_string_value(name)) != 0) k++;
    if (k == n_names) return false;
    json_t *parsed = NULL;
    if (json_is_string(args)) { /* some models write the arguments as a JSON string */
        parsed = json_loads(json_string_value(args), JSON_REJECT_DUPLICATES, NULL);
        args = parsed;
    }
    bool ok = json_is_object(args);
    if (ok) {
        out->name = strdup(json_string_value(name));
        out->arguments = json_dumps(args, JSON_COMPACT);
        if (!out->name || !out->arguments) *oom = true;
    }
    json_decref(parsed);
    return ok;
}

static int tl_add(struct tools_parsed *p, size_t *cap, json_t *o, char *const *names, size_t n_names, bool *ok)
{
    if (p->n_calls == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        struct tools_call *c = realloc(p->calls, nc * sizeof *c);
        if (!c) return SA_ERR_NOMEM;
        p->calls = c;
        *cap = nc;
    }
    bool oom = false;
    struct tools_call *c = &p->calls[p->n_calls];
    memset(c, 0, sizeof *c);
    if (!tl_call(o, names, n_names, c, &oom)) {
        *ok = false;
        return 0;
    }
    p->n_calls++;
    return oom ? SA_ERR_NOMEM : 0;
}

void tools_parsed_free(struct tools_parsed *p)
{
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    memset(p, 0, sizeof *p);
}

int tools_parse_output(enum chat_format f, const char *text, size_t len, char *const *names, size_t n_names,
                       struct tools_parsed *out)
{
    memset(out, 0, sizeof *out);
    out->content_len = len;
    const char *end = text + len;
    size_t cap = 0;
    bool ok = true;
    int rc = 0;
    if (f == CHAT_FORMAT_LLAMA3) {
        const char *p = text;
        while (p < end && tl_space(*p)) p++;
        if ((size_t)(end - p) >= 14 && memcmp(p, "<|python_tag|>", 14) == 0) p += 14;
        while (p < end && tl_space(*p)) p++;
        if (p == end || *p != '{') return 0;
        while (p < end && ok && !rc) {
            json_error_t je;
            json_t *o = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
            if (!o) {
                ok = false;
                break;
            }
            rc = tl_add(out, &cap, o, names, n_names, &ok);
            json_decref(o);
            p += je.position;
            while (p < end && (tl_space(*p) || *p == ';')) p++;
        }
        if (ok && !rc) out->content_len = 0;
    } else {
        static const char OPEN[] = "<tool_call>", CLOSE[] = "</tool_call>";
        const char *first = tl_find(text, end, OPEN);
        if (!first) return 0;
        for (const char *p = first; p && ok && !rc;) {
            const char *body = p + strlen(OPEN), *stop = tl_find(body, end, CLOSE);
            const char *body_end = stop ? stop : end;
            json_t *o = json_loadb(body, (size_t)(body_end - body), JSON_REJECT_DUPLICATES, NULL);
            if (o) rc = tl_add(out, &cap, o, names, n_names, &ok);
            else if (stop || !out->n_calls) ok = false;
            /* else: the text ended inside a last call after complete ones (max_tokens): dropped */
            json_decref(o);
            p = stop ? tl_find(stop + strlen(CLOSE), end, OPEN) : NULL;
        }
        if (ok && !rc) {
            size_t n = (size_t)(first - text);
            while (n && tl_space(text[n - 1])) n--;
            out->content_len = n;
        }
    }
    if (rc || !ok) {
        tools_parsed_free(out);
        out->content_len = len;
    }
    return rc;
}

size_t tools_stream_content(enum chat_format f, const char *text, size_t len, size_t sent, bool *call_started)
{
    *call_started = false;
    if (sent > len) sent = len;
    if (f == CHAT_FORMAT_LLAMA3) {
        if (sent) return len; /* the answer began with text, not a call */
        size_t i = 0;
        while (i < len && tl_space(text[i])) i++;
        if (i == len) return 0; /* nothing but whitespace yet */
        static const char TAG[] = "<|python_tag|>";
        size_t rest = len - i, tl = sizeof TAG - 1;
        if (text[i] == '{' || (rest >= tl && memcmp(text + i, TAG, tl) == 0)) {
            *call_started = true;
            return 0;
        }
        if (rest < tl && memcmp(text + i, TAG, rest) == 0) return 0; /* may become the tag */
        return len;
    }
    static const char OPEN[] = "<tool_call>";
    const size_t on = sizeof OPEN - 1;
    const char *at = tl_find(text + sent, text + len, OPEN); /* none starts before sent: it was held */
    if (at) {
        *call_started = true;
        return (size_t)(at - text);
    }
    /* hold a tail that could be the start of "<tool_call>" */
    for (size_t k = on - 1; k > 0; k--)
        if (k <= len - sent && memcmp(text + len - k, OPEN, k) == 0) return len - k;
    return len;
}
