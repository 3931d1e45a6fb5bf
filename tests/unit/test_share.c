/*
 * test_share.c - Shared Attention and the re-balancer against independent
 * references.
 *
 * naive_forward() below is a self-contained double-precision Llama forward
 * pass written from the DESIGN.md formulas: no cache, every position
 * recomputed, P of each layer materialised as a full [head][i][j] matrix, a
 * sharing layer applying P[source] to its own V, the re-balancer's mask taken
 * from layer 0 and boosts applied to unboosted probabilities. The engine
 * (fast path: OpenBLAS/SIMD/threads; reference path: its own double loops,
 * with the KV cache and chunking) must match it:
 *   - fast path:      max |engine - naive| / max |naive| <= 1e-5
 *   - engine ref path: same ratio <= 1e-6
 * on stories260K (GQA: 8 query heads, 4 KV heads), for a whole prompt, chunked
 * prefill across chunk boundaries, and token-by-token decode.
 */
#include "../test.h"

#include "engine/attention.h"
#include "engine/errors.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/rebalance.h"
#include "engine/share.h"
#include "engine/transformer.h"
#include "../tf_pair.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_TOK 41
static const int32_t prompt[N_TOK] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                      317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265,
                                      282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};

static struct model *load260k(void)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct model *m = NULL;
    struct model_load_opts o = {.use_mmap = true, .no_tokenizer = true};
    if (model_load(path, &o, &m, msg, sizeof msg)) fprintf(stderr, "load: %s\n", msg);
    return m;
}

/* ---- the independent reference ---- */

static void naive_matvec(const struct model_weight *w, const double *x, double *y)
{
    float row[4096];
    for (uint32_t r = 0; r < w->n_out; r++) {
        quant_dequantize_row(w->type, (const char *)w->data + (size_t)r * w->row_bytes, row, w->n_in);
        double s = 0;
        for (uint32_t i = 0; i < w->n_in; i++) s += row[i] * x[i];
        y[r] = s;
    }
}

static void naive_rmsnorm(const double *x, const float *w, double *out, uint32_t n, float eps)
{
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = x[i] * sc * w[i];
}

static void naive_rope(double *v, uint32_t n_heads, uint32_t hd, uint32_t n_rot, uint32_t pos, float base)
{
    for (uint32_t h = 0; h < n_heads; h++)
        for (uint32_t i = 0; i < n_rot / 2; i++) {
            double th = pos * pow(base, -2.0 * i / n_rot), c = cos(th), s = sin(th);
            double *x = v + h * hd + 2 * i, a = x[0], b = x[1];
            x[0] = a * c - b * s;
            x[1] = a * s + b * c;
        }
}

/* logits [n][n_vocab] for every position */
static double *naive_forward(const struct model *m, const int32_t *tok, uint32_t n, const struct share_plan *plan,
                             const struct rebalance_params *rb)
{
    const struct model_hparams *hp = &m->hp;
    uint32_t D = hp->dim, H = hp->n_head, KV = hp->n_head_kv, hd = hp->head_dim, F = hp->ffn, L = hp->n_layer;
    uint32_t qd = H * hd, kvd = KV * hd;
    double *x = calloc((size_t)n * D, sizeof *x), *xb = calloc(D, sizeof *xb), *q = calloc((size_t)n * qd, sizeof *q),
           *k = calloc((size_t)n * kvd, sizeof *k), *v = calloc((size_t)n * kvd, sizeof *v),
           *o = calloc(qd, sizeof *o), *tmp = calloc(D > F ? D : F, sizeof *tmp), *g = calloc(F, sizeof *g),
           *u = calloc(F, sizeof *u), *logits = calloc((size_t)n * hp->n_vocab, sizeof *logits);
    double **P = calloc(L, sizeof *P); /* P[l][h][i][j] */
    unsigned char *M = calloc((size_t)H * n * n, 1);
    float row[4096];
    for (uint32_t l = 0; l < L; l++) P[l] = calloc((size_t)H * n * n, sizeof(double));
    for (uint32_t i = 0; i < n; i++) {
        quant_dequantize_row(m->token_embd.type, (const char *)m->token_embd.data + (size_t)tok[i] * m->token_embd.row_bytes, row, D);
        for (uint32_t d = 0; d < D; d++) x[(size_t)i * D + d] = row[d];
    }
    for (uint32_t l = 0; l < L; l++) {
        const struct model_layer *ly = &m->layers[l];
        int src = plan ? plan->source[l] : -1;
        for (uint32_t i = 0; i < n; i++) {
            naive_rmsnorm(x + (size_t)i * D, ly->attn_norm, xb, D, hp->rms_eps);
            naive_matvec(&ly->wv, xb, v + (size_t)i * kvd);
            if (src < 0) {
                naive_matvec(&ly->wq, xb, q + (size_t)i * qd);
                naive_matvec(&ly->wk, xb, k + (size_t)i * kvd);
                naive_rope(q + (size_t)i * qd, H, hd, hp->n_rot, i, hp->rope_base);
                naive_rope(k + (size_t)i * kvd, KV, hd, hp->n_rot, i, hp->rope_base);
            }
        }
        const double *Pl = src < 0 ? P[l] : P[src];
        if (src < 0)
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t i = 0; i < n; i++) {
                    double *pr = P[l] + ((size_t)h * n + i) * n, mx = -1e300, z = 0;
                    uint32_t kh = h / (H / KV);
                    for (uint32_t j = 0; j <= i; j++) {
                        double s = 0;
                        for (uint32_t d = 0; d < hd; d++) s += q[(size_t)i * qd + h * hd + d] * k[(size_t)j * kvd + kh * hd + d];
                        pr[j] = s / sqrt((double)hd);
                        mx = pr[j] > mx ? pr[j] : mx;
                    }
                    for (uint32_t j = 0; j <= i; j++) z += exp(pr[j] - mx);
                    for (uint32_t j = 0; j <= i; j++) pr[j] = exp(pr[j] - mx) / z;
                    if (l == 0)
                        for (uint32_t j = 0; j <= i; j++) M[((size_t)h * n + i) * n + j] = j != i && pr[j] > rb->tau;
                }
        double f = (rb->on && l > 0) ? 1 + rb->alpha * (1 - (double)l / (L - 1)) : 1;
        for (uint32_t i = 0; i < n; i++) {
            for (uint32_t h = 0; h < H; h++) {
                uint32_t kh = h / (H / KV);
                const double *pr = Pl + ((size_t)h * n + i) * n;
                const unsigned char *mr = M + ((size_t)h * n + i) * n;
                double norm = 0;
                for (uint32_t j = 0; j <= i; j++) norm += pr[j] * ((rb->on && l > 0 && mr[j]) ? f : 1);
                if (!(rb->on && rb->renormalize)) norm = 1;
                for (uint32_t d = 0; d < hd; d++) {
                    double s = 0;
                    for (uint32_t j = 0; j <= i; j++)
                        s += pr[j] * ((rb->on && l > 0 && mr[j]) ? f : 1) * v[(size_t)j * kvd + kh * hd + d];
                    o[h * hd + d] = s / norm;
                }
            }
            naive_matvec(&ly->wo, o, tmp);
            for (uint32_t d = 0; d < D; d++) x[(size_t)i * D + d] += tmp[d];
            naive_rmsnorm(x + (size_t)i * D, ly->ffn_norm, xb, D, hp->rms_eps);
            naive_matvec(&ly->w_gate, xb, g);
            naive_matvec(&ly->w_up, xb, u);
            for (uint32_t e = 0; e < F; e++) g[e] = g[e] / (1 + exp(-g[e])) * u[e];
            naive_matvec(&ly->w_down, g, tmp);
            for (uint32_t d = 0; d < D; d++) x[(size_t)i * D + d] += tmp[d];
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        naive_rmsnorm(x + (size_t)i * D, m->output_norm, xb, D, hp->rms_eps);
        naive_matvec(&m->output, xb, logits + (size_t)i * hp->n_vocab);
    }
    for (uint32_t l = 0; l < L; l++) free(P[l]);
    free(P); free(M); free(x); free(xb); free(q); free(k); free(v); free(o); free(tmp); free(g); free(u);
    return logits;
}

/* ---- engine runs ---- */

enum mode { PROMPT_ONE_CHUNK, PROMPT_CHUNKS_OF_7, DECODE_ONE_BY_ONE };

/* Engine logits [n][n_vocab] for all positions, fed as `mode` says. */
static float *engine_logits(const struct model *m, const struct share_plan *plan, const struct rebalance_params *rb,
                            bool reference, enum mode mode)
{
    uint32_t V = m->hp.n_vocab;
    struct tf_opts o = {.n_ctx = 64, .n_batch = mode == PROMPT_CHUNKS_OF_7 ? 7 : 64, .n_threads = 2,
                        .reference = reference, .all_logits = true, .plan = plan};
    if (rb) o.rebalance = *rb;
    struct tf_pair c;
    if (tf_pair_create(m, &o, &c)) return NULL;
    float *out = malloc((size_t)N_TOK * V * sizeof *out);
    uint32_t step = mode == PROMPT_ONE_CHUNK ? N_TOK : mode == PROMPT_CHUNKS_OF_7 ? 7 : 1;
    for (uint32_t p = 0; p < N_TOK; p += step) {
        uint32_t cnt = N_TOK - p < step ? N_TOK - p : step;
        const float *lg;
        if (tf_pair_forward(&c, prompt + p, cnt, p, &lg)) {
            free(out);
            out = NULL;
            break;
        }
        memcpy(out + (size_t)p * V, lg, (size_t)cnt * V * sizeof *out);
    }
    tf_pair_destroy(&c);
    return out;
}

static double rel_err(const float *a, const double *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    return md / mr;
}

static void check_against_naive(const char *plan_text, const struct rebalance_params *rb)
{
    struct model *m = load260k();
    if (!m) {
        ASSERT_TRUE(m != NULL);
        return;
    }
    struct share_plan plan;
    char msg[128];
    ASSERT_OK(share_plan_parse(&plan, plan_text, m->hp.n_layer, msg, sizeof msg));
    struct rebalance_params off = rebalance_default_params();
    if (!rb) rb = &off;
    double *ref = naive_forward(m, prompt, N_TOK, &plan, rb);
    size_t n = (size_t)N_TOK * m->hp.n_vocab;
    static const char *names[] = {"one chunk", "chunks of 7", "decode"};
    for (int mode = 0; mode < 3; mode++) {
        float *fast = engine_logits(m, &plan, rb, false, (enum mode)mode);
        float *eref = engine_logits(m, &plan, rb, true, (enum mode)mode);
        ASSERT_TRUE(fast && eref);
        if (fast && eref) {
            double ef = rel_err(fast, ref, n), er = rel_err(eref, ref, n);
            fprintf(stderr, "  plan %-5s rebalance %s, %-11s: fast %.2e, engine-ref %.2e\n", plan_text, rb->on ? "on " : "off",
                    names[mode], ef, er);
            ASSERT_TRUE(ef <= 1e-5);
            ASSERT_TRUE(er <= 1e-6);
        }
        free(fast);
        free(eref);
    }
    free(ref);
    model_free(m);
}

static void test_sharing_off_matches_naive(void) { check_against_naive("off", NULL); }
static void test_sharing_3_4_matches_naive(void) { check_against_naive("3-4", NULL); }
static void test_sharing_1_2_and_4_matches_naive(void) { check_against_naive("1-2,4", NULL); }

static void test_rebalance_matches_naive(void)
{
    struct rebalance_params rb = rebalance_default_params();
    rb.on = true;
    check_against_naive("off", &rb);
    check_against_naive("3-4", &rb); /* sharing layers boost the source's unboosted weights */
    rb.renormalize = true;
    rb.alpha = 0.5f;
    rb.tau = 0.05f;
    check_against_naive("2-3", &rb);
}

static void test_sharing_off_is_bit_identical(void)
{
    /* an explicit "off" plan and re-balancer off run exactly the pre-feature code path */
    struct model *m = load260k();
    if (!m) {
        ASSERT_TRUE(m != NULL);
        return;
    }
    struct share_plan off;
    share_plan_init(&off, m->hp.n_layer);
    struct rebalance_params rb = rebalance_default_params();
    float *a = engine_logits(m, NULL, NULL, false, PROMPT_CHUNKS_OF_7);
    float *b = engine_logits(m, &off, &rb, false, PROMPT_CHUNKS_OF_7);
    ASSERT_TRUE(a && b && memcmp(a, b, (size_t)N_TOK * m->hp.n_vocab * sizeof *a) == 0);
    free(a);
    free(b);
    model_free(m);
}

static void test_plans_change_the_output(void)
{
    /* guards the comparisons above against a plan that is silently ignored */
    struct model *m = load260k();
    if (!m) {
        ASSERT_TRUE(m != NULL);
        return;
    }
    struct share_plan plan;
    ASSERT_OK(share_plan_parse(&plan, "3-4", m->hp.n_layer, NULL, 0));
    struct rebalance_params rb = rebalance_default_params();
    size_t n = (size_t)N_TOK * m->hp.n_vocab;
    double *off = naive_forward(m, prompt, N_TOK, NULL, &rb);
    float *shared = engine_logits(m, &plan, NULL, false, PROMPT_ONE_CHUNK);
    rb.on = true;
    float *boosted = engine_logits(m, NULL, &rb, false, PROMPT_ONE_CHUNK);
    ASSERT_TRUE(shared && boosted);
    if (shared && boosted) {
        fprintf(stderr, "  vs sharing off: share 3-4 differs by %.3g, rebalance by %.3g (relative)\n",
                rel_err(shared, off, n), rel_err(boosted, off, n));
        ASSERT_TRUE(rel_err(shared, off, n) > 1e-3);
        ASSERT_TRUE(rel_err(boosted, off, n) > 1e-3);
    }
    free(off);
    free(shared);
    free(boosted);
    model_free(m);
}

static void test_k_cache_absent_for_sharing_layers(void)
{
    struct model *m = load260k();
    if (!m) {
        ASSERT_TRUE(m != NULL);
        return;
    }
    /* pages of 16 positions, taken as positions are written: none before the first token */
    const size_t page = 16 * (size_t)m->hp.n_head_kv * m->hp.head_dim * sizeof(float);
    ASSERT_EQ(tf_kv_page_bytes(m, 16, false), page);
    ASSERT_EQ(tf_kv_page_bytes(m, 16, true), page / 2);
    struct share_plan plan;
    ASSERT_OK(share_plan_parse(&plan, "1-2,4", m->hp.n_layer, NULL, 0));
    ASSERT_EQ(tf_kv_pages_per_block(m, &plan), 7);
    struct tf_opts o = {.n_ctx = 64, .plan = &plan, .kv_block = 16};
    struct tf_pair c;
    ASSERT_OK(tf_pair_create(m, &o, &c));
    size_t kb, vb;
    tf_kv_allocated(c.seq, &kb, &vb);
    ASSERT_EQ(kb, 0);
    ASSERT_EQ(vb, 0);
    const float *lg;
    ASSERT_OK(tf_pair_forward(&c, prompt, 10, 0, &lg));
    tf_kv_allocated(c.seq, &kb, &vb);
    ASSERT_EQ(kb, 2 * page); /* one block: K in layers 0 and 3 only */
    ASSERT_EQ(vb, 5 * page);
    struct tf_cache_stats st;
    tf_cache_stats(c.seq, 10, &st);
    const uint64_t tok_layer = 10ull * m->hp.n_head_kv * m->hp.head_dim * 4;
    ASSERT_EQ(st.sharing_layers, 3);
    ASSERT_EQ(st.k_bytes, 2 * tok_layer);
    ASSERT_EQ(st.v_bytes, 5 * tok_layer);
    ASSERT_EQ(st.kv_bytes_without_sharing, 10 * tok_layer);
    ASSERT_EQ(st.kv_bytes_saved, 3 * tok_layer);
    ASSERT_NEAR(st.kv_saved_ratio, 0.3, 1e-12);
    ASSERT_EQ(st.k_pages, 2);
    ASSERT_EQ(st.v_pages, 5);
    ASSERT_EQ(st.kv_bytes_paged, 7 * page);
    /* Q and K projections (2*dim*(qdim+kvdim)) + scores/softmax per token and sharing layer */
    uint64_t expect = 0;
    for (uint32_t p = 0; p < 10; p++)
        expect += 3 * (2ull * 64 * (64 + 32) + 8ull * (p + 1) * (2 * 8 + 5));
    ASSERT_EQ(st.attention_flops_saved, expect);
    /* position 16 opens a second block */
    ASSERT_OK(tf_pair_forward(&c, prompt, 7, 10, &lg));
    tf_kv_allocated(c.seq, &kb, &vb);
    ASSERT_EQ(kb, 4 * page);
    ASSERT_EQ(vb, 10 * page);
    /* switching plans frees everything; the next token takes K in every layer */
    ASSERT_OK(tf_reset(c.seq, NULL, NULL));
    tf_kv_allocated(c.seq, &kb, &vb);
    ASSERT_EQ(kb + vb, 0);
    ASSERT_OK(tf_pair_forward(&c, prompt, 1, 0, &lg));
    tf_kv_allocated(c.seq, &kb, &vb);
    ASSERT_EQ(kb, 5 * page);
    tf_pair_destroy(&c);
    model_free(m);
}

/* A batched decode step over sequences with different plans, re-balancer
 * settings and lengths equals each sequence run alone: exactly on the
 * matrix-vector path (its pairwise kernel keeps quant_dot's summation order),
 * within 1e-4 relative on the sgemm path (OPS_GEMM_MIN_TOKENS rows); the
 * greedy token is the same. */
static void check_batch(uint32_t n)
{
    struct model *m = load260k();
    if (!m) {
        ASSERT_TRUE(m != NULL);
        return;
    }
    const char *plans[3] = {"off", "3-4", "1-2"};
    struct tf_pair batch[64], alone[64];
    uint32_t pos[64];
    int32_t tok[64];
    uint32_t V = m->hp.n_vocab;
    for (uint32_t i = 0; i < n; i++) {
        struct share_plan plan;
        ASSERT_OK(share_plan_parse(&plan, plans[i % 3], m->hp.n_layer, NULL, 0));
        struct tf_opts o = {.n_ctx = 64, .n_batch = 64, .n_threads = 2, .plan = &plan};
        o.rebalance = rebalance_default_params();
        o.rebalance.on = i % 2 == 1;
        ASSERT_OK(tf_pair_create(m, &o, &batch[i]));
        ASSERT_OK(tf_pair_create(m, &o, &alone[i]));
        pos[i] = 5 + (2 * i) % 30; /* different lengths (the prompt has 41 tokens) */
        const float *lg;
        ASSERT_OK(tf_pair_forward(&batch[i], prompt, pos[i], 0, &lg));
        ASSERT_OK(tf_pair_forward(&alone[i], prompt, pos[i], 0, &lg));
        tok[i] = prompt[pos[i]];
    }
    float *lb = malloc((size_t)n * V * sizeof *lb);
    double worst = 0;
    bool same_argmax = true;
    for (int step = 0; step < 4; step++) {
        struct tf_seg segs[64]; /* one decode row per sequence, in one step (batch[0]'s workspace) */
        for (uint32_t i = 0; i < n; i++)
            segs[i] = (struct tf_seg){.seq = batch[i].seq, .tokens = &tok[i], .T = 1, .pos0 = pos[i], .want_logits = true};
        ASSERT_OK(tf_step(batch[0].ws, segs, n, lb));
        for (uint32_t i = 0; i < n; i++) {
            const float *la;
            ASSERT_OK(tf_pair_forward(&alone[i], &tok[i], 1, pos[i], &la));
            double md = 0, mr = 0;
            for (uint32_t v = 0; v < V; v++) {
                md = fmax(md, fabs((double)lb[(size_t)i * V + v] - la[v]));
                mr = fmax(mr, fabs((double)la[v]));
            }
            worst = fmax(worst, md / mr);
            uint32_t ab = 0, aa = 0;
            for (uint32_t v = 1; v < V; v++) {
                if (lb[(size_t)i * V + v] > lb[(size_t)i * V + ab]) ab = v;
                if (la[v] > la[aa]) aa = v;
            }
            same_argmax = same_argmax && ab == aa;
            pos[i]++;
            tok[i] = prompt[pos[i]];
        }
    }
    fprintf(stderr, "  batch of %u: max relative logit difference to separate runs %.3g\n", n, worst);
    ASSERT_TRUE(same_argmax);
    if (n < OPS_GEMM_MIN_TOKENS)
        ASSERT_TRUE(worst == 0);
    else
        ASSERT_TRUE(worst <= 1e-4);
    for (uint32_t i = 0; i < n; i++) {
        struct tf_cache_stats sa, sb;
        tf_cache_stats(batch[i].seq, pos[i], &sa);
        tf_cache_stats(alone[i].seq, pos[i], &sb);
        ASSERT_EQ(sa.attention_flops_saved, sb.attention_flops_saved);
        tf_pair_destroy(&batch[i]);
        tf_pair_destroy(&alone[i]);
    }
    free(lb);
    model_free(m);
}

static void test_batched_decode_equals_separate(void)
{
    check_batch(2);
    check_batch(3);
    check_batch(8);
    check_batch(OPS_GEMM_MIN_TOKENS);
}

static void test_plan_errors(void)
{
    struct share_plan p;
    char msg[160];
    ASSERT_OK(share_plan_parse(&p, "3-4", 5, msg, sizeof msg));
    ASSERT_EQ(share_plan_n_sharing(&p), 2);
    ASSERT_EQ(p.source[3], 2);
    ASSERT_EQ(p.source[4], 2);
    ASSERT_OK(share_plan_parse(&p, "1, 3-4", 5, msg, sizeof msg));
    char buf[64];
    share_plan_format(&p, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "1-1,3-4");
    struct {
        const char *text, *needle;
    } bad[] = {
        {"0-2", "layer 0"},            {"3-7", "out of range"},     {"2-1", "start is after end"},
        {"1-2,2-3", "overlaps"},       {"2-3,1", "source of span"}, {"1-1,2-3", "source layer 1"},
        {"a-b", "expected 'a-b'"},     {"3-", "expected"},          {"3-4,", "expected"},
        {"3--4", "expected"},          {"-1", "expected"},          {"99999999999", "expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msg[0] = 0;
        ASSERT_EQ(share_plan_parse(&p, bad[i].text, 5, msg, sizeof msg), SA_ERR_INVALID_ARG);
        ASSERT_CONTAINS(msg, bad[i].needle);
    }
    ASSERT_OK(share_plan_parse(&p, "off", 5, msg, sizeof msg));
    ASSERT_EQ(p.n_spans, 0);
}

static void test_auto_plan(void)
{
    /* 6 layers: 1~2~3 similar to 1 (source 1 for 2-3), 5 similar to 4 */
    float sim[36];
    for (int i = 0; i < 36; i++) sim[i] = 0.2f;
    sim[1 * 6 + 2] = 0.95f;
    sim[1 * 6 + 3] = 0.91f;
    sim[4 * 6 + 5] = 0.93f;
    struct share_plan p;
    share_plan_auto(&p, sim, 6, 0.9f);
    char buf[64];
    share_plan_format(&p, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "2-3,5-5");
    share_plan_auto(&p, sim, 6, 0.99f);
    ASSERT_EQ(p.n_spans, 0);
}

static void test_rebalance_hand_computed(void)
{
    /* one head, head_dim 2, two positions; layer 0 builds the mask, layer 2 of 3 is boosted */
    float q[4] = {1, 0, 0, 2}, k[4] = {0.5f, 0, 1, 1}, v[4] = {1, 2, 3, 4};
    float probs[4], out[4];
    uint8_t mask[4] = {0};
    /* one position per page: the two rows of K and V sit on separate pages */
    const void *kp[2] = {k, k + 2}, *vp[2] = {v, v + 2};
    struct attn_args a = {.q = q, .k_pages = kp, .v_pages = vp, .block = 1, .out = out, .probs = probs,
                          .probs_stride = 2, .probs_hstride = 4, .T = 2, .pos0 = 0,
                          .n_head = 1, .n_head_kv = 1, .head_dim = 2, .kv_stride = 2, .compute_scores = true,
                          .mask_out = mask, .mask_tau = 0.3f};
    attn_compute(&a, 0, 1);
    /* row 1: scores q1.k = (0, 2)/sqrt(2): p = softmax(0, 1.41421356) */
    double e = exp(2 / sqrt(2.0)), p10 = 1 / (1 + e), p11 = e / (1 + e);
    ASSERT_NEAR(probs[2], p10, 1e-6);
    ASSERT_NEAR(probs[3], p11, 1e-6);
    ASSERT_EQ(mask[0], 0); /* self */
    ASSERT_EQ(mask[2], 0); /* p10 = 0.196 <= tau 0.3 */
    ASSERT_EQ(mask[3], 0); /* self */
    /* lower tau: position 0 becomes masked for row 1 */
    a.mask_tau = 0.1f;
    attn_compute(&a, 0, 1);
    ASSERT_EQ(mask[2], 1);
    /* a downstream layer l=1 of L=3 boosts by 1 + 0.2*(1 - 1/2) = 1.1, no renormalisation */
    struct rebalance_params rb = rebalance_default_params();
    float f = rebalance_factor(&rb, 1, 3);
    ASSERT_NEAR(f, 1.1, 1e-7);
    a.mask_out = NULL;
    a.mask = mask;
    a.boost = f;
    attn_compute(&a, 0, 1);
    ASSERT_NEAR(out[2], 1.1 * p10 * 1 + p11 * 3, 1e-6);
    ASSERT_NEAR(out[3], 1.1 * p10 * 2 + p11 * 4, 1e-6);
    ASSERT_NEAR(out[0], 1, 1e-6); /* row 0 sees only itself, never masked */
    a.renormalize = true;
    attn_compute(&a, 0, 1);
    double z = 1.1 * p10 + p11;
    ASSERT_NEAR(out[2], (1.1 * p10 * 1 + p11 * 3) / z, 1e-6);
    ASSERT_NEAR(rebalance_factor(&rb, 0, 3), 1.0, 0);
    ASSERT_NEAR(rebalance_factor(&rb, 2, 3), 1.0, 1e-7);
}

/* The Shared Attention invariant is an always-on assertion: a plan whose sharing layer's
 * source is not the last layer that computed (here layer 2 reads layer 0 although layer 1
 * computes in between: share_plan_parse never builds this) aborts the step, in a child
 * process; the same step with the valid plan "2-2" (source 1) runs. */
static int step_in_child(const struct share_plan *plan)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct model *m = load260k();
        struct tf_opts o = {.n_ctx = 32, .n_batch = 32, .n_threads = 1, .plan = plan};
        struct tf_pair p;
        const float *lg;
        if (!m || tf_pair_create(m, &o, &p) || tf_pair_forward(&p, prompt, 8, 0, &lg)) _exit(3);
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFSIGNALED(st) ? 1000 + WTERMSIG(st) : WEXITSTATUS(st);
}

static void test_source_invariant_is_asserted(void)
{
    struct share_plan good, bad;
    ASSERT_OK(share_plan_parse(&good, "2-2", 5, NULL, 0));
    ASSERT_EQ(step_in_child(&good), 0);
    bad = good;
    bad.source[2] = 0; /* layer 1 computes between the source and the sharing layer */
    ASSERT_EQ(step_in_child(&bad), 1000 + SIGABRT);
}

int main(void)
{
    TEST_RUN(test_plan_errors);
    TEST_RUN(test_auto_plan);
    TEST_RUN(test_rebalance_hand_computed);
    TEST_RUN(test_k_cache_absent_for_sharing_layers);
    TEST_RUN(test_sharing_off_is_bit_identical);
    TEST_RUN(test_plans_change_the_output);
    TEST_RUN(test_sharing_off_matches_naive);
    TEST_RUN(test_sharing_3_4_matches_naive);
    TEST_RUN(test_sharing_1_2_and_4_matches_naive);
    TEST_RUN(test_rebalance_matches_naive);
    TEST_RUN(test_batched_decode_equals_separate);
    TEST_RUN(test_source_invariant_is_asserted);
    TEST_DONE();
}
