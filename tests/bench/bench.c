/*
 * bench.c - speed of the forward pass next to the machine's own ceilings.
 *
 *   build/bench -m MODEL.gguf [-t 1,2] [--prompt 128] [--gen 64] [--mmap both|on|off] [--json FILE]
 *               [--share SPANS]
 *
 * Measures, in one run:
 *   - read bandwidth: the best of 5 passes summing a 1 GiB buffer (far larger
 *     than any cache) with 1 and with 2 threads;
 *   - the cblas_sgemm rate for a 128 x 2048 x 2048 product on 1 and 2 threads;
 *   - for the model: prefill tok/s of a 128-token prompt in one chunk and
 *     decode tok/s over 64 tokens, per thread count, with the weights mapped
 *     (mmap) and read into memory (--no-mmap).
 *   - the compute peaks of our kernels (gemm.h): independent 512-bit vpdpbusd
 *     (int8 ops/s, a multiply-add counted as 2) and vfmadd231ps (FLOP/s) on
 *     1 and 2 threads at once, and where the CPU grants AMX the tile unit's
 *     TDPBF16PS and TDPBSUD products the same way.
 * Ceilings: decode = bandwidth / weight bytes read per token (every matrix
 * except the embedding table, of which one row is read; the output head
 * counts even when tied); prefill "of max" = sgemm rate / (2 x parameters)
 * FLOPs per token; prefill "of peak" = the same with the compute peak the
 * prefill kernel runs on: the int8 VNNI peak for quantised weights, "i8"; the
 * AMX-INT8 peak for Q8_0 / Q4_0 / Q4_K repacked at load where AMX runs them,
 * "ti8"; the AMX-BF16 peak for F16 / BF16 where AMX runs them, "tbf" (their
 * kernel does 3 or 2 tile products per product: gemm_amx.h); the AVX-512 FMA
 * peak otherwise, "f32". Every figure is printed as a fraction of its ceiling.
 *
 * With --share SPANS every run is repeated with that Shared Attention plan,
 * and the speed-up is printed next to the one predicted from the work
 * removed: decode (memory-bound) = weight bytes per token off / on, since a
 * sharing layer never reads its Wq and Wk; prefill (compute-bound) =
 * FLOPs per token off / on (projections plus attention scores).
 */
#define _DEFAULT_SOURCE
#include "engine/errors.h"
#include "engine/gemm.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/share.h"
#include "engine/transformer.h"
#include "../tf_pair.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct bw_arg {
    const float *p;
    size_t n;
    double sum;
};

static void *bw_read(void *v)
{
    struct bw_arg *a = v;
#if defined(__AVX2__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= a->n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a->p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(a->p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(a->p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(a->p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    a->sum = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
#else
    double s = 0;
    for (size_t i = 0; i < a->n; i++) s += a->p[i];
    a->sum = s;
#endif
    return NULL;
}

/* GB/s (1e9 bytes) reading `bytes` with n threads, best of reps. */
static double read_bandwidth(int threads, size_t bytes, int reps)
{
    float *buf = aligned_alloc(4096, bytes);
    if (!buf) return 0;
    madvise(buf, bytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < bytes / sizeof(float); i++) buf[i] = (float)(i & 7);
    double best = 0, sink = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t th[16];
        struct bw_arg args[16];
        size_t per = bytes / sizeof(float) / (size_t)threads / 32 * 32;
        double t0 = now_s();
        for (int i = 0; i < threads; i++) {
            args[i] = (struct bw_arg){buf + per * (size_t)i, per, 0};
            pthread_create(&th[i], NULL, bw_read, &args[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(th[i], NULL);
            sink += args[i].sum;
        }
        double gbs = (double)per * threads * sizeof(float) / (now_s() - t0) * 1e-9;
        best = gbs > best ? gbs : best;
    }
    free(buf);
    if (sink == 1234.5) fprintf(stderr, " "); /* keep the sums alive */
    return best;
}

enum peak_kind { PEAK_F32, PEAK_I8, PEAK_TBF, PEAK_TI8, N_PEAKS };
static const char *const peak_names[N_PEAKS] = {"f32", "i8", "tbf", "ti8"};

struct peak_arg {
    enum peak_kind kind;
    double rate;
};

static void *peak_run(void *v)
{
    struct peak_arg *a = v;
    switch (a->kind) {
    case PEAK_F32: a->rate = gemm_peak_f32_gflops(0.3); break;
    case PEAK_I8: a->rate = gemm_peak_int8_gops(0.3); break;
    case PEAK_TBF: a->rate = gemm_peak_amx_gops(false, 0.3); break;
    default: a->rate = gemm_peak_amx_gops(true, 0.3); break;
    }
    return NULL;
}

/* Compute peak of n threads at once (sum of their rates): 512-bit vpdpbusd
 * (int8 ops, a multiply-add = 2), vfmadd231ps (FLOPs) or the AMX products;
 * best of reps. */
static double compute_peak(int threads, enum peak_kind kind, int reps)
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t th[16];
        struct peak_arg args[16];
        double sum = 0;
        for (int i = 0; i < threads; i++) {
            args[i] = (struct peak_arg){kind, 0};
            pthread_create(&th[i], NULL, peak_run, &args[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(th[i], NULL);
            sum += args[i].rate;
        }
        best = sum > best ? sum : best;
    }
    return best;
}

/* Bytes of weights a decode step streams from memory. */
static double bytes_per_token(const struct model *m)
{
    double b = (double)m->weight_bytes;
    if (!m->tied_output) b -= (double)m->token_embd.row_bytes * m->token_embd.n_out; /* only one row read */
    return b;
}

struct run_result {
    double prefill_tps, decode_tps;
};

/* Weight bytes and FLOPs per token that a plan removes (Wq, Wk, scores at mid context). */
static void plan_savings(const struct model *m, const struct share_plan *p, int ctx, double *bytes, double *flops)
{
    *bytes = *flops = 0;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        if (!share_plan_is_sharing(p, l)) continue;
        const struct model_layer *L = &m->layers[l];
        *bytes += (double)L->wq.row_bytes * L->wq.n_out + (double)L->wk.row_bytes * L->wk.n_out;
        *flops += 2.0 * m->hp.dim * (L->wq.n_out + L->wk.n_out) + (double)m->hp.n_head * ctx * (2.0 * m->hp.head_dim + 5);
    }
}

static int run_model(const struct model *m, const struct share_plan *plan, int threads, int n_prompt, int n_gen,
                     struct run_result *r)
{
    struct tf_pair c;
    struct tf_opts o = {.n_ctx = (uint32_t)(n_prompt + n_gen + 8), .n_batch = (uint32_t)n_prompt, .n_threads = threads,
                        .plan = plan};
    int rc = tf_pair_create(m, &o, &c);
    if (rc) return rc;
    int32_t *toks = malloc((size_t)n_prompt * sizeof *toks);
    uint64_t x = 12345;
    for (int i = 0; i < n_prompt; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % m->hp.n_vocab);
    }
    const float *logits;
    /* warm-up: touches every weight page once, so mmap faults are not timed */
    rc = tf_pair_forward(&c, toks, 8, 0, &logits);
    double t0 = now_s();
    if (!rc) rc = tf_pair_forward(&c, toks, (uint32_t)n_prompt, 0, &logits);
    double t1 = now_s();
    int32_t tok = toks[0];
    for (int i = 0; i < n_gen && !rc; i++) {
        rc = tf_pair_forward(&c, &tok, 1, (uint32_t)(n_prompt + i), &logits);
        tok = (tok + 7) % (int32_t)m->hp.n_vocab;
    }
    double t2 = now_s();
    r->prefill_tps = n_prompt / (t1 - t0);
    r->decode_tps = n_gen / (t2 - t1);
    free(toks);
    tf_pair_destroy(&c);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *json_path = NULL, *mmap_mode = "both", *share = NULL;
    int n_prompt = 128, n_gen = 64, thread_list[4] = {1, 2}, n_thread_list = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--mmap") && i + 1 < argc) mmap_mode = argv[++i];
        else if (!strcmp(argv[i], "--share") && i + 1 < argc) share = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) n_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            n_thread_list = 0;
            for (char *s = strtok(argv[++i], ","); s && n_thread_list < 4; s = strtok(NULL, ","))
                thread_list[n_thread_list++] = atoi(s);
        } else {
            fprintf(stderr, "usage: bench -m MODEL [-t 1,2] [--prompt N] [--gen N] [--mmap both|on|off] [--json FILE] [--share SPANS]\n");
            return 1;
        }
    }
    if (!model_path || n_prompt < 8 || n_gen < 1) {
        fprintf(stderr, "bench: -m MODEL required (prompt >= 8, gen >= 1)\n");
        return 1;
    }
    double bw[4], gf[4], pk[4][N_PEAKS];
    for (int i = 0; i < n_thread_list; i++) {
        bw[i] = read_bandwidth(thread_list[i], (size_t)1 << 30, 5);
        openblas_set_num_threads(thread_list[i]);
        gf[i] = ops_sgemm_gflops(128, 2048, 2048, 10);
        for (int k = 0; k < N_PEAKS; k++) pk[i][k] = compute_peak(thread_list[i], (enum peak_kind)k, 3);
    }
    FILE *js = json_path ? fopen(json_path, "w") : NULL;
    if (js) {
        fprintf(js, "{\"model\": \"%s\", \"prompt_tokens\": %d, \"gen_tokens\": %d, \"machine\": [", model_path, n_prompt, n_gen);
        for (int i = 0; i < n_thread_list; i++)
            fprintf(js,
                    "%s{\"threads\": %d, \"read_gbps\": %.2f, \"sgemm_gflops\": %.1f, \"fma512_peak_gflops\": %.1f, "
                    "\"vnni512_peak_gops\": %.1f, \"amx_bf16_peak_gops\": %.1f, \"amx_int8_peak_gops\": %.1f}",
                    i ? ", " : "", thread_list[i], bw[i], gf[i], pk[i][PEAK_F32], pk[i][PEAK_I8], pk[i][PEAK_TBF],
                    pk[i][PEAK_TI8]);
        fprintf(js, "], \"runs\": [");
    }
    int first = 1;
    for (int mm = 0; mm < 2; mm++) {
        bool use_mmap = mm == 0;
        if ((use_mmap && !strcmp(mmap_mode, "off")) || (!use_mmap && !strcmp(mmap_mode, "on"))) continue;
        struct model *m;
        char msg[512];
        struct model_load_opts lo = {.use_mmap = use_mmap, .no_tokenizer = true};
        double tl = now_s();
        int rc = model_load(model_path, &lo, &m, msg, sizeof msg);
        if (rc) {
            fprintf(stderr, "bench: %s: %s\n", model_path, msg);
            return 2;
        }
        tl = now_s() - tl;
        double bpt = bytes_per_token(m), fpt = 2.0 * (double)model_n_params(m);
        enum quant_type wt = m->layers[0].wq.type;
        struct share_plan plan;
        char pmsg[256];
        if (share && share_plan_parse(&plan, share, m->hp.n_layer, pmsg, sizeof pmsg)) {
            fprintf(stderr, "bench: --share: %s\n", pmsg);
            return 1;
        }
        double saved_b = 0, saved_f = 0;
        if (share) plan_savings(m, &plan, n_prompt + n_gen / 2, &saved_b, &saved_f);
        if (first)
            printf("%-5s %-6s %3s | %9s %6s %7s | %9s %6s | %8s %8s %9s%s\n", "type", "load", "thr", "prefill/s", "of max",
                   "of peak", "decode/s", "of max", "GB/s", "GFLOP/s", "peak G/s",
                   share ? " | share: prefill/s decode/s  speed-up (predicted) prefill, decode" : "");
        for (int i = 0; i < n_thread_list; i++) {
            struct run_result r, rs = {0};
            rc = run_model(m, NULL, thread_list[i], n_prompt, n_gen, &r);
            if (!rc && share) rc = run_model(m, &plan, thread_list[i], n_prompt, n_gen, &rs);
            if (rc) {
                fprintf(stderr, "bench: %s\n", sa_err_str(rc));
                return 1;
            }
            double dec_ceiling = bw[i] * 1e9 / bpt, pre_ceiling = gf[i] * 1e9 / fpt;
            /* the compute the prefill kernel runs on (0: not measured on this machine) */
            bool int8 = wt != QUANT_F32 && wt != QUANT_F16 && wt != QUANT_BF16;
            struct gemm_scratch probe = {.no_amx = false};
            enum quant_isa isa = quant_isa_active();
            enum peak_kind kind = int8 ? PEAK_I8 : PEAK_F32;
            if (int8 && m->layers[0].wq.layout == MODEL_LAYOUT_R16 && gemm_r16_uses_amx(isa, wt, (size_t)n_prompt, &probe))
                kind = PEAK_TI8;
            else if ((wt == QUANT_F16 || wt == QUANT_BF16) && gemm_uses_amx(isa, wt, &probe))
                kind = PEAK_TBF;
            double peak = pk[i][kind], peak_ceiling = peak * 1e9 / fpt;
            printf("%-5s %-6s %3d | %9.1f %5.0f%% %6.0f%% | %9.2f %5.0f%% | %8.1f %8.1f %5.0f %-3s", quant_type_name(wt),
                   use_mmap ? "mmap" : "memory", thread_list[i], r.prefill_tps, 100 * r.prefill_tps / pre_ceiling,
                   peak > 0 ? 100 * r.prefill_tps / peak_ceiling : 0.0, r.decode_tps, 100 * r.decode_tps / dec_ceiling,
                   bw[i], gf[i], peak, peak_names[kind]);
            if (share)
                printf(" | %8.1f %8.2f   %.2fx (%.2fx), %.2fx (%.2fx)", rs.prefill_tps, rs.decode_tps,
                       rs.prefill_tps / r.prefill_tps, fpt / (fpt - saved_f), rs.decode_tps / r.decode_tps,
                       bpt / (bpt - saved_b));
            printf("\n");
            fflush(stdout);
            if (js)
                fprintf(js,
                        "%s{\"type\": \"%s\", \"load\": \"%s\", \"load_s\": %.3f, \"threads\": %d, \"prefill_tps\": %.2f, "
                        "\"prefill_ceiling_tps\": %.2f, \"prefill_peak_tps\": %.2f, \"prefill_peak_kind\": \"%s\", \"decode_tps\": %.3f, \"decode_ceiling_tps\": %.3f, "
                        "\"bytes_per_token\": %.0f, \"flops_per_token\": %.0f, \"share\": \"%s\", "
                        "\"share_prefill_tps\": %.2f, \"share_decode_tps\": %.3f, \"share_bytes_per_token\": %.0f, "
                        "\"share_flops_per_token\": %.0f}",
                        first ? "" : ", ", quant_type_name(wt), use_mmap ? "mmap" : "memory", tl, thread_list[i],
                        r.prefill_tps, pre_ceiling, peak_ceiling, peak_names[kind], r.decode_tps, dec_ceiling, bpt, fpt, share ? share : "",
                        rs.prefill_tps, rs.decode_tps, bpt - saved_b, fpt - saved_f);
            first = 0;
        }
        model_free(m);
    }
    if (js) {
        fprintf(js, "]}\n");
        fclose(js);
    }
    return 0;
}
