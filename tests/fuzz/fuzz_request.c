/*
 * fuzz_request.c - libFuzzer target: bytes -> request_parse (completions and
 * chat) and the query-string toggles. Any crash, sanitizer report or leak is
 * a bug; so is a rejection without a status/param or with request bytes in
 * the message (RELIABILITY.md B4, C1-C8). An accepted request with tools
 * must also render its tools' JSON and give, in every chat format, a call
 * grammar without syntax errors or missing / duplicated rules.
 */
#include "server/request.c"
#include "server/schema.c" /* request.c converts response_format through it */
#include "server/tools.c"  /* a request with tools: its call grammar and rendering */
#include "engine/grammar.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tools(const struct api_request *r)
{
    for (int f = CHAT_FORMAT_LLAMA2; f <= CHAT_FORMAT_LLAMA3; f++) {
        for (size_t t = 0; t < r->n_tools; t++) {
            char *js = NULL;
            if (tools_render_json((enum chat_format)f, &r->tools[t], &js) != 0) abort();
            free(js);
        }
        char *g = NULL, msg[200];
        int rc = tools_grammar((enum chat_format)f, r, &g, msg, sizeof msg);
        if (rc == SA_ERR_TOO_LARGE) continue;
        if (rc != 0) abort(); /* request.c accepted every schema */
        if (g) {
            struct grammar *gr = NULL;
            /* a schema's own limits (a recursion that cannot end, sizes) are 400s at submit; a
             * rule of the call wrapper missing or defined twice, or a syntax error, is a bug */
            int crc = grammar_compile(g, strlen(g), &gr, msg, sizeof msg);
            if (crc == SA_ERR_INVALID_ARG &&
                (strstr(msg, "not defined") || strstr(msg, "twice") || strstr(msg, "no rule") || strstr(msg, "at byte")))
                abort();
            grammar_unref(gr);
            free(g);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct request_limits lim = {.max_prompt_bytes = 4096, .max_tokens_limit = 512, .max_n = 4,
                                       .max_logprobs = 5, .n_vocab = 512, .n_ctx = 256,
                                       .default_temperature = 1};
    for (int kind = REQUEST_COMPLETION; kind <= REQUEST_CHAT; kind++) {
        struct api_request r;
        struct api_error err;
        request_init(&r);
        if (request_parse((enum request_kind)kind, (const char *)data, size, &lim, &r, &err) != 0) {
            if (err.status < 400 || err.status > 599 || !err.type) abort();
        } else {
            for (size_t i = 0; i < r.n_prompts; i++)
                if (r.prompt_ids)
                    for (size_t k = 0; k < r.prompt_id_lens[i]; k++)
                        if (r.prompt_ids[i][k] < 0 || r.prompt_ids[i][k] >= 512) abort();
            if (r.n == 0 || r.n > 4 || r.max_tokens == 0) abort();
            check_tools(&r);
        }
        request_free(&r);
    }
    /* query toggles: split the input at the first '=' into key and value */
    if (size < 64) {
        char buf[65];
        memcpy(buf, data, size);
        buf[size] = 0;
        char *eq = strchr(buf, '=');
        struct api_request r;
        struct api_error err;
        request_init(&r);
        if (eq) *eq = 0;
        request_query_arg(&r, buf, eq ? eq + 1 : NULL, &err);
        request_free(&r);
    }
    return 0;
}
