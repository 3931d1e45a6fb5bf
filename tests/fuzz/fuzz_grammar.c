/*
 * fuzz_grammar.c - libFuzzer target for structured output (issue 17.5).
 * First byte even: the rest is GBNF text -> grammar_compile; a grammar that
 * compiles then reads the same bytes through a matcher (byte by byte until
 * one is refused) and masks a small built-in vocabulary, trie against brute
 * force. First byte odd: the rest is a JSON schema -> schema_to_gbnf; its
 * output must compile unless the compiler names a recursion (the one thing
 * the converter leaves to it). Any crash, sanitizer report, leak, unnamed
 * error or mask disagreement is a bug.
 */
#include "server/schema.c"

#include "engine/grammar.h"
#include "engine/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct grammar_vocab *vocab;

static void load_vocab(void)
{
    static const char *texts[] = {"<unk>", "<s>", "</s>", "{", "}", "\"", ":", ",", " ", "\n", "a", "ab", "true",
                                  "1", "-", ".", "[", "]", "\\", "\xc3\xa9", "\xe2\x82", "\xac", "null", "\"a\""};
    enum { N = sizeof texts / sizeof *texts };
    uint32_t lens[N];
    uint8_t types[N];
    for (int i = 0; i < N; i++) {
        lens[i] = (uint32_t)strlen(texts[i]);
        types[i] = i == 0 ? TOK_TYPE_UNKNOWN : i < 3 ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    struct tok_vocab tv = {.kind = TOK_KIND_SPM, .n_vocab = N, .texts = texts, .lens = lens, .types = types,
                           .bos = 1, .eos = 2, .unk = 0, .prefix_mode = TOK_PREFIX_NONE};
    struct tokenizer *t = NULL;
    char msg[256];
    if (tok_create_vocab(&tv, &t, msg, sizeof msg) || grammar_vocab_create(t, &vocab)) {
        fprintf(stderr, "fuzz_grammar: vocabulary: %s\n", msg);
        abort();
    }
    tok_destroy(t);
}

static void named(int rc, const char *msg)
{
    if (rc >= 0) abort();
    if (rc != SA_ERR_NOMEM && (!msg[0] || (!strstr(msg, "grammar") && !strstr(msg, "json_schema")))) {
        fprintf(stderr, "unnamed error %d: '%s'\n", rc, msg);
        abort();
    }
}

static void run_grammar(const char *text, size_t len, const uint8_t *input, size_t n)
{
    struct grammar *g = NULL;
    char msg[256] = "";
    int rc = grammar_compile(text, len, &g, msg, sizeof msg);
    if (rc) {
        named(rc, msg);
        if (g) abort();
        return;
    }
    struct grammar_matcher *m;
    if (grammar_matcher_create(g, &m) == 0) {
        uint32_t a[2] = {0}, b[2] = {0}; /* the vocabulary has 24 tokens: one word */
        for (size_t i = 0; i <= n && i < 64; i++) {
            int32_t ca = grammar_mask(m, vocab, a), cb = grammar_mask_bruteforce(m, vocab, b);
            if (ca != cb || (ca >= 0 && memcmp(a, b, sizeof a) != 0)) abort();
            if (grammar_is_done(m) && !grammar_can_end(m)) abort();
            if (i == n || grammar_accept_bytes(m, input + i, 1) != 0) break;
        }
        grammar_matcher_destroy(m);
    }
    grammar_unref(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocab) load_vocab();
    if (size < 1 || size > 8192) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (!(data[0] & 1)) {
        run_grammar(text, len, data + 1, len);
        return 0;
    }
    json_error_t je;
    json_t *s = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!s) return 0;
    char *gbnf = NULL, msg[256] = "";
    int rc = schema_to_gbnf(s, &gbnf, msg, sizeof msg);
    if (rc) {
        named(rc, msg);
        if (gbnf) abort();
    } else {
        struct grammar *g = NULL;
        rc = grammar_compile(gbnf, strlen(gbnf), &g, msg, sizeof msg);
        if (rc && rc != SA_ERR_NOMEM && rc != SA_ERR_TOO_LARGE && !strstr(msg, "can never finish") &&
            !strstr(msg, "left-recursive")) {
            fprintf(stderr, "converter output does not compile: %s\n%s\n", msg, gbnf);
            abort();
        }
        grammar_unref(g);
        free(gbnf);
    }
    json_decref(s);
    return 0;
}
