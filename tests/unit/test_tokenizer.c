/*
 * test_tokenizer.c - conformance, round trips, streaming and hostile vocabularies.
 *
 * Conformance: every shared/tokenizer-vectors/X.gguf with X.gguf.inp and
 * X.gguf.out (llama.cpp's test-tokenizer-0 format: test strings separated by
 * "\n__ggml_vocab_test__\n", one line of space-separated ids per test) must
 * be reproduced exactly with add_special = false, parse_special = false.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "engine/errors.h"
#include "engine/gguf.h"
#include "engine/log.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "tests/test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PERF_LIMIT_S 20.0 /* sanitizers slow everything down several times */
#else
#define PERF_LIMIT_S 1.0
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Whole file into a malloc'd, NUL-terminated buffer; NULL if unreadable. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *q = realloc(buf, cap);
            if (!q) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = q;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Open a GGUF file and build its tokenizer; NULL (with a test failure) on error. */
static struct tokenizer *open_tok(const char *path, struct gguf **g_out)
{
    char msg[256];
    struct gguf *g = NULL;
    int rc = gguf_open_file(path, &g, msg, sizeof msg);
    if (rc) {
        TEST_FAIL_("gguf_open_file(%s): %s", path, msg);
        return NULL;
    }
    struct tokenizer *t = NULL;
    rc = tok_create(g, &t, msg, sizeof msg);
    if (rc) {
        TEST_FAIL_("tok_create(%s): %s", path, msg);
        gguf_close(g);
        return NULL;
    }
    if (g_out) *g_out = g;
    else gguf_close(g);
    return t;
}

static struct tokenizer *open_vocab(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer-vectors/ggml-vocab-%s.gguf", test_shared_dir(), name);
    return open_tok(path, NULL);
}

/* Encode into a malloc'd array (*n ids); NULL on error (reported). */
static int32_t *encode(const struct tokenizer *t, const char *s, size_t len, bool add_special,
                       bool parse_special, size_t *n)
{
    size_t cap = len + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return NULL;
    int rc = tok_encode(t, s, len, add_special, parse_special, ids, cap, n);
    if (rc == SA_ERR_RANGE) {
        int32_t *q = realloc(ids, (*n ? *n : 1) * sizeof *ids);
        if (!q) {
            free(ids);
            return NULL;
        }
        ids = q;
        cap = *n;
        rc = tok_encode(t, s, len, add_special, parse_special, ids, cap, n);
    }
    if (rc) {
        TEST_FAIL_("tok_encode: %s", sa_err_name(rc));
        free(ids);
        return NULL;
    }
    return ids;
}

static void print_escaped(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F) fputc(c, f);
        else fprintf(f, "\\x%02X", c);
    }
}

/* ---- conformance ---- */

#define SEPARATOR "\n__ggml_vocab_test__\n"

/* Run one vocabulary's vectors; returns cases passed, *total gets the count. */
static int run_vectors(const char *dir, const char *gguf_name, int *total)
{
    char path[1300];
    *total = 0;
    snprintf(path, sizeof path, "%.1000s/%.200s", dir, gguf_name);
    struct tokenizer *t = open_tok(path, NULL);
    if (!t) return 0;
    size_t inp_len;
    snprintf(path, sizeof path, "%.1000s/%.200s.inp", dir, gguf_name);
    char *inp = slurp(path, &inp_len);
    snprintf(path, sizeof path, "%.1000s/%.200s.out", dir, gguf_name);
    char *outp = slurp(path, NULL);
    if (!inp || !outp) {
        TEST_FAIL_("%s: missing .inp or .out", gguf_name);
        free(inp);
        free(outp);
        tok_destroy(t);
        return 0;
    }
    int passed = 0;
    char *cur = inp, *line = outp;
    for (;;) {
        char *sep = strstr(cur, SEPARATOR);
        if (!sep) break; /* the file ends with a separator: nothing follows */
        size_t len = (size_t)(sep - cur);
        char *eol = strchr(line, '\n');
        if (!eol) {
            TEST_FAIL_("%s: .out has fewer lines than .inp has tests", gguf_name);
            break;
        }
        *eol = 0;
        int32_t want[512];
        size_t n_want = 0;
        for (char *p = line, *end; n_want < 512; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[n_want++] = (int32_t)v;
        }
        size_t n_got = 0;
        int32_t *got = encode(t, cur, len, false, false, &n_got);
        bool ok = got && n_got == n_want && memcmp(got, want, n_want * sizeof *want) == 0;
        if (ok) {
            passed++;
        } else {
            fprintf(stderr, "  %s case %d: \"", gguf_name, *total);
            print_escaped(stderr, cur, len);
            fprintf(stderr, "\"\n    want:");
            for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n    got: ");
            for (size_t i = 0; got && i < n_got; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
        }
        free(got);
        (*total)++;
        cur = sep + strlen(SEPARATOR);
        line = eol + 1;
    }
    free(inp);
    free(outp);
    tok_destroy(t);
    return passed;
}

static void test_conformance_vectors(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tokenizer-vectors", test_shared_dir());
    DIR *d = opendir(dir);
    if (!d) {
        TEST_FAIL_("cannot open %s (set SHARED)", dir);
        return;
    }
    char names[32][256];
    int n_names = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n_names < 32) {
        size_t n = strlen(de->d_name);
        if (n > 5 && n < 200 && strcmp(de->d_name + n - 5, ".gguf") == 0)
            memcpy(names[n_names++], de->d_name, n + 1);
    }
    closedir(d);
    /* sorted, for a stable report */
    for (int i = 1; i < n_names; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char tmp[256];
            memcpy(tmp, names[j], sizeof tmp);
            memcpy(names[j], names[j - 1], sizeof tmp);
            memcpy(names[j - 1], tmp, sizeof tmp);
        }
    ASSERT_TRUE(n_names >= 6); /* llama-spm, gpt-2, deepseek-llm, deepseek-coder, falcon, mpt */
    for (int i = 0; i < n_names; i++) {
        double t0 = now_s();
        int total = 0;
        int passed = run_vectors(dir, names[i], &total);
        const char *vocab = names[i]; /* "ggml-vocab-X.gguf" is reported as "X" */
        size_t vlen = strlen(vocab) - 5;
        if (strncmp(vocab, "ggml-vocab-", 11) == 0) {
            vocab += 11;
            vlen -= 11;
        }
        fprintf(stderr, "  vocab %.*s: %d/%d (%.0f ms incl. load)\n", (int)vlen, vocab, passed, total,
                (now_s() - t0) * 1e3);
        ASSERT_EQ(total, 46);
        ASSERT_EQ(passed, total);
    }
}

/* ---- round trips ---- */

static const char *const round_trip_texts[] = {
    "Hello world",
    " Hello world",
    "  two leading spaces, and  double  spaces inside  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "F\xC3\xBChrer \xC3\xA4pfel na\xC3\xAFve caf\xC3\xA9",
    "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE \xD0\xBD\xD0\xB0 \xD0\x91\xD1\x8A\xD0\xBB\xD0\xB3\xD0\xB0\xD1\x80\xD1\x81\xD0\xBA\xD0\xB8",
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
    "\xF0\x9F\xA6\x99 llama \xF0\x9F\x9A\x80 rocket",
    "\xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F zwj emoji",
    "I've been 'told he's there, 'RE you sure? 3.14159 == 333 + 0.14159",
    "<s> and </s> and <|endoftext|> as plain text",
    "\xE1\x9E\x80\xE1\x9E\xB6\xE1\x9E\x93\xE1\x9F\x8B khmer",
    "x",
};

static void round_trip_vocab(const char *name)
{
    struct tokenizer *t = open_vocab(name);
    if (!t) return;
    for (size_t i = 0; i < sizeof round_trip_texts / sizeof round_trip_texts[0]; i++) {
        const char *s = round_trip_texts[i];
        for (int with_bos = 0; with_bos < 2; with_bos++) {
            size_t n;
            int32_t *ids = encode(t, s, strlen(s), with_bos, false, &n);
            if (!ids) continue;
            char *back = tok_decode(t, ids, n, true);
            if (!back || strcmp(back, s) != 0) {
                fprintf(stderr, "  %s (bos %d): \"", name, with_bos);
                print_escaped(stderr, s, strlen(s));
                fprintf(stderr, "\" -> \"");
                if (back) print_escaped(stderr, back, strlen(back));
                fprintf(stderr, "\"\n");
            }
            ASSERT_STR_EQ(back, s);
            free(back);
            free(ids);
        }
    }
    tok_destroy(t);
}

static void test_round_trip(void)
{
    static const char *const vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "deepseek-coder",
                                         "falcon", "mpt"};
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) round_trip_vocab(vocabs[i]);
}

/* Random valid UTF-8 strings round-trip exactly on every vocabulary (U+2581
 * is left out: SPM reads it as a space, as SentencePiece does). */
static void test_random_round_trip(void)
{
    static const char *const pool[] = {
        "a", "Z", "q", "0", "7", " ", " ", "  ", "\n", "\t", "\r\n", ".", ",", "'", "'s", "!", "$", "<",
        "\xC3\xA9", "\xC3\xBC", "\xC3\xB5", "\xE6\x97\xA5", "\xF0\x9F\xA6\x99", "\xCC\x81",
        "\xC2\xA0", "\xE3\x80\x80", "\xC2\x85", "\xE2\x80\x8D", "\xD0\x96", "\xE0\xA4\x95",
        "<s>", "</s>", "<|endoftext|>", "\xEF\xBF\xBD", "\x01", "\x7F", "3333",
    };
    static const char *const vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "deepseek-coder",
                                         "falcon", "mpt"};
    uint32_t rng = 99;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        struct tokenizer *t = open_vocab(vocabs[v]);
        if (!t) continue;
        int bad = 0;
        for (int iter = 0; iter < 300; iter++) {
            char text[512];
            size_t len = 0;
            rng = rng * 1664525u + 1013904223u;
            int parts = (int)((rng >> 16) % 24);
            for (int k = 0; k < parts; k++) {
                rng = rng * 1664525u + 1013904223u;
                const char *p = pool[(rng >> 8) % (sizeof pool / sizeof pool[0])];
                memcpy(text + len, p, strlen(p));
                len += strlen(p);
            }
            text[len] = 0;
            size_t n;
            int32_t *ids = encode(t, text, len, iter % 2 == 0, false, &n);
            char *back = ids ? tok_decode(t, ids, n, true) : NULL;
            if (!back || strcmp(back, text) != 0) {
                if (bad++ < 3) {
                    fprintf(stderr, "  %s: \"", vocabs[v]);
                    print_escaped(stderr, text, len);
                    fprintf(stderr, "\" -> \"");
                    if (back) print_escaped(stderr, back, strlen(back));
                    fprintf(stderr, "\"\n");
                }
            }
            free(back);
            free(ids);
        }
        ASSERT_EQ(bad, 0);
        tok_destroy(t);
    }
}

/* Invalid UTF-8 input is encoded byte-wise and decodes with U+FFFD. */
static void test_invalid_utf8_input(void)
{
    static const char *const vocabs[] = {"llama-spm", "gpt-2"};
    static const char text[] = "ok \xFF\xC3( \xE2\x82 end\xF0";
    for (size_t v = 0; v < 2; v++) {
        struct tokenizer *t = open_vocab(vocabs[v]);
        if (!t) continue;
        size_t n;
        int32_t *ids = encode(t, text, sizeof text - 1, false, false, &n);
        ASSERT_TRUE(ids && n > 0);
        char *back = ids ? tok_decode(t, ids, n, true) : NULL;
        ASSERT_STR_EQ(back, "ok \xEF\xBF\xBD\xEF\xBF\xBD( \xEF\xBF\xBD end\xEF\xBF\xBD");
        free(back);
        free(ids);
        tok_destroy(t);
    }
}

/* ---- the stories260K model's vocabulary ---- */

static void test_stories260k(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct tokenizer *t = open_tok(path, NULL);
    if (!t) return;
    ASSERT_EQ(tok_kind(t), TOK_KIND_SPM);
    ASSERT_EQ(tok_n_vocab(t), 512);
    ASSERT_EQ(tok_bos(t), 1);
    ASSERT_EQ(tok_eos(t), 2);
    ASSERT_TRUE(tok_add_bos(t));
    ASSERT_TRUE(tok_is_eog(t, 2));
    ASSERT_TRUE(!tok_is_eog(t, 1));
    ASSERT_EQ(tok_token_type(t, 3), TOK_TYPE_BYTE);
    ASSERT_STR_EQ(tok_piece(t, 3), "<0x00>");
    ASSERT_TRUE(tok_piece(t, 512) == NULL && tok_piece(t, -1) == NULL);
    ASSERT_EQ(tok_find(t, "<s>"), 1);
    ASSERT_EQ(tok_find(t, "no such piece"), -1);

    const char *prompt = "Once upon a time";
    size_t n;
    int32_t *ids = encode(t, prompt, strlen(prompt), true, false, &n);
    if (ids) {
        /* the ids the model itself generates for these words (ASSETS.md) */
        static const int32_t want[] = {1, 403, 407, 261, 378};
        ASSERT_EQ(n, 5);
        for (size_t i = 0; i < n && i < 5; i++) ASSERT_EQ(ids[i], want[i]);
        char *back = tok_decode(t, ids, n, true);
        ASSERT_STR_EQ(back, prompt);
        free(back);
        /* without the leading-space rule the SPM space shows */
        back = tok_decode(t, ids, n, false);
        ASSERT_STR_EQ(back, " Once upon a time");
        free(back);
        /* the count is reported even when out is too small */
        int32_t one;
        size_t need = 0;
        ASSERT_EQ(tok_encode(t, prompt, strlen(prompt), true, false, &one, 1, &need), SA_ERR_RANGE);
        ASSERT_EQ(need, n);
        ASSERT_EQ(one, 1);
        ASSERT_EQ(tok_encode(t, prompt, strlen(prompt), true, false, NULL, 0, &need), SA_ERR_RANGE);
        free(ids);
    }
    /* the first greedy tokens of stories260K (ASSETS.md) decode to the documented story */
    static const int32_t gen[] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                  426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                  295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};
    char *story = tok_decode(t, gen, sizeof gen / sizeof gen[0], true);
    ASSERT_TRUE(story && strncmp(story, "Once upon a time, there was a little girl named Lily.", 53) == 0);
    free(story);
    /* empty text: just BOS with add_special, nothing without */
    ids = encode(t, "", 0, true, false, &n);
    ASSERT_TRUE(ids && n == 1 && ids[0] == 1);
    free(ids);
    ids = encode(t, "", 0, false, false, &n);
    ASSERT_TRUE(ids && n == 0);
    free(ids);
    /* parse_special recognises control texts */
    ids = encode(t, "<s>hi</s>", 9, false, true, &n);
    ASSERT_TRUE(ids && n >= 3 && ids[0] == 1 && ids[n - 1] == 2);
    free(ids);
    ids = encode(t, "<s>", 3, false, false, &n);
    ASSERT_TRUE(ids && n > 1); /* plain text: several pieces, no control id */
    for (size_t i = 0; ids && i < n; i++) ASSERT_NE(ids[i], 1);
    free(ids);
    tok_destroy(t);
}

/* ---- streaming detokenizer ---- */

/* Push ids one at a time; each push must be valid UTF-8 and the concatenation
 * plus the flush must equal tok_decode. */
static void check_stream(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip)
{
    char *whole = tok_decode(t, ids, n, skip);
    size_t cap = 3 * (tok_max_piece_len(t) + 3) + 1;
    char *piece = malloc(cap);
    char *acc = malloc(n * cap + cap + 1);
    if (!whole || !piece || !acc) {
        TEST_FAIL_("out of memory");
        free(whole);
        free(piece);
        free(acc);
        return;
    }
    size_t k = 0;
    struct tok_stream s;
    tok_stream_init(&s, t, skip);
    for (size_t i = 0; i < n; i++) {
        size_t len = tok_stream_push(&s, ids[i], piece, cap);
        ASSERT_TRUE(len < cap && piece[len] == 0);
        ASSERT_TRUE(utf8_valid((const unsigned char *)piece, len));
        memcpy(acc + k, piece, len);
        k += len;
    }
    size_t len = tok_stream_flush(&s, piece, cap);
    ASSERT_TRUE(utf8_valid((const unsigned char *)piece, len));
    memcpy(acc + k, piece, len);
    k += len;
    acc[k] = 0;
    ASSERT_TRUE(utf8_valid((const unsigned char *)whole, strlen(whole)));
    ASSERT_STR_EQ(acc, whole);
    free(whole);
    free(piece);
    free(acc);
}

static void test_stream(void)
{
    static const char *const texts[] = {
        "\xF0\x9F\xA6\x99",
        "Hello \xF0\x9F\xA6\x99 world \xF0\x9F\x9A\x80!",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
        "\xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F ok",
        "\xE1\x9E\x80\xE1\x9E\xB6\xE1\x9E\x93\xE1\x9F\x8B",
    };
    static const char *const vocabs[] = {"llama-spm", "gpt-2"};
    for (size_t v = 0; v < 2; v++) {
        struct tokenizer *t = open_vocab(vocabs[v]);
        if (!t) continue;
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            size_t n;
            int32_t *ids = encode(t, texts[i], strlen(texts[i]), false, false, &n);
            if (!ids) continue;
            check_stream(t, ids, n, true);
            check_stream(t, ids, n, false);
            free(ids);
        }
        tok_destroy(t);
    }

    struct tokenizer *t = open_vocab("llama-spm");
    if (!t) return;
    int32_t f0 = tok_find(t, "<0xF0>"), x9f = tok_find(t, "<0x9F>"), xa6 = tok_find(t, "<0xA6>"),
            x99 = tok_find(t, "<0x99>"), hello = tok_find(t, "\xE2\x96\x81Hello");
    ASSERT_TRUE(f0 >= 0 && x9f >= 0 && xa6 >= 0 && x99 >= 0 && hello >= 0);
    /* the emoji arrives byte by byte: nothing until its last byte */
    {
        struct tok_stream s;
        char out[64];
        tok_stream_init(&s, t, true);
        ASSERT_EQ(tok_stream_push(&s, hello, out, sizeof out), 5);
        ASSERT_STR_EQ(out, "Hello");
        ASSERT_EQ(tok_stream_push(&s, f0, out, sizeof out), 0);
        ASSERT_EQ(tok_stream_push(&s, x9f, out, sizeof out), 0);
        ASSERT_EQ(tok_stream_push(&s, xa6, out, sizeof out), 0);
        ASSERT_EQ(tok_stream_push(&s, x99, out, sizeof out), 4);
        ASSERT_STR_EQ(out, "\xF0\x9F\xA6\x99");
        ASSERT_EQ(tok_stream_flush(&s, out, sizeof out), 0);
    }
    /* cut short: the flush turns the partial character into U+FFFD */
    {
        int32_t ids[] = {hello, f0, x9f};
        check_stream(t, ids, 3, true);
        char *s = tok_decode(t, ids, 3, true);
        ASSERT_STR_EQ(s, "Hello\xEF\xBF\xBD");
        free(s);
        int32_t ids2[] = {f0, hello, x99, x99};
        check_stream(t, ids2, 4, false);
        s = tok_decode(t, ids2, 4, false);
        ASSERT_STR_EQ(s, "\xEF\xBF\xBD Hello\xEF\xBF\xBD\xEF\xBF\xBD");
        free(s);
    }
    /* random mixtures of byte tokens and pieces */
    uint32_t rng = 12345;
    for (int iter = 0; iter < 2000; iter++) {
        int32_t ids[24];
        size_t n = 1 + iter % 24;
        for (size_t i = 0; i < n; i++) {
            rng = rng * 1664525u + 1013904223u;
            uint32_t r = rng >> 8;
            if (r % 4 == 0) ids[i] = (int32_t)(r % (uint32_t)tok_n_vocab(t)); /* any piece */
            else if (r % 4 == 1) ids[i] = 3 + 0x80 + (int32_t)(r % 64);      /* continuation bytes */
            else ids[i] = 3 + 0xC0 + (int32_t)(r % 64);                       /* lead bytes, incl. bad ones */
        }
        check_stream(t, ids, n, iter % 2 == 0);
    }
    /* a tiny buffer cuts before a character, never inside one */
    {
        struct tok_stream s;
        char out[3];
        tok_stream_init(&s, t, false);
        size_t len = tok_stream_push(&s, hello, out, sizeof out);
        ASSERT_EQ(len, 2);
        ASSERT_STR_EQ(out, " H");
    }
    /* out-of-range ids render nothing */
    {
        char buf[8];
        ASSERT_EQ(tok_token_to_bytes(t, -1, true, buf, sizeof buf), 0);
        ASSERT_EQ(tok_token_to_bytes(t, tok_n_vocab(t), true, buf, sizeof buf), 0);
        ASSERT_EQ(tok_token_to_bytes(t, 1, false, buf, sizeof buf), 0); /* <s> is control */
        ASSERT_EQ(tok_token_to_bytes(t, 1, true, buf, sizeof buf), 3);
        ASSERT_EQ(tok_token_to_bytes(t, hello, false, buf, 2), 6); /* " Hello", 2 written */
        ASSERT_TRUE(buf[0] == ' ' && buf[1] == 'H');
    }
    tok_destroy(t);
}

/* ---- hostile vocabularies ---- */

/* A minimal GGUF writer: header, KV entries, no tensors. */
struct gw {
    unsigned char *b;
    size_t n, cap;
    uint64_t n_kv;
};

static void gw_bytes(struct gw *w, const void *p, size_t n)
{
    if (w->n + n > w->cap) {
        size_t nc = w->cap ? w->cap : 256;
        while (nc < w->n + n) nc *= 2;
        unsigned char *q = realloc(w->b, nc);
        if (!q) abort();
        w->b = q;
        w->cap = nc;
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void gw_u32(struct gw *w, uint32_t v) { gw_bytes(w, &v, 4); }
static void gw_u64(struct gw *w, uint64_t v) { gw_bytes(w, &v, 8); }

static void gw_str(struct gw *w, const char *s)
{
    gw_u64(w, strlen(s));
    gw_bytes(w, s, strlen(s));
}

static void gw_begin(struct gw *w)
{
    memset(w, 0, sizeof *w);
    gw_bytes(w, "GGUF", 4);
    gw_u32(w, 3);
    gw_u64(w, 0); /* tensors */
    gw_u64(w, 0); /* kv count, patched by gw_end */
}

static void gw_end(struct gw *w) { memcpy(w->b + 16, &w->n_kv, 8); }

static void kv_key(struct gw *w, const char *key, uint32_t type)
{
    gw_str(w, key);
    gw_u32(w, type);
    w->n_kv++;
}

static void kv_string(struct gw *w, const char *key, const char *v)
{
    kv_key(w, key, GGUF_TYPE_STRING);
    gw_str(w, v);
}

static void kv_u32(struct gw *w, const char *key, uint32_t v)
{
    kv_key(w, key, GGUF_TYPE_UINT32);
    gw_u32(w, v);
}

static void kv_i32(struct gw *w, const char *key, int32_t v)
{
    kv_key(w, key, GGUF_TYPE_INT32);
    gw_bytes(w, &v, 4);
}

static void kv_strs(struct gw *w, const char *key, const char *const *v, size_t n)
{
    kv_key(w, key, GGUF_TYPE_ARRAY);
    gw_u32(w, GGUF_TYPE_STRING);
    gw_u64(w, n);
    for (size_t i = 0; i < n; i++) gw_str(w, v[i]);
}

/* Numeric array: n elements of elem_size bytes each from p. */
static void kv_arr(struct gw *w, const char *key, uint32_t elem_type, const void *p, size_t elem_size,
                   size_t n)
{
    kv_key(w, key, GGUF_TYPE_ARRAY);
    gw_u32(w, elem_type);
    gw_u64(w, n);
    gw_bytes(w, p, elem_size * n);
}

/* The pieces of the minimal SPM vocabulary. */
#define SPM_N 9
static const char *const spm_tokens[SPM_N] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b",
                                               ("\xE2\x96\x81" "a"), "ab", "<0x41>"};
static const float spm_scores[SPM_N] = {0, 0, 0, -3, -4, -5, -1, -2, 0};
static const int32_t spm_types[SPM_N] = {2, 3, 3, 1, 1, 1, 1, 1, 6};

/* What to break in the SPM vocabulary. */
enum spm_defect {
    SPM_OK, SPM_BOS_N_VOCAB, SPM_SCORES_U8, SPM_TYPES_I8, SPM_BYTE_MINUS1, SPM_BYTE_ZZ, SPM_BYTE_100,
    SPM_BYTE_LOWER, SPM_NO_TOKENS, SPM_SCORES_SHORT, SPM_TOKENS_I32, SPM_NO_MODEL, SPM_MODEL_BERT,
    SPM_BOS_STRING, SPM_UNSET_IDS
};

static void build_spm(struct gw *w, enum spm_defect d)
{
    gw_begin(w);
    if (d != SPM_NO_MODEL) kv_string(w, "tokenizer.ggml.model", d == SPM_MODEL_BERT ? "bert" : "llama");
    const char *toks[SPM_N];
    memcpy(toks, spm_tokens, sizeof toks);
    if (d == SPM_BYTE_MINUS1) toks[8] = "<0x-1>";
    if (d == SPM_BYTE_ZZ) toks[8] = "<0xZZ>";
    if (d == SPM_BYTE_100) toks[8] = "<0x100>";
    if (d == SPM_BYTE_LOWER) toks[8] = "<0xab>";
    if (d == SPM_TOKENS_I32) kv_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, spm_types, 4, SPM_N);
    else if (d != SPM_NO_TOKENS) kv_strs(w, "tokenizer.ggml.tokens", toks, SPM_N);
    if (d == SPM_SCORES_U8) {
        uint8_t u8[SPM_N] = {0};
        kv_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_UINT8, u8, 1, SPM_N);
    } else {
        kv_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, spm_scores, 4,
               d == SPM_SCORES_SHORT ? SPM_N - 1 : SPM_N);
    }
    if (d == SPM_TYPES_I8) {
        int8_t i8[SPM_N];
        for (int i = 0; i < SPM_N; i++) i8[i] = (int8_t)spm_types[i];
        kv_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT8, i8, 1, SPM_N);
    } else {
        kv_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, spm_types, 4, SPM_N);
    }
    if (d == SPM_BOS_STRING) kv_string(w, "tokenizer.ggml.bos_token_id", "1");
    else kv_u32(w, "tokenizer.ggml.bos_token_id", d == SPM_BOS_N_VOCAB ? SPM_N : 1);
    if (d == SPM_UNSET_IDS) {
        kv_u32(w, "tokenizer.ggml.eos_token_id", 0xFFFFFFFFu);
        kv_i32(w, "tokenizer.ggml.padding_token_id", -1);
    } else {
        kv_u32(w, "tokenizer.ggml.eos_token_id", 2);
    }
    gw_end(w);
}

/* Open the buffer and create a tokenizer; returns tok_create's code. */
static int try_create(const struct gw *w, struct tokenizer **t, char *msg, size_t msg_len)
{
    struct gguf *g = NULL;
    *t = NULL;
    msg[0] = 0;
    int rc = gguf_open_memory(w->b, w->n, &g, msg, msg_len);
    if (rc) {
        TEST_FAIL_("gguf_open_memory: %s", msg);
        return rc;
    }
    rc = tok_create(g, t, msg, msg_len);
    gguf_close(g); /* the tokenizer keeps copies */
    return rc;
}

static void expect_reject(enum spm_defect d, int code, const char *key)
{
    struct gw w;
    build_spm(&w, d);
    struct tokenizer *t;
    char msg[256];
    int rc = try_create(&w, &t, msg, sizeof msg);
    ASSERT_EQ(rc, code);
    ASSERT_TRUE(t == NULL);
    ASSERT_CONTAINS(msg, key);
    tok_destroy(t);
    free(w.b);
}

/* Every single-byte corruption of a vocabulary file (flip the low bit, set
 * 0xFF, set 0x00): loading may fail but never crashes, and whatever loads
 * encodes and decodes (the sanitizer build checks the memory accesses). */
static void corrupt_each_byte(const struct gw *w)
{
    unsigned char *copy = malloc(w->n);
    if (!copy) return;
    for (size_t i = 0; i < w->n; i++) {
        for (int k = 0; k < 3; k++) {
            char msg[256];
            memcpy(copy, w->b, w->n);
            if (k == 0) copy[i] ^= 0x01;
            else copy[i] = k == 1 ? 0xFF : 0x00;
            struct gguf *g = NULL;
            if (gguf_open_memory(copy, w->n, &g, msg, sizeof msg) != 0) continue;
            struct tokenizer *t = NULL;
            if (tok_create(g, &t, msg, sizeof msg) == 0) {
                static const char text[] = "ab a AC <s> \xC4\xA0 <|endoftext|>\xF0\x9F";
                int32_t ids[64];
                size_t n = 0;
                tok_encode(t, text, sizeof text - 1, true, true, ids, 64, &n);
                char *s = tok_decode(t, ids, n < 64 ? n : 64, true);
                ASSERT_TRUE(s != NULL);
                free(s);
            }
            tok_destroy(t);
            gguf_close(g);
        }
    }
    free(copy);
}

static void test_hostile_spm(void)
{
    expect_reject(SPM_BOS_N_VOCAB, SA_ERR_BAD_MODEL, "tokenizer.ggml.bos_token_id");
    expect_reject(SPM_SCORES_U8, SA_ERR_BAD_MODEL, "tokenizer.ggml.scores");
    expect_reject(SPM_TYPES_I8, SA_ERR_BAD_MODEL, "tokenizer.ggml.token_type");
    expect_reject(SPM_BYTE_MINUS1, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_BYTE_ZZ, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_BYTE_100, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_BYTE_LOWER, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_NO_TOKENS, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_TOKENS_I32, SA_ERR_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_reject(SPM_SCORES_SHORT, SA_ERR_BAD_MODEL, "tokenizer.ggml.scores");
    expect_reject(SPM_NO_MODEL, SA_ERR_BAD_MODEL, "tokenizer.ggml.model");
    expect_reject(SPM_MODEL_BERT, SA_ERR_UNSUPPORTED, "tokenizer.ggml.model");
    expect_reject(SPM_BOS_STRING, SA_ERR_BAD_MODEL, "tokenizer.ggml.bos_token_id");

    struct gw w;
    struct tokenizer *t;
    char msg[256];
    build_spm(&w, SPM_UNSET_IDS);
    ASSERT_OK(try_create(&w, &t, msg, sizeof msg));
    if (t) {
        ASSERT_EQ(tok_eos(t), -1);
        ASSERT_TRUE(!tok_is_eog(t, 2));
    }
    tok_destroy(t);
    free(w.b);

    /* the minimal valid vocabulary works */
    build_spm(&w, SPM_OK);
    ASSERT_OK(try_create(&w, &t, msg, sizeof msg));
    if (t) {
        int32_t ids[16];
        size_t n;
        /* "▁a" (-1) merges before "ab" (-2): ▁a b ▁a */
        ASSERT_OK(tok_encode(t, "ab a", 4, false, false, ids, 16, &n));
        ASSERT_EQ(n, 3);
        ASSERT_TRUE(ids[0] == 6 && ids[1] == 5 && ids[2] == 6);
        /* 'A' has a byte token; 'C' has none and falls back to <unk> */
        ASSERT_OK(tok_encode(t, "AC", 2, true, false, ids, 16, &n));
        ASSERT_EQ(n, 4);
        ASSERT_TRUE(ids[0] == 1 && ids[1] == 3 && ids[2] == 8 && ids[3] == 0);
        char *s = tok_decode(t, ids, n, true);
        ASSERT_STR_EQ(s, "A"); /* <unk> renders empty */
        free(s);
        ASSERT_EQ(tok_encode(t, "x", 1, false, false, ids, 0, &n), SA_ERR_RANGE);
        ASSERT_EQ(tok_encode(t, NULL, 1, false, false, ids, 16, &n), SA_ERR_INVALID_ARG);
    }
    tok_destroy(t);

    corrupt_each_byte(&w);
    free(w.b);
}

/* Minimal byte-level BPE vocabulary; "Ġ" is the GPT-2 spelling of a space. */
static void build_bpe(struct gw *w, const char *const *merges, size_t n_merges, const char *pre)
{
    static const char *const toks[] = {"a", "b", "ab", "\xC4\xA0", ("\xC4\xA0" "a"), "<|endoftext|>"};
    static const int32_t types[] = {1, 1, 1, 1, 1, 3};
    gw_begin(w);
    kv_string(w, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_string(w, "tokenizer.ggml.pre", pre);
    kv_strs(w, "tokenizer.ggml.tokens", toks, 6);
    kv_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 4, 6);
    kv_strs(w, "tokenizer.ggml.merges", merges, n_merges);
    kv_u32(w, "tokenizer.ggml.eos_token_id", 5);
    gw_end(w);
}

static void test_hostile_bpe(void)
{
    static const char *const good[] = {"a b", "\xC4\xA0 a"};
    static const char *const unknown[] = {"a b", "a zz"};
    static const char *const no_space[] = {"ab"};
    struct gw w;
    struct tokenizer *t;
    char msg[256];

    build_bpe(&w, unknown, 2, "gpt-2");
    ASSERT_EQ(try_create(&w, &t, msg, sizeof msg), SA_ERR_BAD_MODEL);
    ASSERT_CONTAINS(msg, "tokenizer.ggml.merges");
    ASSERT_CONTAINS(msg, "zz");
    free(w.b);

    build_bpe(&w, no_space, 1, "gpt-2");
    ASSERT_EQ(try_create(&w, &t, msg, sizeof msg), SA_ERR_BAD_MODEL);
    ASSERT_CONTAINS(msg, "tokenizer.ggml.merges");
    free(w.b);

    build_bpe(&w, good, 2, "no-such-pre");
    ASSERT_EQ(try_create(&w, &t, msg, sizeof msg), SA_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(msg, "tokenizer.ggml.pre");
    free(w.b);

    build_bpe(&w, good, 2, NULL); /* no pre: the default pre-tokenizer */
    ASSERT_OK(try_create(&w, &t, msg, sizeof msg));
    tok_destroy(t);
    free(w.b);

    build_bpe(&w, good, 2, "gpt-2");
    ASSERT_OK(try_create(&w, &t, msg, sizeof msg));
    if (t) {
        int32_t ids[16];
        size_t n;
        ASSERT_EQ(tok_kind(t), TOK_KIND_BPE);
        ASSERT_TRUE(!tok_add_bos(t));
        ASSERT_EQ(tok_bos(t), -1);
        ASSERT_TRUE(tok_is_eog(t, 5));
        ASSERT_OK(tok_encode(t, "ab a", 4, true, false, ids, 16, &n));
        ASSERT_EQ(n, 2);
        ASSERT_TRUE(ids[0] == 2 && ids[1] == 4);
        char *s = tok_decode(t, ids, n, true);
        ASSERT_STR_EQ(s, "ab a");
        free(s);
        /* bytes the vocabulary lacks (no <unk>) are dropped, not a crash */
        ASSERT_OK(tok_encode(t, "zaz", 3, false, false, ids, 16, &n));
        ASSERT_EQ(n, 1);
        /* a control token is text unless parse_special */
        ASSERT_OK(tok_encode(t, "a<|endoftext|>", 14, false, true, ids, 16, &n));
        ASSERT_TRUE(n == 2 && ids[1] == 5);
        ASSERT_OK(tok_encode(t, "a<|endoftext|>", 14, false, false, ids, 16, &n));
        ASSERT_TRUE(n == 1);
    }
    tok_destroy(t);
    corrupt_each_byte(&w);
    free(w.b);
}

/* ---- speed ---- */

static void perf_one(const char *vocab, const char *what, const char *text, size_t len)
{
    struct tokenizer *t = open_vocab(vocab);
    if (!t) return;
    double t0 = now_s();
    size_t n;
    int32_t *ids = encode(t, text, len, true, false, &n);
    double dt = now_s() - t0;
    fprintf(stderr, "  encode %zu KB of %s with %s: %zu tokens in %.1f ms\n", len / 1024, what, vocab, n,
            dt * 1e3);
    ASSERT_TRUE(dt < PERF_LIMIT_S);
    if (ids) {
        t0 = now_s();
        char *back = tok_decode(t, ids, n, true);
        dt = now_s() - t0;
        ASSERT_TRUE(dt < PERF_LIMIT_S);
        free(back);
    }
    free(ids);
    tok_destroy(t);
}

static void test_performance(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/eval/wikitext-2-raw/wiki.test.raw", test_shared_dir());
    size_t len = 0;
    char *text = slurp(path, &len);
    if (!text) {
        TEST_FAIL_("cannot read %s", path);
        return;
    }
    size_t n = len < 100 * 1024 ? len : 100 * 1024;
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--; /* whole characters */
    static const char *const vocabs[] = {"llama-spm", "gpt-2", "deepseek-llm", "falcon"};
    for (size_t v = 0; v < 4; v++) perf_one(vocabs[v], "wikitext", text, n);
    free(text);

    /* degenerate inputs: one huge word, one huge run of spaces, random bytes */
    size_t big = 100 * 1024;
    char *buf = malloc(big + 1);
    if (!buf) return;
    memset(buf, 'a', big);
    perf_one("llama-spm", "'a'", buf, big);
    perf_one("gpt-2", "'a'", buf, big);
    memset(buf, ' ', big);
    buf[big - 1] = '1';
    perf_one("llama-spm", "spaces", buf, big);
    perf_one("gpt-2", "spaces", buf, big);
    perf_one("deepseek-llm", "spaces", buf, big);
    uint32_t rng = 7;
    for (size_t i = 0; i < big; i++) {
        rng = rng * 1664525u + 1013904223u;
        buf[i] = (char)(rng >> 24);
    }
    perf_one("llama-spm", "random bytes", buf, big);
    perf_one("gpt-2", "random bytes", buf, big);
    free(buf);
}

/* ---- threads ---- */

struct thread_arg {
    const struct tokenizer *t;
    const char *text;
    const int32_t *want;
    size_t n_want;
    int bad;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 50; i++) {
        int32_t ids[256];
        size_t n;
        if (tok_encode(a->t, a->text, strlen(a->text), false, false, ids, 256, &n) != 0 || n != a->n_want ||
            memcmp(ids, a->want, n * sizeof *ids) != 0)
            a->bad++;
    }
    return NULL;
}

static void test_threads(void)
{
    struct tokenizer *t = open_vocab("gpt-2");
    if (!t) return;
    const char *text = "Hello, y'all! How are you \xF0\x9F\x98\x81 ?\xE6\x88\x91\xE6\x83\xB3 3333 ok";
    size_t n;
    int32_t *want = encode(t, text, strlen(text), false, false, &n);
    if (want) {
        pthread_t th[4];
        struct thread_arg args[4];
        for (int i = 0; i < 4; i++) {
            args[i] = (struct thread_arg){t, text, want, n, 0};
            pthread_create(&th[i], NULL, thread_main, &args[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            ASSERT_EQ(args[i].bad, 0);
        }
    }
    free(want);
    tok_destroy(t);
}

int main(void)
{
    double t0 = now_s();
    sa_log_set_level(SA_LOG_ERROR);
    TEST_RUN(test_conformance_vectors);
    TEST_RUN(test_round_trip);
    TEST_RUN(test_random_round_trip);
    TEST_RUN(test_invalid_utf8_input);
    TEST_RUN(test_stories260k);
    TEST_RUN(test_stream);
    TEST_RUN(test_hostile_spm);
    TEST_RUN(test_hostile_bpe);
    TEST_RUN(test_performance);
    TEST_RUN(test_threads);
    fprintf(stderr, "  total %.2f s\n", now_s() - t0);
    TEST_DONE();
}
