/*
 * test_grammar.c - structured output (issue 17.5): the GBNF parser's accepts
 * and named rejections, the matcher against hand-computed byte sequences, the
 * trie mask against a brute-force scan of every token (stories260K and the
 * GPT-2 vocabulary, several grammars and states), the JSON-schema converter
 * (white-box: includes server/schema.c, as test_request.c does), and
 * generation through the engine whose every output is parsed with jansson
 * and checked by an independent validator written here for the supported
 * subset. Prints the mask's cost per step against the brute-force scan.
 */
#include "../../server/schema.c"
#include "../test.h"

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/tokenizer.h"

#include <jansson.h>
#include <pthread.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static struct grammar *compile_ok(const char *text)
{
    struct grammar *g = NULL;
    char msg[256] = "";
    int rc = grammar_compile(text, strlen(text), &g, msg, sizeof msg);
    if (rc) TEST_FAIL_("grammar_compile(%s): %d %s", text, rc, msg);
    return g;
}

static void expect_reject(const char *text, int code, const char *needle)
{
    struct grammar *g = NULL;
    char msg[256] = "";
    int rc = grammar_compile(text, strlen(text), &g, msg, sizeof msg);
    if (rc != code) TEST_FAIL_("grammar_compile(%s): %d, expected %d (%s)", text, rc, code, msg);
    if (!strstr(msg, needle)) TEST_FAIL_("grammar_compile(%s): message \"%s\" lacks \"%s\"", text, msg, needle);
    ASSERT_TRUE(g == NULL);
    grammar_unref(g);
}

static void test_parse_rejects(void)
{
    expect_reject("", SA_ERR_INVALID_ARG, "no rule 'root'");
    expect_reject("foo ::= \"a\"", SA_ERR_INVALID_ARG, "no rule 'root'");
    expect_reject("root ::= \"abc", SA_ERR_INVALID_ARG, "rule 'root' at byte 9: unterminated string literal");
    expect_reject("root ::= [a-", SA_ERR_INVALID_ARG, "unterminated character class");
    expect_reject("root ::= []", SA_ERR_INVALID_ARG, "empty character class");
    expect_reject("root ::= [z-a]", SA_ERR_INVALID_ARG, "range end");
    expect_reject("root ::= value", SA_ERR_INVALID_ARG, "rule 'value' (used at byte 9) is not defined");
    expect_reject("root ::= \"a\"\nroot ::= \"b\"", SA_ERR_INVALID_ARG, "rule 'root' at byte 13: rule defined twice");
    expect_reject("root ::= (\"a\"", SA_ERR_INVALID_ARG, "unclosed '('");
    expect_reject("root ::= \"a\")", SA_ERR_INVALID_ARG, "unbalanced ')'");
    expect_reject("root = \"a\"", SA_ERR_INVALID_ARG, "expected '::='");
    expect_reject("root ::= \"\\q\"", SA_ERR_INVALID_ARG, "unknown escape");
    expect_reject("root ::= \"\\xZZ\"", SA_ERR_INVALID_ARG, "not a hex digit");
    expect_reject("root ::= \"\\uD800\"", SA_ERR_INVALID_ARG, "not a Unicode scalar value");
    expect_reject("root ::= @", SA_ERR_INVALID_ARG, "unexpected character '@'");
    expect_reject("root ::= root \"a\" | \"b\"", SA_ERR_INVALID_ARG, "rule 'root' is left-recursive");
    expect_reject("root ::= x\nx ::= e x \"a\" | \"b\"\ne ::= \"\" | \"c\"", SA_ERR_INVALID_ARG,
                  "rule 'x' is left-recursive");
    expect_reject("root ::= \"a\" root", SA_ERR_INVALID_ARG, "rule 'root' can never finish");
    expect_reject("root ::= \"\xff\"", SA_ERR_INVALID_ARG, "invalid UTF-8");
    /* nesting bound */
    char deep[400] = "root ::= ";
    for (int i = 0; i < 70; i++) strcat(deep, "(");
    strcat(deep, "\"a\"");
    for (int i = 0; i < 70; i++) strcat(deep, ")");
    expect_reject(deep, SA_ERR_TOO_LARGE, "nested deeper than 64");
}

/* Does the grammar accept exactly this whole text (and may end after it)? */
static int full_match(struct grammar *g, const char *s)
{
    struct grammar_matcher *m;
    if (grammar_matcher_create(g, &m)) return -1;
    int ok = grammar_accept_bytes(m, (const uint8_t *)s, strlen(s)) == 0 && grammar_can_end(m);
    grammar_matcher_destroy(m);
    return ok;
}

static void test_matcher(void)
{
    struct grammar *g = compile_ok("# a comment\nroot ::= greet (\" \" name)? \"!\"*\n"
                                   "greet ::= \"hi\" | \"hello\"\nname ::= [A-Z] [a-z]+\n");
    if (!g) return;
    ASSERT_EQ(full_match(g, "hi"), 1);
    ASSERT_EQ(full_match(g, "hello Bob!!!"), 1);
    ASSERT_EQ(full_match(g, "hello B"), 0);  /* [a-z]+ needs one */
    ASSERT_EQ(full_match(g, "hello bob"), 0);
    ASSERT_EQ(full_match(g, "hell"), 0);
    ASSERT_EQ(full_match(g, "hi!x"), 0);
    ASSERT_EQ(full_match(g, ""), 0);
    /* incremental: prefix states */
    struct grammar_matcher *m;
    ASSERT_OK(grammar_matcher_create(g, &m));
    ASSERT_TRUE(!grammar_can_end(m));
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"he", 2));
    ASSERT_TRUE(!grammar_can_end(m));
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"x", 1), SA_ERR_INVALID_ARG);
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"llo", 3)); /* the failed byte changed nothing */
    ASSERT_TRUE(grammar_can_end(m));
    ASSERT_TRUE(!grammar_is_done(m));
    grammar_matcher_destroy(m);
    grammar_unref(g);

    /* a finite grammar is "done" at its end; UTF-8 classes and partial characters */
    g = compile_ok("root ::= [\\u00e0-\\u00ff] \"\xe2\x82\xac\" [^a]");
    if (!g) return;
    ASSERT_OK(grammar_matcher_create(g, &m));
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"a", 1), SA_ERR_INVALID_ARG);
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"\xc3", 1)); /* lead byte of U+00C0..U+00FF */
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"\x80", 1), SA_ERR_INVALID_ARG); /* U+00C0 < U+00E0 */
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"\xa9", 1));                     /* U+00E9 */
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"\xe2\x82\xad", 3), SA_ERR_INVALID_ARG);
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"\xe2\x82", 2));
    ASSERT_TRUE(!grammar_can_end(m));
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"\xac", 1));
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"a", 1), SA_ERR_INVALID_ARG);
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"\xed\xa0\x80", 3), SA_ERR_INVALID_ARG); /* a surrogate */
    ASSERT_EQ(grammar_accept_bytes(m, (const uint8_t *)"\xc0\xaf", 2), SA_ERR_INVALID_ARG);     /* overlong */
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"\xf0\x9f\x98\x80", 4)); /* U+1F600 is not 'a' */
    ASSERT_TRUE(grammar_is_done(m));
    grammar_matcher_destroy(m);
    grammar_unref(g);

    /* long repetitions keep the stacks flat (tail positions), nesting is bounded */
    g = compile_ok("root ::= \"[\" root \"]\" | \"x\"*");
    if (!g) return;
    ASSERT_OK(grammar_matcher_create(g, &m));
    for (int i = 0; i < 10000; i++) ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"x", 1));
    ASSERT_TRUE(grammar_can_end(m));
    grammar_matcher_reset(m);
    int depth = 0;
    while (depth < 1000 && grammar_accept_bytes(m, (const uint8_t *)"[", 1) == 0) depth++;
    ASSERT_TRUE(depth > 100 && depth < GRAMMAR_MAX_DEPTH); /* deeper is refused, not a crash */
    grammar_matcher_destroy(m);
    grammar_unref(g);

    /* an ambiguous grammar: the stacks are deduplicated */
    g = compile_ok("root ::= (\"a\" | \"a\" | [a-b])* \"c\"");
    if (!g) return;
    ASSERT_EQ(full_match(g, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaabac"), 1);
    grammar_unref(g);
    g = compile_ok("root ::= \"\"? \"\"{2,3} \"a\" \"\"{1}");
    if (!g) return;
    ASSERT_EQ(full_match(g, "a"), 1); /* empty items made optional or counted (found by fuzz_grammar) */
    grammar_unref(g);
    /* repeating what can match nothing would loop the matcher: refused, by name */
    expect_reject("root ::= \"a\" x\nx ::= (\"b\"?)*", SA_ERR_INVALID_ARG, "rule 'x' is left-recursive (or repeats");
    g = compile_ok("root ::= .* \"\\n\"");
    if (!g) return;
    ASSERT_EQ(full_match(g, "any \xe6\x97\xa5 text\n"), 1);
    grammar_unref(g);
}

/* ---- the mask against a brute-force scan ---- */

static struct tokenizer *load_tok(const char *rel)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/%s", test_shared_dir(), rel);
    struct gguf *gg;
    if (gguf_open_file(path, &gg, msg, sizeof msg)) {
        TEST_FAIL_("gguf_open_file(%s): %s", path, msg);
        return NULL;
    }
    struct tokenizer *t = NULL;
    if (tok_create(gg, &t, msg, sizeof msg)) TEST_FAIL_("tok_create(%s): %s", path, msg);
    gguf_close(gg);
    return t;
}

static const char *JSON_GBNF =
    "root ::= object\n"
    "value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
    "array ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]*)) (\".\" [0-9]+)? ([eE] [-+]? [0-9]+)? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static double mask_trie_ms, mask_brute_ms;
static long mask_steps;

/* Walk the grammar along text, comparing the two masks at every byte boundary. */
static void compare_masks(struct grammar *g, const struct grammar_vocab *v, const char *text)
{
    int32_t n = grammar_vocab_n_tokens(v);
    size_t words = ((size_t)n + 31) / 32;
    uint32_t *a = calloc(words, 4), *b = calloc(words, 4);
    struct grammar_matcher *m;
    if (!a || !b || grammar_matcher_create(g, &m)) {
        TEST_FAIL_("setup");
        free(a);
        free(b);
        return;
    }
    size_t len = strlen(text);
    for (size_t i = 0; i <= len; i++) {
        double t0 = now_ms();
        int32_t ca = grammar_mask(m, v, a);
        double t1 = now_ms();
        int32_t cb = grammar_mask_bruteforce(m, v, b);
        double t2 = now_ms();
        mask_trie_ms += t1 - t0;
        mask_brute_ms += t2 - t1;
        mask_steps++;
        ASSERT_EQ(ca, cb);
        if (memcmp(a, b, words * 4) != 0) {
            TEST_FAIL_("masks differ after %zu bytes of \"%s\"", i, text);
            break;
        }
        /* independent check of a few tokens: the mask says exactly what accepting them says */
        for (int32_t id = 0; id < n; id += 97) {
            uint32_t l;
            const uint8_t *bytes = grammar_vocab_bytes(v, id, &l);
            struct grammar_matcher *m2;
            if (grammar_matcher_create(g, &m2)) break;
            int ok = grammar_accept_bytes(m2, (const uint8_t *)text, i) == 0 && l > 0 &&
                     grammar_accept_bytes(m2, bytes, l) == 0;
            grammar_matcher_destroy(m2);
            if (ok != (int)((a[id >> 5] >> (id & 31)) & 1)) TEST_FAIL_("token %d after %zu bytes", id, i);
        }
        if (i < len && grammar_accept_bytes(m, (const uint8_t *)text + i, 1)) {
            TEST_FAIL_("text \"%s\" not accepted at byte %zu", text, i);
            break;
        }
    }
    grammar_matcher_destroy(m);
    free(a);
    free(b);
}

static void test_mask_vs_bruteforce(void)
{
    const char *vocabs[2] = {"models/stories260K/stories260K.gguf", "tokenizer-vectors/ggml-vocab-gpt-2.gguf"};
    struct grammar *json = compile_ok(JSON_GBNF);
    struct grammar *words = compile_ok("root ::= (\"Once\" | \"Lily\" | [a-z]+) (\" \" [a-z]+)* \".\"");
    struct grammar *utf = compile_ok("root ::= [\\u0400-\\u04ff\\u4e00-\\u9fff]+ \"!\"");
    if (!json || !words || !utf) return;
    for (int k = 0; k < 2; k++) {
        struct tokenizer *t = load_tok(vocabs[k]);
        if (!t) continue;
        struct grammar_vocab *v;
        ASSERT_OK(grammar_vocab_create(t, &v));
        ASSERT_EQ(grammar_vocab_n_tokens(v), tok_n_vocab(t));
        if (k == 1) mask_trie_ms = mask_brute_ms = 0, mask_steps = 0; /* the bench: the larger vocabulary */
        compare_masks(json, v, "{\"name\": \"Lily\", \"age\": -12.5e3, \"tags\": [true, null, {}], \"s\": \"a\\u00e9\\n\"}");
        compare_masks(words, v, "Once upon a time.");
        compare_masks(utf, v, "\xd0\x9f\xd1\x80\xe6\x97\xa5!");
        if (k == 1 && mask_steps)
            printf("grammar mask, GPT-2 vocab (%d tokens, %u trie nodes): %.3f ms/step with the trie vs %.3f ms "
                   "scanning every token (%.1fx), %ld steps\n",
                   tok_n_vocab(t), grammar_vocab_n_nodes(v), mask_trie_ms / mask_steps, mask_brute_ms / mask_steps,
                   mask_brute_ms / (mask_trie_ms > 0 ? mask_trie_ms : 1e-9), mask_steps);
        if (k == 1) { /* the best and the worst state: after a number's digit, and inside a string */
            static const char *at[2] = {"{\"a\": 1", "{\"a\": \"x"};
            for (int w = 0; w < 2; w++) {
                struct grammar_matcher *m;
                uint32_t *bits = calloc(((size_t)tok_n_vocab(t) + 31) / 32, 4);
                if (!bits || grammar_matcher_create(json, &m)) break;
                ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)at[w], strlen(at[w])));
                double t0 = now_ms();
                int32_t n_ok = 0;
                for (int rep = 0; rep < 20; rep++) n_ok = grammar_mask(m, v, bits);
                double t1 = now_ms();
                for (int rep = 0; rep < 5; rep++) grammar_mask_bruteforce(m, v, bits);
                double t2 = now_ms();
                printf("  after '%s': %d tokens allowed, %.3f ms (trie) vs %.3f ms (every token)\n", at[w], n_ok,
                       (t1 - t0) / 20, (t2 - t1) / 5);
                grammar_matcher_destroy(m);
                free(bits);
            }
        }
        grammar_vocab_destroy(v);
        tok_destroy(t);
    }
    grammar_unref(json);
    grammar_unref(words);
    grammar_unref(utf);
}

/* A vocabulary that cannot spell the grammar: the mask is empty (what
 * engine_grammar_compile refuses at compile time and the step thread turns
 * into an ERROR event); control tokens never count. */
static void test_mask_small_vocab(void)
{
    const char *texts[5] = {"<unk>", "<s>", "</s>", "a", "\xe2\x96\x81" "b"};
    uint32_t lens[5] = {5, 3, 4, 1, 4};
    uint8_t types[5] = {TOK_TYPE_UNKNOWN, TOK_TYPE_CONTROL, TOK_TYPE_CONTROL, TOK_TYPE_NORMAL, TOK_TYPE_NORMAL};
    struct tok_vocab tv = {.kind = TOK_KIND_SPM, .n_vocab = 5, .texts = texts, .lens = lens, .types = types,
                           .bos = 1, .eos = 2, .unk = 0, .prefix_mode = TOK_PREFIX_NONE};
    struct tokenizer *t = NULL;
    char msg[256];
    if (tok_create_vocab(&tv, &t, msg, sizeof msg)) {
        TEST_FAIL_("tok_create_vocab: %s", msg);
        return;
    }
    struct grammar_vocab *v;
    ASSERT_OK(grammar_vocab_create(t, &v));
    struct grammar *g = compile_ok("root ::= \"a\"+ \" b\" | \"c\"");
    struct grammar_matcher *m;
    if (!g || grammar_matcher_create(g, &m)) return;
    uint32_t bits[1];
    ASSERT_EQ(grammar_mask(m, v, bits), 1); /* "a" only: " b" cannot start, "c" has no token */
    ASSERT_EQ(bits[0], 1u << 3);
    ASSERT_OK(grammar_accept_bytes(m, (const uint8_t *)"a", 1));
    ASSERT_EQ(grammar_mask(m, v, bits), 2);
    ASSERT_EQ(bits[0], (1u << 3) | (1u << 4));
    grammar_matcher_destroy(m);
    grammar_unref(g);
    g = compile_ok("root ::= \"c\"");
    if (g && grammar_matcher_create(g, &m) == 0) {
        ASSERT_EQ(grammar_mask(m, v, bits), 0);
        ASSERT_EQ(bits[0], 0);
        ASSERT_TRUE(!grammar_can_end(m));
        grammar_matcher_destroy(m);
    }
    grammar_unref(g);
    grammar_vocab_destroy(v);
    tok_destroy(t);
}

/* ---- JSON schema -> GBNF ---- */

static char *schema_gbnf(const char *schema_json, int expect_rc, const char *needle)
{
    json_error_t je;
    json_t *s = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!s) {
        TEST_FAIL_("bad test schema %s: %s", schema_json, je.text);
        return NULL;
    }
    char *g = NULL, msg[256] = "";
    int rc = schema_to_gbnf(s, &g, msg, sizeof msg);
    json_decref(s);
    if (rc != expect_rc) TEST_FAIL_("schema %s: rc %d, expected %d (%s)", schema_json, rc, expect_rc, msg);
    if (needle && !strstr(msg, needle)) TEST_FAIL_("schema %s: message \"%s\" lacks \"%s\"", schema_json, msg, needle);
    return g;
}

static void test_schema_unsupported(void)
{
    static const struct {
        const char *schema, *needle;
        int rc;
    } cases[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "json_schema: 'pattern' is not supported (at #)", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\"}}}",
         "'format' is not supported (at #/properties/d)", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"number\",\"minimum\":0}", "'minimum' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"allOf\":[{}]}", "'allOf' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"not\":{}}", "'not' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"array\",\"prefixItems\":[]}", "'prefixItems' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "'uniqueItems' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", "'additionalProperties' other than",
         SA_ERR_UNSUPPORTED},
        {"{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}", "required property 'x' is not in 'properties'",
         SA_ERR_UNSUPPORTED},
        {"{\"$ref\":\"http://example.com/s.json\"}", "'$ref' http://example.com/s.json", SA_ERR_UNSUPPORTED},
        {"{\"$ref\":\"#/$defs/missing\"}", "'$ref' #/$defs/missing", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"date\"}", "type 'date' is not supported", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"string\",\"maxItems\":3}", "'maxItems' does not apply", SA_ERR_UNSUPPORTED},
        {"{\"type\":\"array\",\"maxItems\":1000}", "'maxItems' above 64", SA_ERR_UNSUPPORTED},
        {"{\"enum\":[1],\"type\":\"integer\"}", "combining 'enum'", SA_ERR_UNSUPPORTED},
        {"false", "matches nothing", SA_ERR_UNSUPPORTED},
        {"{\"enum\":[]}", "'enum' must be a non-empty array", SA_ERR_INVALID_ARG},
        {"{\"type\":\"array\",\"minItems\":-1}", "'minItems' must be a non-negative integer", SA_ERR_INVALID_ARG},
        {"{\"anyOf\":[{\"type\":\"string\"},{\"if\":{}}]}", "'if' is not supported (at #/anyOf/1)", SA_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) free(schema_gbnf(cases[i].schema, cases[i].rc, cases[i].needle));
    /* a recursion that can never end is refused by the grammar compiler, by name */
    char *g = schema_gbnf("{\"type\":\"object\",\"properties\":{\"c\":{\"$ref\":\"#\"}},\"required\":[\"c\"]}", 0, NULL);
    if (g) {
        struct grammar *gr = NULL;
        char msg[256] = "";
        ASSERT_EQ(grammar_compile(g, strlen(g), &gr, msg, sizeof msg), SA_ERR_INVALID_ARG);
        ASSERT_CONTAINS(msg, "can never finish");
        free(g);
    }
    /* response_format wrapper */
    static const struct {
        const char *rf, *needle;
    } bad[] = {
        {"{\"type\":\"json_schema\"}", "response_format.json_schema: must be an object"},
        {"{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{}}}", "response_format.json_schema.name: required"},
        {"{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"string\",\"pattern\":\"a\"}}}",
         "response_format.json_schema.schema: json_schema: 'pattern' is not supported"},
        {"{\"type\":\"xml\"}", "response_format.type: 'xml'"},
        {"{\"type\":\"json_object\",\"extra\":1}", "response_format.extra: not supported"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *rf = json_loads(bad[i].rf, 0, NULL);
        char *out = NULL, msg[256] = "";
        ASSERT_TRUE(schema_response_format_gbnf(rf, &out, msg, sizeof msg) != 0);
        ASSERT_CONTAINS(msg, bad[i].needle);
        ASSERT_TRUE(out == NULL);
        json_decref(rf);
    }
    json_t *rf = json_loads("{\"type\":\"text\"}", 0, NULL);
    char *out = (char *)1, msg[128];
    ASSERT_OK(schema_response_format_gbnf(rf, &out, msg, sizeof msg));
    ASSERT_TRUE(out == NULL);
    json_decref(rf);
}

/* Schemas for the conversion and the generation tests; each with instances that
 * must (valid) and must not (invalid) be accepted by its grammar. */
static const struct {
    const char *schema;
    const char *valid[4], *invalid[4];
} SCHEMAS[] = {
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":{\"type\":\"integer\"},"
     "\"happy\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
     {"{\"name\":\"Lily\",\"age\":3}", "{ \"name\": \"\", \"age\": -7, \"happy\": true }", NULL},
     {"{\"age\":3}", "{\"name\":\"Lily\"}", "{\"name\":\"Lily\",\"age\":3.5}", "{\"name\":\"aaaaaaaaaaaaa\",\"age\":1}"}},
    {"{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",3,null]},\"minItems\":1,\"maxItems\":3}",
     {"[\"red\"]", "[3, null, \"green\"]", NULL},
     {"[]", "[\"blue\"]", "[3,3,3,3]", NULL}},
    {"{\"$defs\":{\"pt\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},"
     "\"required\":[\"x\",\"y\"]}},\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/pt\"},"
     "\"b\":{\"anyOf\":[{\"$ref\":\"#/$defs/pt\"},{\"type\":\"null\"}]},\"kind\":{\"const\":\"line\"}},"
     "\"required\":[\"a\",\"b\",\"kind\"]}",
     {"{\"a\":{\"x\":1,\"y\":-2.5e3},\"b\":null,\"kind\":\"line\"}", "{\"a\":{\"x\":0,\"y\":0},\"b\":{\"x\":1,\"y\":2},\"kind\":\"line\"}", NULL},
     {"{\"a\":{\"x\":1},\"b\":null,\"kind\":\"line\"}", "{\"a\":{\"x\":1,\"y\":2},\"b\":null,\"kind\":\"box\"}", "{\"a\":{\"x\":01,\"y\":2},\"b\":null,\"kind\":\"line\"}", NULL}},
    {"{\"type\":\"object\",\"properties\":{\"tree\":{\"$ref\":\"#/$defs/node\"}},\"required\":[\"tree\"],"
     "\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"integer\",\"string\"]},"
     "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"v\"]}}}",
     {"{\"tree\":{\"v\":1}}", "{\"tree\":{\"v\":\"a\",\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}}", NULL},
     {"{\"tree\":{}}", "{\"tree\":{\"v\":true}}", "{\"tree\":{\"v\":1,\"kids\":[{\"v\":1},{\"v\":1},{\"v\":1}]}}", NULL}},
    {"{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"minLength\":2}},\"required\":[\"s\"]}",
     {"{\"s\":\"ab\"}", "{\"s\":\"a\\\"\\n\xc3\xa9\"}", NULL},
     {"{\"s\":\"a\"}", "{\"s\":\"a\nb\"}", NULL}},
};

static void test_schema_grammars(void)
{
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof *SCHEMAS; i++) {
        char *text = schema_gbnf(SCHEMAS[i].schema, 0, NULL);
        if (!text) continue;
        struct grammar *g = compile_ok(text);
        if (g) {
            for (int k = 0; k < 4 && SCHEMAS[i].valid[k]; k++)
                if (full_match(g, SCHEMAS[i].valid[k]) != 1) TEST_FAIL_("schema %zu rejects %s", i, SCHEMAS[i].valid[k]);
            for (int k = 0; k < 4 && SCHEMAS[i].invalid[k]; k++)
                if (full_match(g, SCHEMAS[i].invalid[k]) != 0) TEST_FAIL_("schema %zu accepts %s", i, SCHEMAS[i].invalid[k]);
        }
        grammar_unref(g);
        free(text);
    }
    struct grammar *g = compile_ok(schema_json_object_gbnf());
    if (!g) return;
    ASSERT_EQ(full_match(g, "{}"), 1);
    ASSERT_EQ(full_match(g, "{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"d\"}"), 1);
    ASSERT_EQ(full_match(g, "[1]"), 0);
    ASSERT_EQ(full_match(g, "{\"a\":1,}"), 0);
    ASSERT_EQ(full_match(g, "{\n        \"a\": 1\n}"), 1);
    ASSERT_EQ(full_match(g, "{  \"a\":1}"), 0);        /* two spaces */
    ASSERT_EQ(full_match(g, "{\n\n\"a\":1}"), 0);      /* two newlines */
    ASSERT_EQ(full_match(g, "{\n          \"a\":1}"), 0); /* more than 8 spaces of indentation */
    grammar_unref(g);
}

/* ---- generation through the engine, checked by an independent validator ---- */

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Does instance x satisfy schema s (the subset schema.h supports)? Written from
 * the JSON Schema spec, independently of the converter. */
static bool validate(json_t *x, json_t *s, json_t *root, int depth)
{
    if (depth > 64) return false;
    if (json_is_true(s)) return true;
    if (!json_is_object(s)) return false;
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const char *r = json_string_value(ref);
        if (!strcmp(r, "#")) return validate(x, root, root, depth + 1);
        if (!strncmp(r, "#/$defs/", 8))
            return validate(x, json_object_get(json_object_get(root, "$defs"), r + 8), root, depth + 1);
        if (!strncmp(r, "#/definitions/", 14))
            return validate(x, json_object_get(json_object_get(root, "definitions"), r + 14), root, depth + 1);
        return false;
    }
    json_t *v;
    if ((v = json_object_get(s, "const")) && !json_equal(x, v)) return false;
    if ((v = json_object_get(s, "enum"))) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(v); i++) found |= json_equal(x, json_array_get(v, i));
        if (!found) return false;
    }
    if ((v = json_object_get(s, "anyOf"))) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(v); i++) ok |= validate(x, json_array_get(v, i), root, depth + 1);
        if (!ok) return false;
    }
    if ((v = json_object_get(s, "oneOf"))) {
        int hits = 0;
        for (size_t i = 0; i < json_array_size(v); i++) hits += validate(x, json_array_get(v, i), root, depth + 1);
        if (hits != 1) return false;
    }
    if ((v = json_object_get(s, "type"))) {
        bool ok = false;
        for (size_t i = 0; i < (json_is_array(v) ? json_array_size(v) : 1); i++) {
            const char *t = json_string_value(json_is_array(v) ? json_array_get(v, i) : v);
            ok |= (!strcmp(t, "object") && json_is_object(x)) || (!strcmp(t, "array") && json_is_array(x)) ||
                  (!strcmp(t, "string") && json_is_string(x)) || (!strcmp(t, "integer") && json_is_integer(x)) ||
                  (!strcmp(t, "number") && json_is_number(x)) || (!strcmp(t, "boolean") && json_is_boolean(x)) ||
                  (!strcmp(t, "null") && json_is_null(x));
        }
        if (!ok) return false;
    }
    if (json_is_string(x)) {
        size_t n = utf8_len(json_string_value(x));
        if ((v = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(v)) return false;
        if ((v = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(v)) return false;
    }
    if (json_is_array(x)) {
        size_t n = json_array_size(x);
        if ((v = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(v)) return false;
        if ((v = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(v)) return false;
        if ((v = json_object_get(s, "items")))
            for (size_t i = 0; i < n; i++)
                if (!validate(json_array_get(x, i), v, root, depth + 1)) return false;
    }
    if (json_is_object(x)) {
        json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(x, json_string_value(json_array_get(req, i)))) return false;
        const char *k;
        json_t *val;
        json_object_foreach(x, k, val)
        {
            json_t *ps = props ? json_object_get(props, k) : NULL;
            if (ps && !validate(val, ps, root, depth + 1)) return false;
            if (!ps && json_is_false(json_object_get(s, "additionalProperties"))) return false;
        }
    }
    return true;
}

struct gen_out {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[8192];
    size_t n;
    bool done;
    struct engine_event last;
};

static void gen_cb(void *user, const struct engine_event *ev)
{
    struct gen_out *o = user;
    pthread_mutex_lock(&o->mu);
    if (ev->type == ENGINE_EV_TOKEN) {
        if (o->n + ev->text_len < sizeof o->text) {
            memcpy(o->text + o->n, ev->text, ev->text_len);
            o->n += ev->text_len;
            o->text[o->n] = 0;
        }
    } else {
        o->last = *ev;
        o->done = true;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
}

/* Generate under grammar text; returns the finish reason (-1 on an error event). */
static int generate(struct engine *e, struct grammar *g, const char *prompt, float temp, uint64_t seed,
                    uint32_t max_tokens, struct gen_out *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    int32_t *ids = NULL;
    size_t n = 0;
    if (engine_tokenize(e, prompt, strlen(prompt), true, false, &ids, &n)) return -2;
    struct engine_request r = {.prompt = ids, .n_prompt = n, .max_tokens = max_tokens, .grammar = g,
                               .cb = gen_cb, .user = o};
    r.sampling = sampler_default_params();
    r.sampling.temperature = temp;
    r.sampling.seed = seed;
    uint64_t id;
    int rc = engine_submit(e, &r, &id);
    free(ids);
    if (rc) return -3;
    pthread_mutex_lock(&o->mu);
    while (!o->done) pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    return o->last.type == ENGINE_EV_DONE ? (int)o->last.finish : -1;
}

static struct engine *start_engine(void)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.n_ctx = 512;
    cfg.share_spans = "off";
    cfg.debug_checks = true;
    struct engine *e = NULL;
    if (engine_create(&cfg, &e, msg, sizeof msg)) TEST_FAIL_("engine_create: %s", msg);
    return e;
}

static void test_engine_grammar_errors(void)
{
    struct engine *e = start_engine();
    if (!e) return;
    struct grammar *g = NULL;
    char msg[256] = "";
    ASSERT_EQ(engine_grammar_compile(e, "root ::= x", 10, &g, msg, sizeof msg), SA_ERR_INVALID_ARG);
    ASSERT_CONTAINS(msg, "rule 'x'");
    ASSERT_TRUE(g == NULL);
    /* a dead end at run time (nesting past GRAMMAR_MAX_DEPTH) is an ERROR event, not a loop */
    {
        size_t cap = 64 * 1024, n = 0;
        char *t = malloc(cap);
        n += (size_t)snprintf(t + n, cap - n, "root ::= r0\n");
        for (int k = 0; k < 300; k++) n += (size_t)snprintf(t + n, cap - n, "r%d ::= \"a\" r%d \"b\"\n", k, k + 1);
        n += (size_t)snprintf(t + n, cap - n, "r300 ::= \"c\"\n");
        ASSERT_OK(engine_grammar_compile(e, t, n, &g, msg, sizeof msg));
        free(t);
        struct gen_out o;
        ASSERT_EQ(generate(e, g, "Once", 0, 0, 400, &o), -1);
        ASSERT_EQ(o.last.error, SA_ERR_INVALID_ARG);
        ASSERT_TRUE(o.n >= 200 && o.n < GRAMMAR_MAX_DEPTH);
        engine_grammar_free(g);
    }
    /* a grammar that allows only the empty output finishes at once with "stop" */
    ASSERT_OK(engine_grammar_compile(e, "root ::= \"\"", 11, &g, msg, sizeof msg));
    struct gen_out o;
    ASSERT_EQ(generate(e, g, "Once", 0, 0, 20, &o), ENGINE_FINISH_STOP);
    ASSERT_EQ(o.n, 0);
    ASSERT_EQ(o.last.completion_tokens, 0);
    engine_grammar_free(g);
    /* a fixed string comes out exactly, then "stop" without an end-of-generation token */
    const char *fixed = "root ::= \"Lily and Ben {\\\"x\\\": 1}\"";
    ASSERT_OK(engine_grammar_compile(e, fixed, strlen(fixed), &g, msg, sizeof msg));
    ASSERT_EQ(generate(e, g, "Once upon a time", 0.8f, 7, 100, &o), ENGINE_FINISH_STOP);
    ASSERT_STR_EQ(o.text, "Lily and Ben {\"x\": 1}");
    engine_grammar_free(g);
    engine_destroy(e);
}

static void check_outputs(struct engine *e, const char *gbnf, json_t *schema, const char *what, int runs,
                          int *n_valid)
{
    struct grammar *g = NULL;
    char msg[256] = "";
    if (engine_grammar_compile(e, gbnf, strlen(gbnf), &g, msg, sizeof msg)) {
        TEST_FAIL_("%s: %s", what, msg);
        return;
    }
    for (int r = 0; r < runs; r++) {
        struct gen_out o;
        int f = generate(e, g, r % 2 ? "Once upon a time" : "{\"name\": \"", r ? 1.0f : 0.0f, (uint64_t)r + 1, 480, &o);
        if (f != ENGINE_FINISH_STOP) {
            /* a run cut by max_tokens is still a prefix the grammar accepts */
            struct grammar_matcher *m;
            ASSERT_OK(grammar_matcher_create(g, &m));
            if (f != ENGINE_FINISH_LENGTH || grammar_accept_bytes(m, (const uint8_t *)o.text, o.n) != 0)
                TEST_FAIL_("%s run %d: finish %d, text %s", what, r, f, o.text);
            grammar_matcher_destroy(m);
            continue;
        }
        json_error_t je;
        json_t *x = json_loadb(o.text, o.n, JSON_DECODE_ANY, &je);
        if (!x) {
            TEST_FAIL_("%s run %d: output does not parse (%s): %s", what, r, je.text, o.text);
            continue;
        }
        if (schema && !validate(x, schema, schema, 0)) TEST_FAIL_("%s run %d: output invalid: %s", what, r, o.text);
        if (!schema && !json_is_object(x)) TEST_FAIL_("%s run %d: not an object: %s", what, r, o.text);
        (*n_valid)++;
        if (r < 2) printf("  %s run %d (%u tokens): %s\n", what, r, o.last.completion_tokens, o.text);
        json_decref(x);
    }
    engine_grammar_free(g);
}

static void test_generate_valid_json(void)
{
    struct engine *e = start_engine();
    if (!e) return;
    int valid = 0, runs = 6;
    check_outputs(e, schema_json_object_gbnf(), NULL, "json_object", runs, &valid);
    int expect = runs;
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof *SCHEMAS; i++) {
        json_t *s = json_loads(SCHEMAS[i].schema, 0, NULL);
        char *text = NULL, msg[256];
        if (!s || schema_to_gbnf(s, &text, msg, sizeof msg)) {
            TEST_FAIL_("schema %zu", i);
        } else {
            char what[32];
            snprintf(what, sizeof what, "schema %zu", i);
            check_outputs(e, text, s, what, runs, &valid);
            expect += runs;
        }
        free(text);
        json_decref(s);
    }
    printf("generated %d of %d outputs complete, all parsed and valid\n", valid, expect);
    ASSERT_TRUE(valid >= expect / 2); /* most runs end by themselves within max_tokens */
    engine_destroy(e);
}

int main(void)
{
    TEST_RUN(test_parse_rejects);
    TEST_RUN(test_matcher);
    TEST_RUN(test_mask_vs_bruteforce);
    TEST_RUN(test_mask_small_vocab);
    TEST_RUN(test_schema_unsupported);
    TEST_RUN(test_schema_grammars);
    TEST_RUN(test_engine_grammar_errors);
    TEST_RUN(test_generate_valid_json);
    TEST_DONE();
}
