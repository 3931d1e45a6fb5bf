/*
 * fuzz_tokenizer.c - libFuzzer target: bytes -> encode -> decode with the
 * stories260K vocab (SPM with byte fallback) and the GPT-2 vocab (byte-level
 * BPE), with and without special-token parsing. Checks the contracts: every
 * id is in range, and the streaming detokenizer's pieces concatenate to
 * exactly tok_decode() and are valid UTF-8 at every push (RELIABILITY.md B1, B3).
 * The vocabularies are read from $SHARED (default ../shared) once.
 */
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz_tokenizer: vocab %d: check failed: %s\n", t, #cond);    \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static struct tokenizer *toks[2];
static int n_toks = -1;

static void load(void)
{
    const char *shared = getenv("SHARED");
    if (!shared || !*shared) shared = "../shared";
    const char *files[2] = {"models/stories260K/stories260K.gguf", "tokenizer-vectors/ggml-vocab-gpt-2.gguf"};
    n_toks = 0;
    for (int i = 0; i < 2; i++) {
        char path[1024], msg[256];
        snprintf(path, sizeof path, "%s/%s", shared, files[i]);
        struct gguf *g;
        if (gguf_open_file(path, &g, msg, sizeof msg) != 0) continue;
        if (tok_create(g, &toks[n_toks], msg, sizeof msg) == 0) n_toks++;
        gguf_close(g);
    }
    if (n_toks != 2) { /* a run without its vocabularies would fuzz nothing and look green */
        fprintf(stderr, "fuzz_tokenizer: cannot load the vocabularies from SHARED=%s\n", shared);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (n_toks < 0) load();
    if (size > 4096) return 0;
    for (int t = 0; t < n_toks; t++) {
        const struct tokenizer *tk = toks[t];
        size_t cap = size + 4, n = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        if (!ids) return 0;
        if (tok_encode(tk, (const char *)data, size, true, (size & 1) != 0, ids, cap, &n) != 0) {
            free(ids);
            continue;
        }
        CHECK(n <= cap);
        for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(tk));
        char *whole = tok_decode(tk, ids, n, true);
        CHECK(whole && utf8_valid((const unsigned char *)whole, strlen(whole)));
        size_t pcap = 3 * (tok_max_piece_len(tk) + 3) + 1, tot = 0, wl = strlen(whole);
        char *piece = malloc(pcap);
        struct tok_stream st;
        tok_stream_init(&st, tk, true);
        /* tok_decode returns a C string: a <0x00> byte token ends it, so compare up to there */
        bool nul_seen = false;
        for (size_t i = 0; i <= n; i++) {
            size_t k = i < n ? tok_stream_push(&st, ids[i], piece, pcap) : tok_stream_flush(&st, piece, pcap);
            CHECK(utf8_valid((const unsigned char *)piece, k));
            if (nul_seen) continue;
            size_t z = k;
            for (size_t b = 0; b < k; b++)
                if (!piece[b]) {
                    z = b;
                    nul_seen = true;
                    break;
                }
            CHECK(tot + z <= wl && memcmp(whole + tot, piece, z) == 0);
            tot += z;
        }
        CHECK(tot == wl);
        free(piece);
        free(whole);
        free(ids);
    }
    return 0;
}
