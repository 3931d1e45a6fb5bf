/*
 * gguf_random - write a Llama-architecture GGUF v3 file with random weights.
 *
 *   gguf_random -o OUT.gguf --shape tiny|110M|1.1B --type F32|F16|BF16|Q8_0|Q4_0
 *               [--vocab-from TOKENIZER.gguf] [--seed N]
 *               [--dim N --layers N --heads N --kv-heads N --ffn N --vocab N --ctx N]
 *
 * The file holds the llama.* hyper-parameters, every tokenizer.* entry of
 * --vocab-from copied byte for byte (gguf_kv_raw), and the tensors under their
 * llama.cpp names. Matrices (token_embd and output included) are in --type,
 * norms are F32 ones. Weights are uniform(-a, a) with a = 0.5*sqrt(3/in_dim),
 * i.e. a standard deviation of 0.5/sqrt(in_dim), so activations stay finite.
 *
 * The writer streams: the header (a few hundred KiB at most, the vocabulary
 * dominates) is built in memory, then each tensor is generated, converted and
 * written one row at a time, so memory stays O(row) even for a 4.4 GB F32
 * file. Each tensor has its own PRNG stream derived from (seed, tensor index),
 * so output is a pure function of the arguments. The file is written to
 * OUT.tmp, reopened with gguf_open_file to check it parses and matches the
 * plan, then renamed to OUT. Exit status 0 on success, 1 on bad arguments,
 * 2 on I/O or verification failure.
 */
#include "engine/errors.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ALIGNMENT 32u
#define MAX_NAME 64

/* ---------------------------------------------------------------- PRNG */

/* splitmix64: seeds the per-tensor xoshiro256+ state. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t sm = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&sm);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256+ (the upper bits are the good ones; we only use those). */
static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = s[0] + s[3];
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* n values uniform in (-a, a): two 24-bit draws per 64-bit output, centred so
 * the distribution is exactly symmetric. */
static void fill_uniform(struct rng *r, float *x, size_t n, float a)
{
    const float scale = a / 8388608.0f; /* a / 2^23 */
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t v = rng_next(r);
        x[i] = ((float)(int32_t)(v >> 40) - 8388607.5f) * scale;
        x[i + 1] = ((float)(int32_t)((v >> 16) & 0xffffff) - 8388607.5f) * scale;
    }
    if (i < n) x[i] = ((float)(int32_t)(rng_next(r) >> 40) - 8388607.5f) * scale;
}

/* ---------------------------------------------------------------- byte buffer */

struct buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void buf_put(struct buf *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void put_str(struct buf *b, const char *s)
{
    put_u64(b, strlen(s));
    buf_put(b, s, strlen(s));
}
static void kv_u32(struct buf *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}
static void kv_f32(struct buf *b, const char *key, float v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_FLOAT32);
    buf_put(b, &v, 4);
}
static void kv_str(struct buf *b, const char *key, const char *v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
}

/* ---------------------------------------------------------------- plan */

struct shape {
    const char *label;
    int64_t dim, layers, heads, kv_heads, ffn, vocab, ctx;
};

struct tplan {
    char name[MAX_NAME];
    uint32_t n_dims;
    int64_t ne[2];
    enum quant_type type;
    uint64_t offset;  /* within the data section */
    uint64_t n_bytes;
    bool ones;        /* norm weights: all 1.0 */
};

static const struct {
    const char *name;
    struct shape s;
} named_shapes[] = {
    {"tiny", {"tiny", 64, 2, 4, 2, 128, 0, 2048}},
    {"110M", {"110M", 768, 12, 12, 12, 2048, 32000, 2048}},
    {"1.1B", {"1.1B", 2048, 22, 32, 4, 5632, 32000, 2048}},
};

static const struct {
    const char *name;
    enum quant_type t;
    uint32_t file_type; /* llama.cpp LLAMA_FTYPE_* */
} types[] = {
    {"F32", QUANT_F32, 0}, {"F16", QUANT_F16, 1}, {"BF16", QUANT_BF16, 32},
    {"Q8_0", QUANT_Q8_0, 7}, {"Q4_0", QUANT_Q4_0, 2},
};

static void add_tensor(struct tplan *t, size_t *n, const char *name, int64_t ne0, int64_t ne1,
                       enum quant_type type)
{
    struct tplan *p = &t[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->n_dims = ne1 ? 2 : 1;
    p->ne[0] = ne0;
    p->ne[1] = ne1 ? ne1 : 1;
    p->type = ne1 ? type : QUANT_F32;
    p->ones = ne1 == 0;
    p->n_bytes = quant_row_bytes(p->type, (size_t)ne0) * (uint64_t)p->ne[1];
}

static size_t make_plan(const struct shape *s, enum quant_type type, struct tplan *t)
{
    size_t n = 0;
    int64_t hd = s->dim / s->heads;
    char nm[MAX_NAME];
    add_tensor(t, &n, "token_embd.weight", s->dim, s->vocab, type);
    add_tensor(t, &n, "output_norm.weight", s->dim, 0, type);
    add_tensor(t, &n, "output.weight", s->dim, s->vocab, type);
    for (int64_t l = 0; l < s->layers; l++) {
#define BLK(suffix, ne0, ne1)                                                  \
    do {                                                                       \
        snprintf(nm, sizeof nm, "blk.%" PRId64 ".%s", l, suffix);              \
        add_tensor(t, &n, nm, ne0, ne1, type);                                 \
    } while (0)
        BLK("attn_norm.weight", s->dim, 0);
        BLK("attn_q.weight", s->dim, s->heads * hd);
        BLK("attn_k.weight", s->dim, s->kv_heads * hd);
        BLK("attn_v.weight", s->dim, s->kv_heads * hd);
        BLK("attn_output.weight", s->heads * hd, s->dim);
        BLK("ffn_norm.weight", s->dim, 0);
        BLK("ffn_gate.weight", s->dim, s->ffn);
        BLK("ffn_up.weight", s->dim, s->ffn);
        BLK("ffn_down.weight", s->ffn, s->dim);
#undef BLK
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t[i].offset = off;
        off += t[i].n_bytes;
        off = (off + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    return n;
}

/* ---------------------------------------------------------------- CLI */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gguf_random -o OUT.gguf --shape tiny|110M|1.1B --type F32|F16|BF16|Q8_0|Q4_0\n"
            "                   [--vocab-from TOKENIZER.gguf] [--seed N]\n"
            "                   [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N]\n"
            "                   [--vocab N] [--ctx N]\n"
            "Writes a Llama-architecture GGUF v3 with random weights (streamed row by row).\n"
            "--vocab-from copies every tokenizer.* entry of that file; the model's vocab\n"
            "size is then the length of its tokenizer.ggml.tokens.\n");
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* mkdir -p of the directory part of path. */
static int make_parent_dirs(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof tmp) return -1;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- writing */

static int write_zeros(FILE *f, uint64_t n)
{
    static const uint8_t z[ALIGNMENT];
    while (n) {
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        if (fwrite(z, 1, k, f) != k) return -1;
        n -= k;
    }
    return 0;
}

static int write_tensor(FILE *f, const struct tplan *t, uint64_t seed, uint64_t index, float *row,
                        void *qrow)
{
    size_t n0 = (size_t)t->ne[0];
    size_t rb = quant_row_bytes(t->type, n0);
    if (t->ones) {
        for (size_t i = 0; i < n0; i++) row[i] = 1.0f;
        quant_quantize_row(t->type, row, qrow, n0);
        for (int64_t r = 0; r < t->ne[1]; r++)
            if (fwrite(qrow, 1, rb, f) != rb) return -1;
        return 0;
    }
    struct rng g;
    rng_seed(&g, seed, index + 1);
    float a = 0.5f * sqrtf(3.0f / (float)n0);
    for (int64_t r = 0; r < t->ne[1]; r++) {
        fill_uniform(&g, row, n0, a);
        quant_quantize_row(t->type, row, qrow, n0);
        if (fwrite(qrow, 1, rb, f) != rb) return -1;
    }
    return 0;
}

static int verify(const char *path, const struct tplan *t, size_t nt, uint64_t n_kv, uint64_t file_size)
{
    struct gguf *g = NULL;
    char msg[512];
    int rc = gguf_open_file(path, &g, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "gguf_random: %s: written file does not parse: %s (%s)\n", path, msg,
                sa_err_name(rc));
        return -1;
    }
    const char *why = NULL;
    if (gguf_version(g) != 3) why = "version";
    else if (gguf_n_kv(g) != n_kv) why = "n_kv";
    else if (gguf_n_tensors(g) != nt) why = "n_tensors";
    else if (gguf_file_size(g) != file_size) why = "file size";
    for (size_t i = 0; i < nt && !why; i++) {
        const struct gguf_tensor *x = gguf_find_tensor(g, t[i].name);
        if (!x || x->type != (uint32_t)t[i].type || x->offset != t[i].offset || x->n_bytes != t[i].n_bytes ||
            x->ne[0] != t[i].ne[0] || x->ne[1] != t[i].ne[1] || x->n_dims != t[i].n_dims)
            why = t[i].name;
    }
    gguf_close(g);
    if (why) {
        fprintf(stderr, "gguf_random: %s: reopened file does not match the plan (%s)\n", path, why);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *out_path = NULL, *vocab_from = NULL, *shape_name = NULL, *type_name = NULL;
    uint64_t seed = 42;
    /* explicit overrides; -1 = not given */
    int64_t o_dim = -1, o_layers = -1, o_heads = -1, o_kv = -1, o_ffn = -1, o_vocab = -1, o_ctx = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        const char *v = NULL;
        char key[32];
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof key) {
            memcpy(key, a, (size_t)(eq - a));
            key[eq - a] = 0;
            v = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a);
            if (i + 1 >= argc) {
                fprintf(stderr, "gguf_random: %s needs a value\n", a);
                return 1;
            }
            v = argv[++i];
        }
        bool ok = true;
        const int64_t BIG = INT64_C(1) << 31;
        if (!strcmp(key, "-o") || !strcmp(key, "--output")) out_path = v;
        else if (!strcmp(key, "--shape")) shape_name = v;
        else if (!strcmp(key, "--type")) type_name = v;
        else if (!strcmp(key, "--vocab-from")) vocab_from = v;
        else if (!strcmp(key, "--seed")) ok = parse_u64(v, &seed);
        else if (!strcmp(key, "--dim")) ok = parse_i64(v, 1, BIG, &o_dim);
        else if (!strcmp(key, "--layers")) ok = parse_i64(v, 1, 65536, &o_layers);
        else if (!strcmp(key, "--heads")) ok = parse_i64(v, 1, BIG, &o_heads);
        else if (!strcmp(key, "--kv-heads")) ok = parse_i64(v, 1, BIG, &o_kv);
        else if (!strcmp(key, "--ffn")) ok = parse_i64(v, 1, BIG, &o_ffn);
        else if (!strcmp(key, "--vocab")) ok = parse_i64(v, 1, BIG, &o_vocab);
        else if (!strcmp(key, "--ctx")) ok = parse_i64(v, 1, UINT32_MAX, &o_ctx);
        else {
            fprintf(stderr, "gguf_random: unknown option %s\n", key);
            usage(stderr);
            return 1;
        }
        if (!ok) {
            fprintf(stderr, "gguf_random: bad value for %s: '%s'\n", key, v);
            return 1;
        }
    }
    if (!out_path || !type_name) {
        usage(stderr);
        return 1;
    }

    struct shape s = {"custom", 0, 0, 0, 0, 0, 0, 2048};
    if (shape_name) {
        size_t k = 0;
        while (k < sizeof named_shapes / sizeof named_shapes[0] && strcmp(named_shapes[k].name, shape_name)) k++;
        if (k == sizeof named_shapes / sizeof named_shapes[0]) {
            fprintf(stderr, "gguf_random: unknown shape '%s' (tiny, 110M, 1.1B)\n", shape_name);
            return 1;
        }
        s = named_shapes[k].s;
    }
    size_t ti = 0;
    while (ti < sizeof types / sizeof types[0] && strcmp(types[ti].name, type_name)) ti++;
    if (ti == sizeof types / sizeof types[0]) {
        fprintf(stderr, "gguf_random: unknown type '%s' (F32, F16, BF16, Q8_0, Q4_0)\n", type_name);
        return 1;
    }
    enum quant_type type = types[ti].t;
    bool custom = false;
    if (o_dim > 0) s.dim = o_dim, custom = true;
    if (o_layers > 0) s.layers = o_layers, custom = true;
    if (o_heads > 0) s.heads = o_heads, custom = true;
    if (o_kv > 0) s.kv_heads = o_kv, custom = true;
    if (o_ffn > 0) s.ffn = o_ffn, custom = true;
    if (o_ctx > 0) s.ctx = o_ctx;

    /* tokenizer */
    struct gguf *tok = NULL;
    int64_t tok_vocab = 0;
    if (vocab_from) {
        char msg[512];
        int rc = gguf_open_file(vocab_from, &tok, msg, sizeof msg);
        if (rc) {
            fprintf(stderr, "gguf_random: %s: %s\n", vocab_from, msg);
            return 2;
        }
        int64_t k = gguf_find_key(tok, "tokenizer.ggml.tokens");
        if (k < 0 || gguf_kv_type(tok, (uint64_t)k) != GGUF_TYPE_ARRAY ||
            gguf_kv_arr_type(tok, (uint64_t)k) != GGUF_TYPE_STRING || gguf_kv_arr_n(tok, (uint64_t)k) == 0) {
            fprintf(stderr, "gguf_random: %s: no tokenizer.ggml.tokens string array\n", vocab_from);
            gguf_close(tok);
            return 2;
        }
        tok_vocab = (int64_t)gguf_kv_arr_n(tok, (uint64_t)k);
        if (o_vocab > 0 && o_vocab != tok_vocab) {
            fprintf(stderr, "gguf_random: --vocab %" PRId64 " contradicts the %" PRId64 " tokens of %s\n", o_vocab,
                    tok_vocab, vocab_from);
            gguf_close(tok);
            return 1;
        }
        if (s.vocab && s.vocab != tok_vocab)
            fprintf(stderr, "gguf_random: note: vocab %" PRId64 " from %s (shape default %" PRId64 ")\n",
                    tok_vocab, vocab_from, s.vocab);
        s.vocab = tok_vocab;
    } else if (o_vocab > 0) {
        s.vocab = o_vocab;
    }
    if (custom) s.label = "custom";

    const char *bad = NULL;
    bool block = quant_block_size(type) > 1;
    if (s.dim <= 0 || s.layers <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.ffn <= 0)
        bad = "no shape: give --shape or all of --dim --layers --heads --kv-heads --ffn";
    else if (s.vocab <= 0) bad = "vocab size unknown: give --vocab-from or --vocab";
    else if (s.dim % s.heads) bad = "--dim must be a multiple of --heads";
    else if (s.heads % s.kv_heads) bad = "--heads must be a multiple of --kv-heads";
    else if ((s.dim / s.heads) % 2) bad = "head dimension (dim/heads) must be even for RoPE";
    else if (block && (s.dim % QUANT_BLOCK || s.ffn % QUANT_BLOCK))
        bad = "--dim and --ffn must be multiples of 32 for Q8_0/Q4_0";
    if (bad) {
        fprintf(stderr, "gguf_random: %s\n", bad);
        gguf_close(tok);
        return 1;
    }
    int64_t hd = s.dim / s.heads;

    size_t nt_max = 3 + 9 * (size_t)s.layers;
    struct tplan *plan = calloc(nt_max, sizeof *plan);
    if (!plan) {
        fprintf(stderr, "gguf_random: out of memory\n");
        gguf_close(tok);
        return 2;
    }
    size_t nt = make_plan(&s, type, plan);

    /* ---- header ---- */
    struct buf kvs = {0};
    uint64_t n_kv = 0;
    char name[128];
    snprintf(name, sizeof name, "saserve-random-%s-%s", s.label, types[ti].name);
    kv_str(&kvs, "general.architecture", "llama"), n_kv++;
    kv_str(&kvs, "general.name", name), n_kv++;
    kv_u32(&kvs, "general.alignment", ALIGNMENT), n_kv++;
    kv_u32(&kvs, "llama.context_length", (uint32_t)s.ctx), n_kv++;
    kv_u32(&kvs, "llama.embedding_length", (uint32_t)s.dim), n_kv++;
    kv_u32(&kvs, "llama.feed_forward_length", (uint32_t)s.ffn), n_kv++;
    kv_u32(&kvs, "llama.block_count", (uint32_t)s.layers), n_kv++;
    kv_u32(&kvs, "llama.attention.head_count", (uint32_t)s.heads), n_kv++;
    kv_u32(&kvs, "llama.attention.head_count_kv", (uint32_t)s.kv_heads), n_kv++;
    kv_u32(&kvs, "llama.rope.dimension_count", (uint32_t)hd), n_kv++;
    kv_f32(&kvs, "llama.rope.freq_base", 10000.0f), n_kv++;
    kv_f32(&kvs, "llama.attention.layer_norm_rms_epsilon", 1e-5f), n_kv++;
    kv_u32(&kvs, "general.file_type", types[ti].file_type), n_kv++;
    kv_u32(&kvs, "llama.vocab_size", (uint32_t)s.vocab), n_kv++;
    if (tok) {
        for (uint64_t k = 0; k < gguf_n_kv(tok); k++) {
            struct gguf_str key = gguf_kv_key(tok, k);
            if (key.len < 10 || memcmp(key.data, "tokenizer.", 10) != 0) continue;
            const uint8_t *raw;
            size_t len;
            gguf_kv_raw(tok, k, &raw, &len);
            buf_put(&kvs, raw, len);
            n_kv++;
        }
    }
    struct buf hdr = {0};
    buf_put(&hdr, "GGUF", 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, nt);
    put_u64(&hdr, n_kv);
    if (!kvs.oom) buf_put(&hdr, kvs.p, kvs.len);
    for (size_t i = 0; i < nt; i++) {
        put_str(&hdr, plan[i].name);
        put_u32(&hdr, plan[i].n_dims);
        for (uint32_t d = 0; d < plan[i].n_dims; d++) put_u64(&hdr, (uint64_t)plan[i].ne[d]);
        put_u32(&hdr, (uint32_t)plan[i].type);
        put_u64(&hdr, plan[i].offset);
    }
    free(kvs.p);
    gguf_close(tok);
    tok = NULL;
    if (kvs.oom || hdr.oom) {
        fprintf(stderr, "gguf_random: out of memory\n");
        return 2;
    }
    uint64_t data_start = (hdr.len + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    uint64_t data_size = plan[nt - 1].offset + plan[nt - 1].n_bytes;
    uint64_t file_size = data_start + data_size;
    uint64_t n_params = 0;
    for (size_t i = 0; i < nt; i++) n_params += (uint64_t)plan[i].ne[0] * (uint64_t)plan[i].ne[1];

    /* ---- data, streamed ---- */
    double t0 = now_s();
    char tmp_path[4096];
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path) >= (int)sizeof tmp_path ||
        make_parent_dirs(out_path) != 0) {
        fprintf(stderr, "gguf_random: %s: cannot create the directory: %s\n", out_path, strerror(errno));
        return 2;
    }
    FILE *f = fopen(tmp_path, "wb");
    if (!f) {
        fprintf(stderr, "gguf_random: %s: %s\n", tmp_path, strerror(errno));
        return 2;
    }
    static char iobuf[1 << 22];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    int64_t max_row = s.dim > s.ffn ? s.dim : s.ffn;
    if (s.heads * hd > max_row) max_row = s.heads * hd;
    float *row = malloc((size_t)max_row * sizeof *row);
    void *qrow = malloc((size_t)max_row * sizeof(float));
    int werr = !row || !qrow;
    if (!werr) werr = fwrite(hdr.p, 1, hdr.len, f) != hdr.len || write_zeros(f, data_start - hdr.len);
    uint64_t pos = 0; /* within the data section */
    for (size_t i = 0; i < nt && !werr; i++) {
        werr = write_zeros(f, plan[i].offset - pos) || write_tensor(f, &plan[i], seed, i, row, qrow);
        pos = plan[i].offset + plan[i].n_bytes;
    }
    if (fclose(f) != 0) werr = 1;
    free(row);
    free(qrow);
    free(hdr.p);
    if (werr) {
        fprintf(stderr, "gguf_random: %s: write failed: %s\n", tmp_path, strerror(errno));
        remove(tmp_path);
        free(plan);
        return 2;
    }
    double t_write = now_s() - t0;
    if (verify(tmp_path, plan, nt, n_kv, file_size) != 0) {
        remove(tmp_path);
        free(plan);
        return 2;
    }
    free(plan);
    if (rename(tmp_path, out_path) != 0) {
        fprintf(stderr, "gguf_random: rename %s -> %s: %s\n", tmp_path, out_path, strerror(errno));
        remove(tmp_path);
        return 2;
    }
    printf("gguf_random: wrote %s: llama %s dim %" PRId64 " layers %" PRId64 " heads %" PRId64 "/%" PRId64
           " ffn %" PRId64 " vocab %" PRId64 ", %s, %" PRIu64 " params (%.3fB), %" PRIu64
           " bytes (%.1f MiB), %zu tensors, %" PRIu64 " kv, seed %" PRIu64 ", %.2f s\n",
           out_path, s.label, s.dim, s.layers, s.heads, s.kv_heads, s.ffn, s.vocab, types[ti].name, n_params,
           (double)n_params / 1e9, file_size, (double)file_size / 1048576.0, nt, n_kv, seed, t_write);
    return 0;
}
