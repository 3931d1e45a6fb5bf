/*
 * test_kquant.c - the K-quant and IQ4 types against llama.cpp, and their
 * kernels against each other.
 *
 * Conformance (SHARED/models/kquant, written by llama.cpp; skipped with a
 * printed reason when absent), for every model file there:
 *  - dequantisation: every tensor, dequantised by quant_dequantize_row, equals
 *    ggml's to_float of it (ref/<name>.deq-f32.gguf) bit for bit (memcmp of
 *    the float bits); the max |diff| is printed either way.
 *  - logits: the 64 tokens of seqA.txt as one batch (no BOS added) through
 *    tf_forward with all_logits; max |diff| <= 0.07 against llama.cpp's logits
 *    for the quantised file (logits/<name>.A.f32, the README's tolerance), and
 *    the max |diff| against llama.cpp's logits for the dequantised F32 copy is
 *    printed and bounded by 1e-3 (a 64-row batch takes the sgemm path, which
 *    multiplies dequantised weights with float activations as that copy does).
 *    The same 64 tokens fed one at a time (decode: the matrix-vector path
 *    with Q8_K/Q8_0 activations, as llama.cpp computes) must also be within
 *    0.07 of logits/<name>.A.f32.
 *  - split: the first of the three split/ shards loads the whole model and
 *    gives bit-identical logits to the single file.
 * Kernels, on random blocks (random bytes with sane f16 scales, and quantised
 * random floats): every SIMD level's dot equals the plain-C reference within
 * 1e-5 of sum |w_i * y_i|, for odd super-block counts and through
 * quant_dot_multi with odd activation-row counts; the reference equals a
 * double dot of the dequantised operands (an independent decoding) within
 * 1e-4. Round trips: quantise -> dequantise relative RMS error per type below
 * a bound (measured values printed). Scale check: NaN/Inf in d or dmin of any
 * block is reported by quant_scales_finite.
 */
#define _DEFAULT_SOURCE
#include "engine/errors.h"
#include "engine/gemm.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/quantize.h"
#include "engine/transformer.h"
#include "../tf_pair.h"
#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "tests/test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static const enum quant_type new_types[] = {QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K,
                                            QUANT_Q6_K, QUANT_IQ4_NL, QUANT_IQ4_XS};
#define N_NEW (sizeof new_types / sizeof new_types[0])

/* ---------------------------------------------------------------- data */



static void set_f16(void *blk, size_t off, float v)
{
    uint16_t h = quant_f32_to_f16(v);
    memcpy((char *)blk + off, &h, 2);
}

/* Random bytes for every field, then sane scales: the bit patterns of the
 * quants and packed sub-block scales are all reachable this way. */
static void random_row(enum quant_type t, void *row, size_t n)
{
    size_t bb = quant_block_bytes(t), nb = n / quant_block_size(t);
    uint8_t *p = row;
    for (size_t i = 0; i < nb * bb; i++) p[i] = (uint8_t)rnd32();
    for (size_t k = 0; k < nb; k++) {
        char *b = (char *)p + k * bb;
        float d = 0.001f + 0.05f * (rndf() + 1.0f), dm = 0.001f + 0.05f * (rndf() + 1.0f);
        switch (t) {
        case QUANT_Q2_K:
            set_f16(b, offsetof(struct quant_block_q2_k, d), d);
            set_f16(b, offsetof(struct quant_block_q2_k, dmin), dm);
            break;
        case QUANT_Q3_K: set_f16(b, offsetof(struct quant_block_q3_k, d), d); break;
        case QUANT_Q4_K: case QUANT_Q5_K:
            set_f16(b, 0, d);
            set_f16(b, 2, dm);
            break;
        case QUANT_Q6_K: set_f16(b, offsetof(struct quant_block_q6_k, d), d * 0.1f); break;
        case QUANT_IQ4_NL: case QUANT_IQ4_XS: set_f16(b, 0, d * 0.1f); break;
        default: break;
        }
    }
}

/* ---------------------------------------------------------------- kernels */

static double abs_dot(enum quant_type t, const void *row, const void *y, size_t n, double *deq_dot)
{
    float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float));
    quant_dequantize_row(t, row, a, n);
    quant_dequantize_row(quant_vec_dot_type(t), y, b, n);
    double s = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        s += fabs((double)a[i] * b[i]);
        d += (double)a[i] * b[i];
    }
    free(a);
    free(b);
    *deq_dot = d;
    return s;
}

static void test_dot_levels(void)
{
    static const size_t n_blocks[] = {1, 3, 5, 7, 11};
    enum quant_isa max = quant_isa_max();
    fprintf(stderr, "  SIMD levels: up to %s (active %s)\n", quant_isa_name(max), quant_isa_name(quant_isa_active()));
    for (size_t ti = 0; ti < N_NEW; ti++) {
        enum quant_type t = new_types[ti];
        double worst_simd = 0, worst_ref = 0;
        for (size_t bi = 0; bi < sizeof n_blocks / sizeof n_blocks[0]; bi++)
            for (int mode = 0; mode < 2; mode++) {
                size_t n = n_blocks[bi] * QUANT_K;
                void *row = xmalloc(quant_row_bytes(t, n)), *y = xmalloc(quant_vec_bytes(t, n));
                float *x = xmalloc(n * sizeof(float));
                if (mode == 0) {
                    random_row(t, row, n);
                } else {
                    for (size_t i = 0; i < n; i++) x[i] = rndf() * (i % 64 == 3 ? 8.0f : 1.0f);
                    quant_quantize_row(t, x, row, n);
                }
                for (size_t i = 0; i < n; i++) x[i] = rndf() * ((i / 32) % 3 ? 1.0f : 0.01f);
                quant_prepare_vec(t, x, y, n);
                double dd, sabs = abs_dot(t, row, y, n, &dd);
                float ref = quant_dot_ref(t, row, y, n);
                double eref = fabs(ref - dd) / (sabs + 1e-30);
                if (eref > worst_ref) worst_ref = eref;
                if (!(eref <= 1e-4))
                    TEST_FAIL_("%s n=%zu: reference %.9g vs dequantised dot %.9g", quant_type_name(t), n, ref, dd);
                for (int isa = QUANT_ISA_AVX2; isa <= (int)max; isa++) {
                    float v = quant_dot_isa((enum quant_isa)isa, t, row, y, n);
                    double e = fabs(v - ref) / (sabs + 1e-30);
                    if (e > worst_simd) worst_simd = e;
                    if (!(e <= 1e-5))
                        TEST_FAIL_("%s %s n=%zu mode %d: %.9g vs reference %.9g", quant_type_name(t),
                                   quant_isa_name((enum quant_isa)isa), n, mode, v, ref);
                }
                free(row);
                free(y);
                free(x);
            }
        fprintf(stderr, "  %-6s worst |simd-ref|/sum|wy| %.2e, |ref-deq|/sum|wy| %.2e\n", quant_type_name(t),
                worst_simd, worst_ref);
    }
}

/* quant_dot_multi over T activation rows (odd T: 1, 5, and 19, more than
 * the 16 rows the K-quant kernel takes at once) equals T single dots bit for bit */
static void test_dot_multi(void)
{
    static const size_t Ts[] = {1, 5, 19};
    for (size_t ti = 0; ti < N_NEW * 3; ti++) {
        enum quant_type t = new_types[ti % N_NEW];
        size_t n = 3 * QUANT_K, T = Ts[ti / N_NEW], vb = quant_vec_bytes(t, n);
        void *row = xmalloc(quant_row_bytes(t, n));
        char *ys = xmalloc(T * vb);
        float *x = xmalloc(n * sizeof(float)), out[19 * 3];
        random_row(t, row, n);
        for (size_t k = 0; k < T; k++) {
            for (size_t i = 0; i < n; i++) x[i] = rndf();
            quant_prepare_vec(t, x, ys + k * vb, n);
        }
        quant_dot_multi(t, row, ys, vb, T, n, out, 3);
        for (size_t k = 0; k < T; k++) {
            float one = quant_dot(t, row, ys + k * vb, n);
            if (memcmp(&one, &out[k * 3], sizeof one) != 0)
                TEST_FAIL_("%s multi row %zu: %.9g vs %.9g", quant_type_name(t), k, out[k * 3], one);
        }
        free(row);
        free(ys);
        free(x);
    }
}

/* quantise -> dequantise: relative RMS error (vs the RMS of x) below a bound
 * per type (about 1.5x what we measure; printed). */
static void test_roundtrip(void)
{
    static const double bound[N_NEW] = {0.40, 0.20, 0.10, 0.05, 0.025, 0.10, 0.10};
    size_t n = 16 * QUANT_K;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    for (size_t ti = 0; ti < N_NEW; ti++) {
        enum quant_type t = new_types[ti];
        void *row = xmalloc(quant_row_bytes(t, n));
        for (int mode = 0; mode < 3; mode++) {
            for (size_t i = 0; i < n; i++) {
                float v = rndf();
                if (mode == 1) v = v * 0.3f + 0.2f * rndf() * rndf(); /* narrower, skewed */
                if (mode == 2) v = (float)((rndf() + rndf() + rndf()) * 0.02) * ((i / 256) % 2 ? 1.0f : 50.0f);
                x[i] = v;
            }
            quant_quantize_row(t, x, row, n);
            quant_dequantize_row(t, row, y, n);
            double se = 0, sx = 0;
            for (size_t i = 0; i < n; i++) {
                se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                sx += (double)x[i] * x[i];
            }
            double rel = sqrt(se / sx);
            fprintf(stderr, "  %-6s mode %d: relative RMS error %.4f (bound %.3f)\n", quant_type_name(t), mode, rel,
                    bound[ti]);
            if (!(rel <= bound[ti])) TEST_FAIL_("%s mode %d: %.4f > %.3f", quant_type_name(t), mode, rel, bound[ti]);
        }
        ASSERT_TRUE(quant_scales_finite(t, row, n));
        free(row);
    }
    free(x);
    free(y);
}

static void test_scales_finite(void)
{
    for (size_t ti = 0; ti < N_NEW; ti++) {
        enum quant_type t = new_types[ti];
        size_t n = 4 * QUANT_K, bb = quant_block_bytes(t), nb = n / quant_block_size(t);
        char *row = xmalloc(quant_row_bytes(t, n));
        random_row(t, row, n);
        ASSERT_TRUE(quant_scales_finite(t, row, n));
        size_t od = 0, om = SIZE_MAX;
        if (t == QUANT_Q2_K) od = offsetof(struct quant_block_q2_k, d), om = offsetof(struct quant_block_q2_k, dmin);
        if (t == QUANT_Q3_K) od = offsetof(struct quant_block_q3_k, d);
        if (t == QUANT_Q6_K) od = offsetof(struct quant_block_q6_k, d);
        if (t == QUANT_Q4_K || t == QUANT_Q5_K) om = 2;
        static const uint16_t bad[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01};
        for (size_t b = 0; b < 4; b++) {
            char *blk = row + (nb - 1) * bb; /* the last block */
            uint16_t save;
            memcpy(&save, blk + od, 2);
            memcpy(blk + od, &bad[b], 2);
            if (quant_scales_finite(t, row, n)) TEST_FAIL_("%s: d = 0x%04x not reported", quant_type_name(t), bad[b]);
            memcpy(blk + od, &save, 2);
            if (om != SIZE_MAX) {
                memcpy(&save, blk + om, 2);
                memcpy(blk + om, &bad[b], 2);
                if (quant_scales_finite(t, row, n))
                    TEST_FAIL_("%s: dmin = 0x%04x not reported", quant_type_name(t), bad[b]);
                memcpy(blk + om, &save, 2);
            }
        }
        ASSERT_TRUE(quant_scales_finite(t, row, n));
        free(row);
    }
    /* the older block types, and the types without scales */
    struct quant_block_q8_0 q8[2] = {{.d = 0x3c00}, {.d = 0x7c00}};
    ASSERT_TRUE(quant_scales_finite(QUANT_Q8_0, q8, 32));
    ASSERT_TRUE(!quant_scales_finite(QUANT_Q8_0, q8, 64));
    struct quant_block_q4_0 q4[1] = {{.d = 0xfe00}};
    ASSERT_TRUE(!quant_scales_finite(QUANT_Q4_0, q4, 32));
    float f[2] = {NAN, INFINITY};
    ASSERT_TRUE(quant_scales_finite(QUANT_F32, f, 2));
}

static void test_types(void)
{
    ASSERT_EQ(quant_block_size(QUANT_Q4_K), 256);
    ASSERT_EQ(quant_block_size(QUANT_IQ4_NL), 32);
    ASSERT_EQ(quant_row_bytes(QUANT_Q2_K, 512), 168);
    ASSERT_EQ(quant_row_bytes(QUANT_Q3_K, 256), 110);
    ASSERT_EQ(quant_row_bytes(QUANT_Q4_K, 256), 144);
    ASSERT_EQ(quant_row_bytes(QUANT_Q5_K, 256), 176);
    ASSERT_EQ(quant_row_bytes(QUANT_Q6_K, 256), 210);
    ASSERT_EQ(quant_row_bytes(QUANT_IQ4_NL, 256), 144);
    ASSERT_EQ(quant_row_bytes(QUANT_IQ4_XS, 256), 136);
    ASSERT_EQ(quant_vec_dot_type(QUANT_Q6_K), QUANT_Q8_K);
    ASSERT_EQ(quant_vec_dot_type(QUANT_IQ4_XS), QUANT_Q8_K);
    ASSERT_EQ(quant_vec_dot_type(QUANT_IQ4_NL), QUANT_Q8_0);
    ASSERT_EQ(quant_vec_bytes(QUANT_Q4_K, 512), 584);
    ASSERT_TRUE(!quant_type_supported(QUANT_Q8_K));
    for (size_t i = 0; i < N_NEW; i++) ASSERT_TRUE(quant_type_supported(new_types[i]));
    ASSERT_STR_EQ(quant_type_name(QUANT_IQ4_XS), "IQ4_XS");
}

/* ---------------------------------------------------------------- conformance */

static char kdir[512];

static bool have_kquant(void)
{
    snprintf(kdir, sizeof kdir, "%s/models/kquant", test_shared_dir());
    struct stat st;
    if (stat(kdir, &st) != 0) {
        fprintf(stderr, "  SKIP: %s is absent\n", kdir);
        return false;
    }
    return true;
}

static int read_seq(int32_t *tok, int cap)
{
    char p[600];
    snprintf(p, sizeof p, "%s/seqA.txt", kdir);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    int n = 0;
    while (n < cap && fscanf(f, "%d", &tok[n]) == 1) n++;
    fclose(f);
    return n;
}

static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = xmalloc(n * sizeof(float));
    size_t got = fread(v, sizeof(float), n, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        free(v);
        return NULL;
    }
    return v;
}

/* all-position logits of seqA; NULL on failure. one_by_one: 64 decode steps
 * of one token (the matrix-vector path, activations quantised to Q8_K/Q8_0)
 * instead of one 64-token batch (the sgemm path on dequantised rows). */
static float *seq_logits_load(const char *path, uint32_t *n_vocab, bool one_by_one, bool in_memory,
                              size_t *n_r16)
{
    char msg[256];
    struct model *m = NULL;
    struct model_load_opts o = {.use_mmap = !in_memory, .no_tokenizer = true};
    if (model_load(path, &o, &m, msg, sizeof msg)) {
        TEST_FAIL_("load %s: %s", path, msg);
        return NULL;
    }
    if (n_r16) { /* matrices in the load-time layout (repack.h) */
        *n_r16 = m->output.layout == MODEL_LAYOUT_R16;
        for (uint32_t l = 0; l < m->hp.n_layer; l++) {
            const struct model_layer *L = &m->layers[l];
            const struct model_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7; i++) *n_r16 += ws[i]->layout == MODEL_LAYOUT_R16;
        }
    }
    int32_t tok[64];
    int n = read_seq(tok, 64);
    if (n != 64) {
        TEST_FAIL_("seqA.txt: %d tokens, expected 64", n);
        model_free(m);
        return NULL;
    }
    struct tf_pair c = {0};
    struct tf_opts to = {.n_ctx = 64, .n_batch = 64, .n_threads = 1, .all_logits = true};
    float *out = NULL;
    const float *lg;
    if (one_by_one) to.all_logits = false;
    int rc = tf_pair_create(m, &to, &c);
    if (rc == 0 && one_by_one) {
        size_t nv = m->hp.n_vocab;
        *n_vocab = m->hp.n_vocab;
        out = xmalloc(64 * nv * sizeof(float));
        for (uint32_t i = 0; i < 64 && out; i++) {
            if (tf_pair_forward(&c, &tok[i], 1, i, &lg)) {
                TEST_FAIL_("%s: decode step %u failed", path, i);
                free(out);
                out = NULL;
            } else {
                memcpy(out + i * nv, lg, nv * sizeof(float));
            }
        }
    } else if (rc == 0 && tf_pair_forward(&c, tok, 64, 0, &lg) == 0) {
        *n_vocab = m->hp.n_vocab;
        out = xmalloc((size_t)64 * m->hp.n_vocab * sizeof(float));
        memcpy(out, lg, (size_t)64 * m->hp.n_vocab * sizeof(float));
    } else {
        TEST_FAIL_("%s: forward failed", path);
    }
    tf_pair_destroy(&c);
    model_free(m);
    return out;
}

static float *seq_logits_mode(const char *path, uint32_t *n_vocab, bool one_by_one)
{
    return seq_logits_load(path, n_vocab, one_by_one, false, NULL);
}

static float *seq_logits(const char *path, uint32_t *n_vocab) { return seq_logits_mode(path, n_vocab, false); }

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

/* every tensor of name.gguf, dequantised, vs ref/name.deq-f32.gguf; returns max |diff| */
static double check_dequant(const char *name, size_t *n_tensors, size_t *n_mismatch)
{
    char p[700], r[700], msg[256];
    snprintf(p, sizeof p, "%s/%s.gguf", kdir, name);
    snprintf(r, sizeof r, "%s/ref/%s.deq-f32.gguf", kdir, name);
    struct gguf *g = NULL, *gr = NULL;
    double worst = 0;
    *n_tensors = *n_mismatch = 0;
    if (gguf_open_file(p, &g, msg, sizeof msg) || gguf_open_file(r, &gr, msg, sizeof msg)) {
        TEST_FAIL_("%s: %s", name, msg);
        gguf_close(g);
        return INFINITY;
    }
    ASSERT_EQ(gguf_n_tensors(g), gguf_n_tensors(gr));
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.data);
        const struct gguf_tensor *tr = gguf_find_tensor(gr, nm);
        if (!tr || tr->type != QUANT_F32 || tr->n_elements != t->n_elements) {
            TEST_FAIL_("%s: tensor %s missing or not F32 of the same size in the reference", name, nm);
            continue;
        }
        float *out = xmalloc((size_t)t->n_elements * sizeof(float));
        quant_dequantize_row((enum quant_type)t->type, t->data, out, (size_t)t->n_elements);
        const float *ref = tr->data; /* data offsets are 32-aligned in the file */
        (*n_tensors)++;
        if (memcmp(out, ref, (size_t)t->n_elements * sizeof(float)) != 0) {
            (*n_mismatch)++;
            double d = max_abs_diff(out, ref, (size_t)t->n_elements);
            if (!(d <= worst)) worst = d;
            if (*n_mismatch <= 3) TEST_FAIL_("%s: %s (%s) differs, max |diff| %.3g", name, nm, quant_type_name(t->type), d);
        }
        free(out);
    }
    gguf_close(g);
    gguf_close(gr);
    return worst;
}

/* true if a 64-token batch of this file runs some matrix through the integer
 * gemm (gemm.h), i.e. with its activations quantised to 8 bits per block of 32
 * as llama.cpp's own run (.A) does, instead of dequantise + sgemm (deq-f32). */
static bool batch_quantises_acts(const char *name)
{
    char p[700], msg[256];
    snprintf(p, sizeof p, "%s/%s.gguf", kdir, name);
    struct gguf *g = NULL;
    if (gguf_open_file(p, &g, msg, sizeof msg)) return false;
    bool any = false;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        enum quant_type ty = (enum quant_type)t->type;
        if (t->n_dims == 2 && ty != QUANT_F32 && ty != QUANT_F16 && ty != QUANT_BF16 &&
            quant_isa_active() == QUANT_ISA_AVX512 && gemm_supported(QUANT_ISA_AVX512, ty))
            any = true;
    }
    gguf_close(g);
    return any;
}

static const char *const kfiles[] = {"tiny-pure-Q2_K", "tiny-pure-Q3_K", "tiny-pure-Q4_K", "tiny-pure-Q5_K",
                                     "tiny-pure-Q6_K", "tiny-pure-IQ4_NL", "tiny-pure-IQ4_XS", "tiny-mix-Q4_K_M",
                                     "tiny-mix-Q5_K_M", "tiny-mix-Q6_K"};
#define N_KFILES (sizeof kfiles / sizeof kfiles[0])

static void test_conformance(void)
{
    if (!have_kquant()) return;
    fprintf(stderr, "  %-18s %8s %12s %14s %14s %14s\n", "file", "tensors", "deq max|d|", "batch vs .A", "vs deq-f32.A",
            "decode vs .A");
    for (size_t fi = 0; fi < N_KFILES + 1; fi++) {
        const char *name = fi < N_KFILES ? kfiles[fi] : "tiny-f32";
        char p[700];
        size_t nt = 0, nbad = 0;
        double deq = 0;
        if (fi < N_KFILES) deq = check_dequant(name, &nt, &nbad);
        snprintf(p, sizeof p, "%s/%s.gguf", kdir, name);
        uint32_t nv = 0;
        float *lg = seq_logits(p, &nv);
        if (!lg) continue;
        size_t nl = (size_t)64 * nv;
        char r[700];
        snprintf(r, sizeof r, "%s/logits/%s.A.f32", kdir, name);
        float *ra = read_f32(r, nl);
        snprintf(r, sizeof r, "%s/logits/%s.deq-f32.A.f32", kdir, name);
        float *rd = fi < N_KFILES ? read_f32(r, nl) : NULL;
        double da = ra ? max_abs_diff(lg, ra, nl) : INFINITY, dd = rd ? max_abs_diff(lg, rd, nl) : NAN;
        uint32_t nv1 = 0;
        float *l1 = seq_logits_mode(p, &nv1, true);
        double d1 = l1 && ra && nv1 == nv ? max_abs_diff(l1, ra, nl) : INFINITY;
        free(l1);
        if (!(d1 <= 0.07)) TEST_FAIL_("%s: decode-path logits max |diff| %.4g > 0.07 vs llama.cpp", name, d1);
        fprintf(stderr, "  %-18s %8zu %12.3g %14.4g %14.3g %14.4g%s\n", name, nt, deq, da, dd, d1,
                nbad ? "  DEQUANT MISMATCH" : (fi < N_KFILES ? "  (bit-exact)" : ""));
        if (!ra) TEST_FAIL_("%s: logits/%s.A.f32 unreadable or not 64 x %u floats", name, name, nv);
        if (!(da <= 0.07)) TEST_FAIL_("%s: logits max |diff| %.4g > 0.07 vs llama.cpp", name, da);
        /* the dequantise + sgemm batch path equals the dequantised model to 1e-3; the
         * integer gemm quantises the activations like llama.cpp and the decode path do,
         * so it gets their bound (0.07) */
        double dtol = fi < N_KFILES && batch_quantises_acts(name) ? 0.07 : 1e-3;
        if (fi < N_KFILES && !(dd <= dtol)) TEST_FAIL_("%s: logits max |diff| %.4g > %g vs deq-f32", name, dd, dtol);
        if (nbad) TEST_FAIL_("%s: %zu of %zu tensors differ from ggml's dequantisation", name, nbad, nt);
        free(lg);
        free(ra);
        free(rd);
    }
}

/* Read into memory: Q4_K (and Q8_0 / Q4_0) matrices repacked at load into the
 * 16-row layout on an AVX-512 VNNI CPU (repack.h), so the batch and the decode
 * steps both run gemm_matmul_r16: both held to the same 0.07 against llama.cpp
 * as the mapped file's paths above (activations quantised per block of 32). */
static void test_in_memory(void)
{
    if (!have_kquant()) return;
    static const char *const names[] = {"tiny-pure-Q4_K", "tiny-mix-Q4_K_M", "tiny-pure-Q5_K", "tiny-pure-Q6_K",
                                        "tiny-mix-Q5_K_M"};
    static const enum quant_type r16_of[] = {QUANT_Q4_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_Q5_K};
    for (int fi = 0; fi < 5; fi++) {
        char p[700], r[700];
        snprintf(p, sizeof p, "%s/%s.gguf", kdir, names[fi]);
        uint32_t nv = 0, nv1 = 0;
        size_t n_r16 = 0;
        float *lg = seq_logits_load(p, &nv, false, true, &n_r16), *l1 = seq_logits_load(p, &nv1, true, true, NULL);
        size_t nl = (size_t)64 * nv;
        snprintf(r, sizeof r, "%s/logits/%s.A.f32", kdir, names[fi]);
        float *ra = read_f32(r, nl);
        double da = lg && ra ? max_abs_diff(lg, ra, nl) : INFINITY;
        double d1 = l1 && ra && nv1 == nv ? max_abs_diff(l1, ra, nl) : INFINITY;
        fprintf(stderr, "  %-18s in memory: %zu matrices in the load-time layout; batch %.4g, decode %.4g vs .A\n",
                names[fi], n_r16, da, d1);
        if (gemm_r16_supported(quant_isa_active(), r16_of[fi]) && quant_isa_active() != QUANT_ISA_SCALAR)
            ASSERT_TRUE(n_r16 > 0);
        if (!(da <= 0.07)) TEST_FAIL_("%s in memory: batch logits max |diff| %.4g > 0.07", names[fi], da);
        if (!(d1 <= 0.07)) TEST_FAIL_("%s in memory: decode logits max |diff| %.4g > 0.07", names[fi], d1);
        free(lg);
        free(l1);
        free(ra);
    }
}

static void test_split(void)
{
    if (!have_kquant()) return;
    char one[700], first[700];
    snprintf(one, sizeof one, "%s/tiny-mix-Q4_K_M.gguf", kdir);
    snprintf(first, sizeof first, "%s/split/tiny-mix-Q4_K_M-00001-of-00003.gguf", kdir);
    uint32_t n1 = 0, n2 = 0;
    float *a = seq_logits(one, &n1), *b = seq_logits(first, &n2);
    ASSERT_TRUE(a && b);
    if (a && b) {
        ASSERT_EQ(n1, n2);
        if (memcmp(a, b, (size_t)64 * n1 * sizeof(float)) != 0)
            TEST_FAIL_("split logits differ: max |diff| %.3g", max_abs_diff(a, b, (size_t)64 * n1));
        else
            fprintf(stderr, "  split (3 shards) logits identical to the single file\n");
    }
    free(a);
    free(b);
}

/* Our quantisers against llama.cpp's on the same F32 weights (tiny-f32.gguf
 * is the source of every file in the set): for each file, every tensor that
 * llama.cpp quantised is quantised by quant_quantize_row to the same type and
 * dequantised; RMS error over all of them vs the F32 weights, next to the RMS
 * error of llama.cpp's dequantised copy. Ours must be <= 1.05 x theirs. */
static void test_quantizer_rms(void)
{
    if (!have_kquant()) return;
    char p[700], msg[256];
    snprintf(p, sizeof p, "%s/tiny-f32.gguf", kdir);
    struct gguf *src = NULL;
    if (gguf_open_file(p, &src, msg, sizeof msg)) {
        TEST_FAIL_("%s: %s", p, msg);
        return;
    }
    fprintf(stderr, "  %-18s %12s %12s %8s\n", "file", "ours RMS", "llama.cpp", "ratio");
    for (size_t fi = 0; fi < N_KFILES; fi++) {
        struct gguf *g = NULL, *gr = NULL;
        snprintf(p, sizeof p, "%s/%s.gguf", kdir, kfiles[fi]);
        char r[700];
        snprintf(r, sizeof r, "%s/ref/%s.deq-f32.gguf", kdir, kfiles[fi]);
        if (gguf_open_file(p, &g, msg, sizeof msg) || gguf_open_file(r, &gr, msg, sizeof msg)) {
            TEST_FAIL_("%s: %s", kfiles[fi], msg);
            gguf_close(g);
            continue;
        }
        double se_ours = 0, se_theirs = 0;
        size_t count = 0;
        for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
            const struct gguf_tensor *t = gguf_tensor(g, i);
            if (t->type == QUANT_F32) continue;
            char nm[256];
            snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.data);
            const struct gguf_tensor *ts = gguf_find_tensor(src, nm), *tr = gguf_find_tensor(gr, nm);
            if (!ts || !tr || ts->type != QUANT_F32 || ts->n_elements != t->n_elements) {
                TEST_FAIL_("%s: %s not F32 in the source", kfiles[fi], nm);
                continue;
            }
            size_t n = (size_t)t->n_elements;
            void *q = xmalloc(quant_row_bytes((enum quant_type)t->type, n));
            float *back = xmalloc(n * sizeof(float));
            const float *x = ts->data, *theirs = tr->data;
            quant_quantize_row((enum quant_type)t->type, x, q, n);
            quant_dequantize_row((enum quant_type)t->type, q, back, n);
            for (size_t k = 0; k < n; k++) {
                se_ours += ((double)back[k] - x[k]) * ((double)back[k] - x[k]);
                se_theirs += ((double)theirs[k] - x[k]) * ((double)theirs[k] - x[k]);
            }
            count += n;
            free(q);
            free(back);
        }
        double ours = sqrt(se_ours / (double)count), theirs = sqrt(se_theirs / (double)count);
        fprintf(stderr, "  %-18s %12.6f %12.6f %8.4f\n", kfiles[fi], ours, theirs, ours / theirs);
        if (!(ours <= 1.05 * theirs))
            TEST_FAIL_("%s: our RMS error %.6f > 1.05 x llama.cpp's %.6f", kfiles[fi], ours, theirs);
        gguf_close(g);
        gguf_close(gr);
    }
    gguf_close(src);
}

/* quantize_file on tiny-f32 with llama.cpp's mixtures: every tensor gets the
 * type llama.cpp gave it in its own Q4_K_M / Q5_K_M file; each quantised
 * tensor's bytes are quant_quantize_row of the source; the file loads; its
 * seqA logits are as far from the F32 model's as llama.cpp's are: RMS of the
 * difference to the F32 model's logits within 1.25x of llama.cpp's (both
 * printed, and the max |diff|, a noisier figure, for information). */
static void test_quantize_file(void)
{
    if (!have_kquant()) return;
    static const char *const schemes[] = {"Q4_K_M", "Q5_K_M"};
    char src[700], msg[256];
    snprintf(src, sizeof src, "%s/tiny-f32.gguf", kdir);
    uint32_t nv = 0;
    float *lf32 = seq_logits(src, &nv);
    if (!lf32) return;
    for (size_t si = 0; si < 2; si++) {
        char out[256], theirs_p[700], la_p[700];
        snprintf(out, sizeof out, "/tmp/test_kquant_%d_%s.gguf", (int)getpid(), schemes[si]);
        snprintf(theirs_p, sizeof theirs_p, "%s/tiny-mix-%s.gguf", kdir, schemes[si]);
        snprintf(la_p, sizeof la_p, "%s/logits/tiny-mix-%s.A.f32", kdir, schemes[si]);
        struct quantize_stats st;
        ASSERT_OK(quantize_file(src, out, schemes[si], &st, msg, sizeof msg));
        struct gguf *go = NULL, *gt = NULL, *gs = NULL;
        if (gguf_open_file(out, &go, msg, sizeof msg) || gguf_open_file(theirs_p, &gt, msg, sizeof msg) ||
            gguf_open_file(src, &gs, msg, sizeof msg)) {
            TEST_FAIL_("%s: %s", schemes[si], msg);
        } else {
            ASSERT_EQ(gguf_n_tensors(go), gguf_n_tensors(gt));
            for (uint64_t i = 0; i < gguf_n_tensors(go); i++) {
                const struct gguf_tensor *t = gguf_tensor(go, i);
                char nm[256];
                snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.data);
                const struct gguf_tensor *tt = gguf_find_tensor(gt, nm), *ts = gguf_find_tensor(gs, nm);
                if (!tt || !ts || tt->type != t->type) {
                    TEST_FAIL_("%s %s: type %s, llama.cpp has %s", schemes[si], nm, quant_type_name(t->type),
                               tt ? quant_type_name(tt->type) : "none");
                    continue;
                }
                void *q = xmalloc(t->n_bytes);
                quant_quantize_row((enum quant_type)t->type, ts->data, q, (size_t)t->n_elements);
                if (memcmp(q, t->data, t->n_bytes) != 0) TEST_FAIL_("%s %s: bytes differ", schemes[si], nm);
                free(q);
            }
        }
        gguf_close(go);
        gguf_close(gt);
        gguf_close(gs);
        uint32_t nv2 = 0;
        float *lo = seq_logits(out, &nv2), *la = read_f32(la_p, (size_t)64 * nv);
        if (lo && la && nv2 == nv) {
            size_t nl = (size_t)64 * nv;
            double so = 0, sl = 0;
            for (size_t k = 0; k < nl; k++) {
                so += ((double)lo[k] - lf32[k]) * ((double)lo[k] - lf32[k]);
                sl += ((double)la[k] - lf32[k]) * ((double)la[k] - lf32[k]);
            }
            double ours = sqrt(so / (double)nl), theirs = sqrt(sl / (double)nl);
            fprintf(stderr, "  %s: logits vs the F32 model: RMS ours %.4f, llama.cpp's %.4f (max |diff| %.4f, %.4f)\n",
                    schemes[si], ours, theirs, max_abs_diff(lo, lf32, nl), max_abs_diff(la, lf32, nl));
            if (!(ours <= 1.25 * theirs)) TEST_FAIL_("%s: %.4f > 1.25 x %.4f", schemes[si], ours, theirs);
        } else {
            TEST_FAIL_("%s: logits unavailable", schemes[si]);
        }
        free(lo);
        free(la);
        remove(out);
    }
    free(lf32);
}

int main(void)
{
    TEST_RUN(test_types);
    TEST_RUN(test_dot_levels);
    TEST_RUN(test_dot_multi);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_scales_finite);
    TEST_RUN(test_conformance);
    TEST_RUN(test_in_memory);
    TEST_RUN(test_split);
    TEST_RUN(test_quantizer_rms);
    TEST_RUN(test_quantize_file);
    TEST_DONE();
}
