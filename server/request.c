/*
 * request.c - JSON request bodies and query toggles -> struct api_request.
 * Contract and the table of accepted parameters: request.h.
 */
#include "request.h"
#include "schema.h"

#include "engine/defaults.h"
#include "engine/errors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_TYPE "invalid_request_error"

void request_error(struct api_error *err, const char *param, const char *fmt, ...)
{
    if (!err) return;
    err->status = 400;
    err->type = REQ_TYPE;
    err->code = "invalid_value";
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* Same, with the OpenAI-style code for a value of the wrong JSON type. */
static void req_type_error(struct api_error *err, const char *param, const char *what)
{
    request_error(err, param, "'%s' must be %s", param, what);
    err->code = "invalid_type";
}

void request_init(struct api_request *r)
{
    memset(r, 0, sizeof *r);
    r->kind = REQUEST_COMPLETION;
    r->max_tokens = REQUEST_DEFAULT_MAX_TOKENS;
    r->temperature = SA_DEFAULT_TEMPERATURE; /* request_parse: the configured one */
    r->top_p = 1.0f;
    r->min_p = 0.0f;
    r->presence_penalty = 0.0f;
    r->frequency_penalty = 0.0f;
    r->repeat_penalty = 1.0f;
    r->top_k = 0;
    r->logprobs = -1;
    r->n = 1;
    r->share_query = -1;
    r->rebalance_query = -1;
    r->parallel_tool_calls = true;
}

void request_free(struct api_request *r)
{
    if (!r) return;
    if (r->prompts) {
        for (size_t i = 0; i < r->n_prompts; i++) free(r->prompts[i]);
        free(r->prompts);
    }
    if (r->prompt_ids) {
        for (size_t i = 0; i < r->n_prompts; i++) free(r->prompt_ids[i]);
        free(r->prompt_ids);
    }
    free(r->prompt_id_lens);
    if (r->messages) {
        for (size_t i = 0; i < r->n_messages; i++) {
            free(r->messages[i].role);
            free(r->messages[i].content);
            free(r->messages[i].tool_call_id);
            for (size_t k = 0; k < r->messages[i].n_tool_calls; k++) {
                free(r->messages[i].tool_calls[k].id);
                free(r->messages[i].tool_calls[k].name);
                free(r->messages[i].tool_calls[k].arguments);
            }
            free(r->messages[i].tool_calls);
        }
        free(r->messages);
    }
    for (size_t i = 0; i < r->n_tools; i++) {
        free(r->tools[i].name);
        free(r->tools[i].json);
        free(r->tools[i].parameters);
    }
    free(r->tools);
    free(r->model);
    for (size_t i = 0; i < r->n_stop && i < REQUEST_MAX_STOP; i++) free(r->stop[i]);
    free(r->share_spans);
    free(r->user);
    free(r->logit_bias);
    free(r->grammar);
    request_init(r);
}

/* ---- small helpers ---- */

static char *req_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int req_nomem(struct api_error *err)
{
    /* Not a client mistake, but request_parse has one failure shape; the
     * server may map status 503 through response.c. */
    request_error(err, NULL, "out of memory while reading the request");
    err->status = 503;
    err->type = "server_error";
    err->code = "out_of_memory";
    return -1;
}

/* Optional field: NULL when absent or JSON null. */
static json_t *req_field(json_t *root, const char *name)
{
    json_t *v = json_object_get(root, name);
    return (v && !json_is_null(v)) ? v : NULL;
}

/* Integer field in [lo, hi]: 1 read into *out, 0 absent/null, -1 error. */
static int req_int(json_t *root, const char *name, json_int_t lo, json_int_t hi, json_int_t *out,
                   struct api_error *err)
{
    json_t *v = req_field(root, name);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        req_type_error(err, name, "an integer");
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        request_error(err, name, "'%s' must be an integer between %lld and %lld", name, (long long)lo,
                      (long long)hi);
        return -1;
    }
    *out = x;
    return 1;
}

/* Number field; lo_open / hi_open make the interval open at that end. The
 * test is written so NaN fails. */
static int req_num(json_t *root, const char *name, double lo, bool lo_open, double hi, bool hi_open,
                   float *out, struct api_error *err)
{
    json_t *v = req_field(root, name);
    if (!v) return 0;
    if (!json_is_number(v)) {
        req_type_error(err, name, "a number");
        return -1;
    }
    double x = json_number_value(v);
    bool ok = isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
    /* and again after narrowing: 1e-320 is > 0 but becomes 0.0f */
    float f = ok ? (float)x : 0.0f;
    ok = ok && (lo_open ? f > lo : f >= lo) && (hi_open ? f < hi : f <= hi);
    if (!ok) {
        request_error(err, name, "'%s' must be a number in %c%g, %g%c", name, lo_open ? '(' : '[', lo, hi,
                      hi_open ? ')' : ']');
        return -1;
    }
    *out = f;
    return 1;
}

static int req_bool(json_t *root, const char *name, bool *out, struct api_error *err)
{
    json_t *v = req_field(root, name);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        req_type_error(err, name, "a boolean");
        return -1;
    }
    *out = json_is_true(v);
    return 1;
}

/* String field of at most max bytes, copied into *out. */
static int req_str(json_t *root, const char *name, size_t max, char **out, struct api_error *err)
{
    json_t *v = req_field(root, name);
    if (!v) return 0;
    if (!json_is_string(v)) {
        req_type_error(err, name, "a string");
        return -1;
    }
    size_t n = json_string_length(v);
    if (n > max) {
        request_error(err, name, "'%s' is longer than %zu bytes", name, max);
        return -1;
    }
    /* jansson rejects "\u0000" at parse time (no JSON_ALLOW_NUL), so the value
     * has no interior NUL. */
    *out = req_strndup(json_string_value(v), n);
    return *out ? 1 : req_nomem(err);
}

/* ---- prompt ---- */

static int req_id_array(json_t *arr, const struct request_limits *lim, int32_t **ids_out, size_t *n_out,
                        struct api_error *err)
{
    size_t n = json_array_size(arr);
    if (n == 0) {
        request_error(err, "prompt", "'prompt' token arrays must not be empty");
        return -1;
    }
    if (n > lim->n_ctx) {
        request_error(err, "prompt", "'prompt' holds more than %u tokens (the context length)", lim->n_ctx);
        err->code = "context_length_exceeded";
        return -1;
    }
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return req_nomem(err);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        if (!json_is_integer(t)) {
            free(ids);
            req_type_error(err, "prompt", "a string, an array of strings, or an array of integer token ids");
            return -1;
        }
        json_int_t id = json_integer_value(t);
        if (id < 0 || id >= (json_int_t)lim->n_vocab) {
            free(ids);
            request_error(err, "prompt", "'prompt' token ids must be between 0 and %lld",
                          (long long)lim->n_vocab - 1);
            return -1;
        }
        ids[i] = (int32_t)id;
    }
    *ids_out = ids;
    *n_out = n;
    return 0;
}

static int req_prompt(json_t *root, const struct request_limits *lim, struct api_request *r,
                      struct api_error *err)
{
    static const char what[] = "a string, an array of strings, or an array of integer token ids";
    json_t *p = req_field(root, "prompt");
    if (!p) {
        request_error(err, "prompt", "'prompt' is required");
        err->code = "missing_required_parameter";
        return -1;
    }
    if (json_is_string(p)) {
        size_t n = json_string_length(p);
        if (n > lim->max_prompt_bytes) {
            request_error(err, "prompt", "'prompt' is longer than %zu bytes", lim->max_prompt_bytes);
            return -1;
        }
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts) return req_nomem(err);
        r->prompts[0] = req_strndup(json_string_value(p), n);
        if (!r->prompts[0]) return req_nomem(err);
        r->n_prompts = 1;
        return 0;
    }
    if (!json_is_array(p)) {
        req_type_error(err, "prompt", what);
        return -1;
    }
    size_t n = json_array_size(p);
    if (n == 0) {
        request_error(err, "prompt", "'prompt' must not be an empty array");
        return -1;
    }
    json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) { /* one token-id prompt */
        r->prompt_ids = calloc(1, sizeof *r->prompt_ids);
        r->prompt_id_lens = calloc(1, sizeof *r->prompt_id_lens);
        if (!r->prompt_ids || !r->prompt_id_lens) return req_nomem(err);
        r->n_prompts = 1;
        return req_id_array(p, lim, &r->prompt_ids[0], &r->prompt_id_lens[0], err);
    }
    if (n > lim->max_n) {
        request_error(err, "prompt", "'prompt' holds more than %u prompts", lim->max_n);
        return -1;
    }
    if (json_is_string(first)) { /* several text prompts */
        r->prompts = calloc(n, sizeof *r->prompts);
        if (!r->prompts) return req_nomem(err);
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(p, i);
            if (!json_is_string(s)) {
                req_type_error(err, "prompt", what);
                return -1;
            }
            size_t len = json_string_length(s);
            if (len > lim->max_prompt_bytes) {
                request_error(err, "prompt", "'prompt'[%zu] is longer than %zu bytes", i, lim->max_prompt_bytes);
                return -1;
            }
            r->prompts[i] = req_strndup(json_string_value(s), len);
            if (!r->prompts[i]) return req_nomem(err);
            r->n_prompts = i + 1;
        }
        return 0;
    }
    if (json_is_array(first)) { /* several token-id prompts */
        r->prompt_ids = calloc(n, sizeof *r->prompt_ids);
        r->prompt_id_lens = calloc(n, sizeof *r->prompt_id_lens);
        if (!r->prompt_ids || !r->prompt_id_lens) return req_nomem(err);
        r->n_prompts = n; /* entries stay NULL until filled: request_free copes */
        for (size_t i = 0; i < n; i++) {
            json_t *a = json_array_get(p, i);
            if (!json_is_array(a)) {
                req_type_error(err, "prompt", what);
                return -1;
            }
            if (req_id_array(a, lim, &r->prompt_ids[i], &r->prompt_id_lens[i], err) != 0) return -1;
        }
        return 0;
    }
    req_type_error(err, "prompt", what);
    return -1;
}

/* ---- chat messages ---- */

static bool req_plain_name(const char *s);

/* A tool or function name: [A-Za-z0-9_-]{1,64} (OpenAI's rule). */
static bool req_tool_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > REQUEST_MAX_TOOL_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* The id of a tool call given in an earlier message of r (messages[0..before)). */
static bool req_call_id_known(const struct api_request *r, size_t before, const char *id)
{
    for (size_t i = 0; i < before; i++)
        for (size_t k = 0; k < r->messages[i].n_tool_calls; k++)
            if (strcmp(r->messages[i].tool_calls[k].id, id) == 0) return true;
    return false;
}

/* messages[i]'s tool fields: tool_calls (assistant), tool_call_id (tool, required). */
static int req_message_tools(json_t *msg, size_t i, struct api_request *r, struct api_error *err)
{
    char param[128]; /* err->param keeps 63 bytes */
    struct api_message *out = &r->messages[i];
    bool is_tool = strcmp(out->role, "tool") == 0, is_asst = strcmp(out->role, "assistant") == 0;
    json_t *id = json_object_get(msg, "tool_call_id");
    snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
    if (is_tool) {
        if (!id || json_is_null(id)) {
            request_error(err, param, "a message with role \"tool\" needs 'tool_call_id'");
            err->code = "missing_required_parameter";
            return -1;
        }
        if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > REQUEST_MAX_NAME_LEN) {
            req_type_error(err, param, "a string of 1 to 256 bytes");
            return -1;
        }
        if (!req_call_id_known(r, i, json_string_value(id))) {
            request_error(err, param, "'%s' names no tool call of an earlier assistant message", param);
            return -1;
        }
        out->tool_call_id = req_strndup(json_string_value(id), json_string_length(id));
        if (!out->tool_call_id) return req_nomem(err);
    } else if (id && !json_is_null(id)) {
        request_error(err, param, "'tool_call_id' is only for messages with role \"tool\"");
        return -1;
    }
    json_t *calls = json_object_get(msg, "tool_calls");
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    if (!calls || json_is_null(calls)) return 0;
    if (!is_asst) {
        request_error(err, param, "'tool_calls' is only for messages with role \"assistant\"");
        return -1;
    }
    size_t n = json_is_array(calls) ? json_array_size(calls) : 0;
    if (!json_is_array(calls) || n == 0 || n > REQUEST_MAX_TOOL_CALLS) {
        req_type_error(err, param, "an array of 1 to 128 tool calls");
        return -1;
    }
    size_t before = 0;
    for (size_t m = 0; m < i; m++) before += r->messages[m].n_tool_calls;
    if (before + n > REQUEST_MAX_CONV_TOOL_CALLS) {
        request_error(err, param, "the messages hold more than %d tool calls", REQUEST_MAX_CONV_TOOL_CALLS);
        return -1;
    }
    out->tool_calls = calloc(n, sizeof *out->tool_calls);
    if (!out->tool_calls) return req_nomem(err);
    for (size_t k = 0; k < n; k++) {
        json_t *c = json_array_get(calls, k);
        json_t *cid = json_object_get(c, "id"), *type = json_object_get(c, "type");
        json_t *fn = json_object_get(c, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu]", i, k);
        if (!json_is_object(c) || !json_is_object(fn)) {
            req_type_error(err, param, "an object {id, type: \"function\", function: {name, arguments}}");
            return -1;
        }
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].type", i, k);
            request_error(err, param, "'%s' must be \"function\"", param);
            return -1;
        }
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].id", i, k);
        if (!json_is_string(cid) || json_string_length(cid) == 0 || json_string_length(cid) > REQUEST_MAX_NAME_LEN) {
            req_type_error(err, param, "a string of 1 to 256 bytes");
            return -1;
        }
        if (req_call_id_known(r, i + 1, json_string_value(cid))) {
            request_error(err, param, "tool call ids must be unique in the conversation");
            return -1;
        }
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function.name", i, k);
        if (!json_is_string(name) || !req_tool_name_ok(json_string_value(name), json_string_length(name))) {
            request_error(err, param, "'%s' must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-'", param);
            return -1;
        }
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function.arguments", i, k);
        if (!json_is_string(args)) {
            req_type_error(err, param, "a string holding a JSON object");
            return -1;
        }
        json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(parsed)) {
            json_decref(parsed);
            request_error(err, param, "'%s' must hold a JSON object", param);
            return -1;
        }
        struct api_tool_call *tc = &out->tool_calls[k];
        tc->arguments = json_dumps(parsed, JSON_ENCODE_ANY); /* one line, ", " and ": " (the templates' tojson) */
        json_decref(parsed);
        tc->id = req_strndup(json_string_value(cid), json_string_length(cid));
        tc->name = req_strndup(json_string_value(name), json_string_length(name));
        out->n_tool_calls = k + 1;
        if (!tc->arguments || !tc->id || !tc->name) return req_nomem(err);
    }
    return 0;
}

/* tools, tool_choice, parallel_tool_calls (chat). After req_grammar. */
static int req_tools(json_t *root, struct api_request *r, struct api_error *err)
{
    char param[128]; /* err->param keeps 63 bytes */
    json_t *tools = req_field(root, "tools");
    if (tools) {
        size_t n = json_is_array(tools) ? json_array_size(tools) : 0;
        if (!json_is_array(tools) || n > REQUEST_MAX_TOOLS) {
            req_type_error(err, "tools", "an array of at most 128 tools");
            return -1;
        }
        r->tools = n ? calloc(n, sizeof *r->tools) : NULL;
        if (n && !r->tools) return req_nomem(err);
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tools, i), *type = json_object_get(t, "type");
            json_t *fn = json_object_get(t, "function");
            snprintf(param, sizeof param, "tools[%zu]", i);
            if (!json_is_object(t) || !json_is_object(fn)) {
                req_type_error(err, param, "an object {type: \"function\", function: {name, ...}}");
                return -1;
            }
            const char *key;
            json_t *v;
            json_object_foreach(t, key, v) if (strcmp(key, "type") && strcmp(key, "function"))
            {
                request_error(err, param, "'%s' has a field saserve does not support (type and function only)", param);
                err->code = "unsupported_parameter";
                return -1;
            }
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0) {
                snprintf(param, sizeof param, "tools[%zu].type", i);
                request_error(err, param, "'%s' must be \"function\"", param);
                return -1;
            }
            json_object_foreach(fn, key, v)
            {
                snprintf(param, sizeof param, "tools[%zu].function.%.32s", i, key);
                if (!strcmp(key, "name")) continue;
                if (!strcmp(key, "description") && json_is_string(v)) continue;
                if (!strcmp(key, "strict") && (json_is_boolean(v) || json_is_null(v))) continue;
                if (!strcmp(key, "parameters") && json_is_object(v)) continue;
                if (!strcmp(key, "description") || !strcmp(key, "strict") || !strcmp(key, "parameters")) {
                    req_type_error(err, param, !strcmp(key, "description") ? "a string"
                                               : !strcmp(key, "strict") ? "a boolean" : "a JSON schema object");
                    return -1;
                }
                request_error(err, req_plain_name(key) ? param : "tools",
                              "this tool field is not supported by saserve");
                err->code = "unsupported_parameter";
                return -1;
            }
            json_t *name = json_object_get(fn, "name");
            snprintf(param, sizeof param, "tools[%zu].function.name", i);
            if (!name) {
                request_error(err, param, "'%s' is required", param);
                err->code = "missing_required_parameter";
                return -1;
            }
            if (!json_is_string(name) || !req_tool_name_ok(json_string_value(name), json_string_length(name))) {
                request_error(err, param, "'%s' must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-'", param);
                return -1;
            }
            for (size_t k = 0; k < i; k++)
                if (strcmp(r->tools[k].name, json_string_value(name)) == 0) {
                    request_error(err, param, "tools[%zu] and tools[%zu] have the same name", k, i);
                    return -1;
                }
            struct api_tool *out = &r->tools[i];
            r->n_tools = i + 1;
            out->name = req_strndup(json_string_value(name), json_string_length(name));
            out->json = json_dumps(t, JSON_COMPACT);
            if (!out->name || !out->json) return req_nomem(err);
            json_t *params = json_object_get(fn, "parameters");
            if (!params || json_is_null(params)) continue;
            snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
            json_t *ptype = json_object_get(params, "type");
            if (ptype && !(json_is_string(ptype) && strcmp(json_string_value(ptype), "object") == 0)) {
                request_error(err, param, "'%s' must describe an object (type \"object\")", param);
                return -1;
            }
            char msg[200] = "", *gbnf = NULL;
            int rc = schema_to_gbnf(params, &gbnf, msg, sizeof msg);
            free(gbnf);
            if (rc == SA_ERR_NOMEM) return req_nomem(err);
            if (rc) {
                request_error(err, param, "%s", msg[0] ? msg : "the parameters schema is not valid");
                if (rc == SA_ERR_UNSUPPORTED) err->code = "unsupported_schema";
                return -1;
            }
            out->parameters = json_dumps(params, JSON_COMPACT);
            if (!out->parameters) return req_nomem(err);
        }
    }
    r->tool_choice = r->n_tools ? TOOL_CHOICE_AUTO : TOOL_CHOICE_NONE;
    json_t *tc = req_field(root, "tool_choice");
    if (tc) {
        const char *s = json_string_value(tc);
        if (s && !strcmp(s, "none")) r->tool_choice = TOOL_CHOICE_NONE;
        else if (s && !strcmp(s, "auto")) r->tool_choice = TOOL_CHOICE_AUTO;
        else if (s && !strcmp(s, "required")) r->tool_choice = TOOL_CHOICE_REQUIRED;
        else if (json_is_object(tc)) {
            json_t *type = json_object_get(tc, "type"), *fn = json_object_get(tc, "function");
            json_t *name = json_object_get(fn, "name");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_object(fn) ||
                !json_is_string(name) || json_object_size(tc) != 2 || json_object_size(fn) != 1) {
                req_type_error(err, "tool_choice", "\"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                                                   "\"function\": {\"name\": ...}}");
                return -1;
            }
            size_t k = 0;
            while (k < r->n_tools && strcmp(r->tools[k].name, json_string_value(name)) != 0) k++;
            if (k == r->n_tools) {
                request_error(err, "tool_choice", "'tool_choice' names a function that 'tools' does not hold");
                return -1;
            }
            r->tool_choice = TOOL_CHOICE_NAMED;
            r->tool_choice_index = k;
        } else {
            request_error(err, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                              "{\"type\": \"function\", \"function\": {\"name\": ...}}");
            return -1;
        }
        if (r->tool_choice != TOOL_CHOICE_NONE && r->n_tools == 0) {
            request_error(err, "tool_choice", "'tool_choice' other than \"none\" needs 'tools'");
            return -1;
        }
    }
    if (req_bool(root, "parallel_tool_calls", &r->parallel_tool_calls, err) < 0) return -1;
    if ((r->tool_choice == TOOL_CHOICE_REQUIRED || r->tool_choice == TOOL_CHOICE_NAMED) && r->grammar) {
        request_error(err, "tool_choice", "a required tool call cannot be combined with '%s'", r->grammar_param);
        return -1;
    }
    return 0;
}

static int req_messages(json_t *root, const struct request_limits *lim, struct api_request *r,
                        struct api_error *err)
{
    char param[64];
    json_t *m = req_field(root, "messages");
    if (!m) {
        request_error(err, "messages", "'messages' is required");
        err->code = "missing_required_parameter";
        return -1;
    }
    if (!json_is_array(m)) {
        req_type_error(err, "messages", "an array of messages");
        return -1;
    }
    size_t n = json_array_size(m);
    if (n == 0) {
        request_error(err, "messages", "'messages' must not be empty");
        return -1;
    }
    r->messages = calloc(n, sizeof *r->messages);
    if (!r->messages) return req_nomem(err);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(msg)) {
            req_type_error(err, param, "an object with 'role' and 'content'");
            return -1;
        }
        r->n_messages = i + 1;
        struct api_message *out = &r->messages[i];

        json_t *role = json_object_get(msg, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        const char *rs = json_is_string(role) ? json_string_value(role) : NULL;
        const char *canon = NULL;
        if (rs && strcmp(rs, "system") == 0) canon = "system";
        else if (rs && strcmp(rs, "developer") == 0) canon = "system";
        else if (rs && strcmp(rs, "user") == 0) canon = "user";
        else if (rs && strcmp(rs, "assistant") == 0) canon = "assistant";
        else if (rs && strcmp(rs, "tool") == 0) canon = "tool";
        if (!canon) {
            request_error(err, param, "'%s' must be one of \"system\", \"user\", \"assistant\", \"tool\"",
                          param);
            return -1;
        }
        out->role = req_strndup(canon, strlen(canon));
        if (!out->role) return req_nomem(err);

        json_t *content = json_object_get(msg, "content");
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (json_is_string(content)) {
            size_t len = json_string_length(content);
            if (len > lim->max_prompt_bytes || total + len > lim->max_prompt_bytes) {
                request_error(err, "messages", "the messages hold more than %zu bytes of content",
                              lim->max_prompt_bytes);
                return -1;
            }
            total += len;
            out->content = req_strndup(json_string_value(content), len);
            if (!out->content) return req_nomem(err);
        } else if (json_is_array(content)) {
            /* text parts, concatenated; sizes checked before allocating */
            size_t np = json_array_size(content), len = 0;
            for (size_t k = 0; k < np; k++) {
                json_t *part = json_array_get(content, k);
                json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
                json_t *text = json_is_object(part) ? json_object_get(part, "text") : NULL;
                if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
                    !json_is_string(text)) {
                    snprintf(param, sizeof param, "messages[%zu].content[%zu]", i, k);
                    request_error(err, param, "'%s' must be {\"type\": \"text\", \"text\": string}", param);
                    return -1;
                }
                size_t tl = json_string_length(text);
                if (tl > lim->max_prompt_bytes || len + tl > lim->max_prompt_bytes ||
                    total + len + tl > lim->max_prompt_bytes) {
                    request_error(err, "messages", "the messages hold more than %zu bytes of content",
                                  lim->max_prompt_bytes);
                    return -1;
                }
                len += tl;
            }
            out->content = malloc(len + 1);
            if (!out->content) return req_nomem(err);
            size_t off = 0;
            for (size_t k = 0; k < np; k++) {
                json_t *text = json_object_get(json_array_get(content, k), "text");
                size_t tl = json_string_length(text);
                memcpy(out->content + off, json_string_value(text), tl);
                off += tl;
            }
            out->content[off] = '\0';
            total += len;
        } else if ((!content || json_is_null(content)) && strcmp(canon, "assistant") == 0) {
            out->content = req_strndup("", 0);
            if (!out->content) return req_nomem(err);
        } else {
            req_type_error(err, param, "a string or an array of text parts");
            return -1;
        }
        if (req_message_tools(msg, i, r, err) != 0) return -1;
    }
    return 0;
}

/* ---- stop ---- */

static int req_stop_one(json_t *s, const char *param, struct api_request *r, struct api_error *err)
{
    if (!json_is_string(s)) {
        req_type_error(err, "stop", "a string or an array of strings");
        return -1;
    }
    size_t len = json_string_length(s);
    if (len == 0 || len > REQUEST_MAX_STOP_LEN) {
        request_error(err, "stop", "'%s' strings must be 1 to %d bytes long", param, REQUEST_MAX_STOP_LEN);
        return -1;
    }
    r->stop[r->n_stop] = req_strndup(json_string_value(s), len);
    if (!r->stop[r->n_stop]) return req_nomem(err);
    r->n_stop++;
    return 0;
}

static int req_stop(json_t *root, const struct request_limits *lim, struct api_request *r, struct api_error *err)
{
    size_t max_stop = lim->max_stop && lim->max_stop < REQUEST_MAX_STOP ? lim->max_stop : REQUEST_MAX_STOP;
    json_t *v = req_field(root, "stop");
    if (!v) return 0;
    if (json_is_string(v)) return req_stop_one(v, "stop", r, err);
    if (!json_is_array(v)) {
        req_type_error(err, "stop", "a string or an array of strings");
        return -1;
    }
    size_t n = json_array_size(v);
    if (n > max_stop) {
        request_error(err, "stop", "'stop' holds more than %zu strings", max_stop);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (req_stop_one(json_array_get(v, i), "stop", r, err) != 0) return -1;
    return 0;
}

/* ---- share_spans: syntax only; the engine checks layers ---- */

static bool req_spans_syntax_ok(const char *s)
{
    if (strcmp(s, "auto") == 0 || strcmp(s, "off") == 0 || strcmp(s, "none") == 0) return true;
    if (!*s) return false;
    bool digit = false;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') digit = true;
        else if (*p != '-' && *p != ',' && *p != ' ') return false;
    }
    return digit;
}

/* ---- JSON syntax errors: described by code and position, never by the
 * bytes jansson quotes in error.text ("... near '<input>'") ---- */

static const char *const req_known_fields[] = {
    "prompt", "messages", "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "min_p",
    "top_k", "presence_penalty", "frequency_penalty", "repeat_penalty", "seed", "stop", "stream",
    "stream_options", "echo", "logprobs", "top_logprobs", "n", "user", "share_spans", "rebalance_alpha",
    "rebalance_tau", "logit_bias", "ignore_eos", "min_tokens", "stop_token_ids", "grammar", "response_format",
    "tools", "tool_choice", "parallel_tool_calls",
};
/* Fields of one kind only (the rest of req_known_fields are both kinds'). */
static const char *const req_completion_only[] = {"prompt", "echo"};
static const char *const req_chat_only[] = {"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
                                            "parallel_tool_calls"};
/* OpenAI fields accepted and ignored because they change nothing here. */
static const char *const req_noop_fields[] = {"user", "store", "metadata", "service_tier"};

static void req_json_error(const json_error_t *je, struct api_error *err)
{
    const char *what;
    switch (json_error_code(je)) {
    case json_error_out_of_memory: req_nomem(err); return;
    case json_error_stack_overflow: what = "is nested too deeply"; break;
    case json_error_invalid_utf8: what = "is not valid UTF-8"; break;
    case json_error_premature_end_of_input: what = "is truncated"; break;
    case json_error_end_of_input_expected: what = "has extra data after the JSON value"; break;
    case json_error_null_character: what = "contains a NUL character"; break;
    case json_error_null_byte_in_key: what = "contains a NUL character in a key"; break;
    case json_error_numeric_overflow: what = "contains a number out of range"; break;
    case json_error_duplicate_key: {
        /* Name the field when it is one we know (text is jansson's, the name
         * printed is ours). */
        const char *near = strstr(je->text, "near '\"");
        const char *param = "body";
        if (near) {
            near += 7;
            for (size_t i = 0; i < sizeof req_known_fields / sizeof req_known_fields[0]; i++) {
                size_t l = strlen(req_known_fields[i]);
                if (strncmp(near, req_known_fields[i], l) == 0 && near[l] == '"' && near[l + 1] == '\'') {
                    param = req_known_fields[i];
                    break;
                }
            }
        }
        request_error(err, param, "the request body has a duplicate key (line %d, column %d)", je->line,
                      je->column);
        err->code = "invalid_json";
        return;
    }
    default: what = "is not valid JSON"; break;
    }
    request_error(err, "body", "the request body %s (line %d, column %d)", what, je->line, je->column);
    err->code = "invalid_json";
}

static bool req_in(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0) return true;
    return false;
}
#define REQ_IN(key, list) req_in(key, list, sizeof list / sizeof list[0])

static bool req_plain_name(const char *s);

/* Every top-level field is one this kind implements, a no-op OpenAI field, or null. */
static int req_check_fields(json_t *root, enum request_kind kind, struct api_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (json_is_null(v) || REQ_IN(key, req_noop_fields)) continue;
        bool known = REQ_IN(key, req_known_fields) &&
                     !(kind == REQUEST_CHAT && REQ_IN(key, req_completion_only)) &&
                     !(kind == REQUEST_COMPLETION && REQ_IN(key, req_chat_only));
        if (known) continue;
        request_error(err, req_plain_name(key) ? key : "body",
                      "this parameter is not supported by saserve (openapi.yaml lists the ones it implements)");
        err->code = "unsupported_parameter";
        return -1;
    }
    return 0;
}

/* Structured output: `grammar` (GBNF text, llama.cpp's field) or `response_format`
 * (OpenAI: text / json_object / json_schema, converted by schema.h), not both. */
static int req_grammar(json_t *root, struct api_request *r, struct api_error *err)
{
    json_t *rf = req_field(root, "response_format");
    int rc = req_str(root, "grammar", REQUEST_MAX_GRAMMAR_LEN, &r->grammar, err);
    if (rc < 0) return -1;
    if (rc > 0) {
        if (rf) {
            request_error(err, "grammar", "give either 'grammar' or 'response_format', not both");
            return -1;
        }
        r->grammar_param = "grammar";
        return 0;
    }
    if (!rf) return 0;
    char msg[200] = "";
    rc = schema_response_format_gbnf(rf, &r->grammar, msg, sizeof msg);
    if (rc == SA_ERR_NOMEM) return req_nomem(err);
    if (rc) {
        request_error(err, "response_format", "%s", msg[0] ? msg : "'response_format' is not valid");
        if (rc == SA_ERR_UNSUPPORTED) err->code = "unsupported_schema";
        return -1;
    }
    if (r->grammar && strlen(r->grammar) > REQUEST_MAX_GRAMMAR_LEN) {
        request_error(err, "response_format", "the schema's grammar is longer than %d bytes",
                      REQUEST_MAX_GRAMMAR_LEN);
        return -1;
    }
    r->grammar_param = r->grammar ? "response_format" : NULL;
    return 0;
}

/* logit_bias: {"<token id>": bias in [-100, 100]} (OpenAI). */
static int req_logit_bias(json_t *root, const struct request_limits *lim, struct api_request *r,
                          struct api_error *err)
{
    json_t *o = req_field(root, "logit_bias");
    if (!o) return 0;
    if (!json_is_object(o)) {
        req_type_error(err, "logit_bias", "an object of token ids to numbers");
        return -1;
    }
    size_t n = json_object_size(o);
    if (n > REQUEST_MAX_LOGIT_BIAS) {
        request_error(err, "logit_bias", "'logit_bias' may name at most %d tokens", REQUEST_MAX_LOGIT_BIAS);
        return -1;
    }
    r->logit_bias = n ? calloc(n, sizeof *r->logit_bias) : NULL;
    if (n && !r->logit_bias) return req_nomem(err);
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        char *end;
        errno = 0;
        unsigned long id = strtoul(key, &end, 10);
        if (!*key || *end || errno || key[0] < '0' || key[0] > '9' || id >= lim->n_vocab) {
            request_error(err, "logit_bias", "'logit_bias' keys must be token ids below %u", lim->n_vocab);
            return -1;
        }
        double b = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(b >= -100 && b <= 100)) {
            request_error(err, "logit_bias", "'logit_bias' values must be numbers in [-100, 100]");
            return -1;
        }
        r->logit_bias[r->n_logit_bias++] = (struct api_logit_bias){(int32_t)id, (float)b};
    }
    return 0;
}

static int req_stop_token_ids(json_t *root, const struct request_limits *lim, struct api_request *r,
                              struct api_error *err)
{
    json_t *a = req_field(root, "stop_token_ids");
    if (!a) return 0;
    if (!json_is_array(a)) {
        req_type_error(err, "stop_token_ids", "an array of token ids");
        return -1;
    }
    if (json_array_size(a) > REQUEST_MAX_STOP_IDS) {
        request_error(err, "stop_token_ids", "'stop_token_ids' may hold at most %d ids", REQUEST_MAX_STOP_IDS);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= (json_int_t)lim->n_vocab) {
            request_error(err, "stop_token_ids", "'stop_token_ids' must hold token ids below %u", lim->n_vocab);
            return -1;
        }
        r->stop_token_ids[r->n_stop_token_ids++] = (int32_t)id;
    }
    return 0;
}

/* ---- the request ---- */

static int req_only(json_t *root, const char *const *known, size_t n, struct api_error *err);

/* POST /v1/embeddings: input as a completion's prompt (errors name "input"). */
static int req_parse_embedding(json_t *root, const struct request_limits *lim, struct api_request *r,
                               struct api_error *err)
{
    static const char *const known[] = {"input", "model", "user", "encoding_format", "pooling", "store",
                                        "metadata", "service_tier"};
    if (req_only(root, known, sizeof known / sizeof known[0], err) != 0) return -1;
    json_t *input = json_object_get(root, "input");
    if (json_object_set(root, "prompt", input ? input : json_null()) != 0) return req_nomem(err);
    if (req_prompt(root, lim, r, err) != 0) {
        if (strcmp(err->param, "prompt") == 0) snprintf(err->param, sizeof err->param, "input");
        char *q = strstr(err->message, "'prompt'"), rest[sizeof err->message];
        if (q) { /* our own text: name the field the client sent */
            snprintf(rest, sizeof rest, "%s", q + 8);
            snprintf(q, sizeof err->message - (size_t)(q - err->message), "'input'%s", rest);
        }
        return -1;
    }
    if (req_str(root, "model", REQUEST_MAX_NAME_LEN, &r->model, err) < 0) return -1;
    if (req_str(root, "user", REQUEST_MAX_NAME_LEN, &r->user, err) < 0) return -1;
    json_t *v = req_field(root, "encoding_format");
    if (v && !(json_is_string(v) && (!strcmp(json_string_value(v), "float") || !strcmp(json_string_value(v), "base64")))) {
        request_error(err, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        return -1;
    }
    r->base64 = v && !strcmp(json_string_value(v), "base64");
    v = req_field(root, "pooling");
    if (v && !(json_is_string(v) && (!strcmp(json_string_value(v), "mean") || !strcmp(json_string_value(v), "last")))) {
        request_error(err, "pooling", "'pooling' must be \"mean\" or \"last\"");
        return -1;
    }
    r->pooling = v && !strcmp(json_string_value(v), "last");
    return 0;
}

static int req_parse_fields(json_t *root, enum request_kind kind, const struct request_limits *lim,
                            struct api_request *r, struct api_error *err)
{
    if (kind == REQUEST_EMBEDDING) return req_parse_embedding(root, lim, r, err);
    json_int_t iv = 0;
    int rc;
    uint32_t max_lp = lim->max_logprobs < REQUEST_MAX_LOGPROBS ? lim->max_logprobs : REQUEST_MAX_LOGPROBS;

    if (kind == REQUEST_COMPLETION) {
        if (req_prompt(root, lim, r, err) != 0) return -1;
    } else {
        if (req_messages(root, lim, r, err) != 0) return -1;
    }
    if (req_check_fields(root, kind, err) != 0) return -1; /* after the required field: it is named first */
    if (req_str(root, "model", REQUEST_MAX_NAME_LEN, &r->model, err) < 0) return -1;
    if (req_str(root, "user", REQUEST_MAX_NAME_LEN, &r->user, err) < 0) return -1;

    /* max_tokens (and the chat alias) */
    if (kind == REQUEST_CHAT) r->max_tokens = lim->max_tokens_limit;
    else if (lim->max_tokens_limit < r->max_tokens) r->max_tokens = lim->max_tokens_limit;
    const char *mt_names[2] = {"max_tokens", "max_completion_tokens"};
    for (int k = 0; k < (kind == REQUEST_CHAT ? 2 : 1); k++) {
        json_t *v = req_field(root, mt_names[k]);
        if (!v) continue;
        if (!json_is_integer(v)) {
            req_type_error(err, mt_names[k], "an integer");
            return -1;
        }
        json_int_t x = json_integer_value(v);
        if (x < (kind == REQUEST_COMPLETION ? 0 : 1)) { /* completions: 0 with echo, checked below */
            request_error(err, mt_names[k], "'%s' must be at least 1", mt_names[k]);
            return -1;
        }
        if (x > (json_int_t)lim->max_tokens_limit) {
            request_error(err, mt_names[k], "'%s' must be at most %u", mt_names[k], lim->max_tokens_limit);
            return -1;
        }
        r->max_tokens = (uint32_t)x;
        r->max_tokens_set = true;
    }

    r->temperature = lim->default_temperature;
    if (req_num(root, "temperature", 0, false, 2, false, &r->temperature, err) < 0) return -1;
    if (req_num(root, "top_p", 0, true, 1, false, &r->top_p, err) < 0) return -1;
    if (req_num(root, "min_p", 0, false, 1, false, &r->min_p, err) < 0) return -1;
    if (req_num(root, "presence_penalty", -2, false, 2, false, &r->presence_penalty, err) < 0) return -1;
    if (req_num(root, "frequency_penalty", -2, false, 2, false, &r->frequency_penalty, err) < 0) return -1;
    if (req_num(root, "repeat_penalty", 0, true, 10, false, &r->repeat_penalty, err) < 0) return -1;

    rc = req_int(root, "top_k", 0, INT64_MAX, &iv, err);
    if (rc < 0) return -1;
    if (rc > 0) r->top_k = (int32_t)(iv > (json_int_t)lim->n_vocab ? (json_int_t)lim->n_vocab : iv);

    rc = req_int(root, "seed", 0, INT64_MAX, &iv, err);
    if (rc < 0) return -1;
    if (rc > 0) {
        r->seed = (uint64_t)iv;
        r->seed_set = true;
    }

    if (req_stop(root, lim, r, err) != 0) return -1;
    if (req_bool(root, "stream", &r->stream, err) < 0) return -1;

    json_t *so = req_field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) {
            req_type_error(err, "stream_options", "an object");
            return -1;
        }
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu)) {
            if (!json_is_boolean(iu)) {
                req_type_error(err, "stream_options.include_usage", "a boolean");
                return -1;
            }
            r->include_usage = json_is_true(iu);
        }
    }

    if (kind == REQUEST_COMPLETION) {
        if (req_bool(root, "echo", &r->echo, err) < 0) return -1;
        if (r->max_tokens == 0 && !r->echo) { /* scoring a prompt: nothing to answer without it */
            request_error(err, "max_tokens", "'max_tokens' 0 needs 'echo' true (the prompt alone, scored with logprobs)");
            return -1;
        }
        rc = req_int(root, "logprobs", 0, (json_int_t)max_lp, &iv, err);
        if (rc < 0) return -1;
        if (rc > 0) r->logprobs = (int32_t)iv;
    } else {
        bool want = false;
        if (req_bool(root, "logprobs", &want, err) < 0) return -1;
        rc = req_int(root, "top_logprobs", 0, (json_int_t)max_lp, &iv, err);
        if (rc < 0) return -1;
        if (rc > 0 && !want) {
            request_error(err, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
            return -1;
        }
        if (want) r->logprobs = rc > 0 ? (int32_t)iv : 0;
    }

    rc = req_int(root, "n", 1, (json_int_t)lim->max_n, &iv, err);
    if (rc < 0) return -1;
    if (rc > 0) r->n = (uint32_t)iv;
    /* C2: fan-out is n sequences per prompt. */
    size_t prompts = r->n_prompts ? r->n_prompts : 1;
    if ((uint64_t)r->n * prompts > (uint64_t)lim->max_n) {
        request_error(err, "n", "'n' times the number of prompts must be at most %u", lim->max_n);
        return -1;
    }

    rc = req_str(root, "share_spans", REQUEST_MAX_SPANS_LEN, &r->share_spans, err);
    if (rc < 0) return -1;
    if (rc > 0 && !req_spans_syntax_ok(r->share_spans)) {
        request_error(err, "share_spans", "'share_spans' must be \"auto\", \"off\" or spans like \"3-4,7-9\"");
        return -1;
    }
    rc = req_num(root, "rebalance_alpha", 0, false, 10, false, &r->rebalance_alpha, err);
    if (rc < 0) return -1;
    r->rebalance_alpha_set = rc > 0;
    rc = req_num(root, "rebalance_tau", 0, false, 1, false, &r->rebalance_tau, err);
    if (rc < 0) return -1;
    r->rebalance_tau_set = rc > 0;

    if (req_logit_bias(root, lim, r, err) != 0 || req_stop_token_ids(root, lim, r, err) != 0) return -1;
    if (req_grammar(root, r, err) != 0) return -1;
    if (kind == REQUEST_CHAT && req_tools(root, r, err) != 0) return -1;
    if (req_bool(root, "ignore_eos", &r->ignore_eos, err) < 0) return -1;
    rc = req_int(root, "min_tokens", 0, (json_int_t)r->max_tokens, &iv, err);
    if (rc < 0) return -1;
    if (rc > 0) r->min_tokens = (uint32_t)iv;
    return 0;
}

int request_parse(enum request_kind kind, const char *body, size_t len, const struct request_limits *lim,
                  struct api_request *out, struct api_error *err)
{
    json_error_t je;
    if (kind != REQUEST_COMPLETION && kind != REQUEST_CHAT && kind != REQUEST_EMBEDDING) {
        request_error(err, NULL, "unknown request kind");
        return SA_ERR_INVALID_ARG;
    }
    out->kind = kind;
    if (!body) {
        request_error(err, "body", "the request body is empty");
        return SA_ERR_INVALID_ARG;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        req_json_error(&je, err);
        return err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        request_error(err, "body", "the request body must be a JSON object");
        return SA_ERR_INVALID_ARG;
    }
    int rc = req_parse_fields(root, kind, lim, out, err);
    json_decref(root);
    return rc == 0 ? 0 : err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG;
}

/* ---- /tokenize and /detokenize ---- */

static json_t *req_load_object(const char *body, size_t len, struct api_error *err)
{
    json_error_t je;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!body) request_error(err, "body", "the request body is empty");
    else if (!root) req_json_error(&je, err);
    else if (!json_is_object(root)) {
        json_decref(root);
        request_error(err, "body", "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Every field of root is in known[0..n) (or null). */
static int req_only(json_t *root, const char *const *known, size_t n, struct api_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (json_is_null(v) || req_in(key, known, n)) continue;
        request_error(err, req_plain_name(key) ? key : "body", "this parameter is not supported by saserve");
        err->code = "unsupported_parameter";
        return -1;
    }
    return 0;
}

int request_parse_tokenize(const char *body, size_t len, const struct request_limits *lim,
                           struct api_tokens_request *out, struct api_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *root = req_load_object(body, len, err);
    if (!root) return err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG;
    static const char *const known[] = {"content", "add_special", "with_pieces"};
    int rc = req_only(root, known, 3, err);
    if (!rc) {
        rc = req_str(root, "content", lim->max_prompt_bytes, &out->content, err);
        if (rc == 0) {
            request_error(err, "content", "'content' is required");
            err->code = "missing_required_parameter";
            rc = -1;
        }
        rc = rc < 0 ? -1 : 0;
    }
    if (!rc && (req_bool(root, "add_special", &out->add_special, err) < 0 ||
                req_bool(root, "with_pieces", &out->with_pieces, err) < 0))
        rc = -1;
    json_decref(root);
    return rc ? (err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG) : 0;
}

int request_parse_detokenize(const char *body, size_t len, const struct request_limits *lim,
                             struct api_tokens_request *out, struct api_error *err)
{
    memset(out, 0, sizeof *out);
    json_t *root = req_load_object(body, len, err);
    if (!root) return err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG;
    static const char *const known[] = {"tokens"};
    int rc = req_only(root, known, 1, err);
    json_t *a = rc ? NULL : req_field(root, "tokens");
    if (!rc && !a) {
        request_error(err, "tokens", "'tokens' is required");
        err->code = "missing_required_parameter";
        rc = -1;
    } else if (!rc && json_is_array(a) && json_array_size(a) == 0) {
        rc = 0; /* nothing to decode: "" */
    } else if (!rc) {
        if (!json_is_array(a)) {
            req_type_error(err, "tokens", "an array of token ids");
            rc = -1;
        } else {
            size_t n = json_array_size(a);
            out->tokens = n <= lim->n_ctx ? malloc(n * sizeof *out->tokens) : NULL;
            if (n > lim->n_ctx) {
                request_error(err, "tokens", "'tokens' holds more than %u ids (the context length)", lim->n_ctx);
                rc = -1;
            } else if (!out->tokens) {
                rc = req_nomem(err);
            }
            for (size_t i = 0; !rc && i < n; i++) {
                json_t *t = json_array_get(a, i);
                json_int_t id = json_is_integer(t) ? json_integer_value(t) : -1;
                if (id < 0 || id >= (json_int_t)lim->n_vocab) {
                    request_error(err, "tokens", "'tokens' must hold token ids between 0 and %lld",
                                  (long long)lim->n_vocab - 1);
                    rc = -1;
                } else {
                    out->tokens[out->n_tokens++] = (int32_t)id;
                }
            }
        }
    }
    json_decref(root);
    return rc ? (err->status == 503 ? SA_ERR_NOMEM : SA_ERR_INVALID_ARG) : 0;
}

void request_tokens_free(struct api_tokens_request *r)
{
    free(r->content);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

/* ---- query toggles ---- */

static bool req_plain_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
        if (!ok || n >= 63) return false;
    }
    return n > 0;
}

int request_query_arg(struct api_request *r, const char *key, const char *value, struct api_error *err)
{
    const char *param = key && req_plain_name(key) ? key : "query";
    int *slot = NULL;
    if (key && strcmp(key, "share") == 0) slot = &r->share_query;
    else if (key && strcmp(key, "rebalance") == 0) slot = &r->rebalance_query;
    if (!slot) {
        request_error(err, param, "unknown query parameter; only 'share' and 'rebalance' are accepted");
        return SA_ERR_INVALID_ARG;
    }
    if (*slot != -1) {
        request_error(err, param, "query parameter '%s' is given more than once", key);
        return SA_ERR_INVALID_ARG;
    }
    if (value && strcmp(value, "on") == 0) *slot = 1;
    else if (value && strcmp(value, "off") == 0) *slot = 0;
    else {
        request_error(err, param, "query parameter '%s' must be \"on\" or \"off\"", key);
        return SA_ERR_INVALID_ARG;
    }
    return 0;
}
