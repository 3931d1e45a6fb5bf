/*
 * bench_step.c - decode step time against context length (make bench-context)
 * and against the number of sequences in a step (--batch).
 *
 *   build/bench_step -m MODEL.gguf [-t 2] [--ctx 256,1024,2048] [--steps 32] [--share SPANS]
 *   build/bench_step -m MODEL.gguf [-t 2] --batch 1,2,4,8,16 [--steps 32]
 *
 * --batch: N sequences (each with 32 cached tokens) decode STEPS tokens
 * each through one tf_step per decode step, in process (no HTTP); prints aggregate
 * tokens/s and the ratio to N = 1.
 *
 * For each context length C the cache is filled with C tokens (one prefill),
 * then STEPS decode steps at positions C .. C+STEPS-1 are timed. Weights cost
 * the same at every C, attention grows with C, so the step time should be
 * a + b*C: the program prints each figure, the least-squares line, R^2, and
 * the largest deviation of a measured point from the line. With --share the
 * plan's sharing layers skip their Q.K^T/softmax work, which flattens b.
 * Each point is the median of 3 runs of STEPS steps.
 */
#include "engine/errors.h"
#include "engine/model.h"
#include "engine/share.h"
#include "engine/transformer.h"
#include "../tf_pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median milliseconds per decode step at context n_ctx_fill. */
static int step_ms(const struct model *m, const struct share_plan *plan, int threads, uint32_t fill, int steps,
                   double *ms)
{
    struct tf_pair c;
    struct tf_opts o = {.n_ctx = fill + (uint32_t)steps + 8, .n_batch = 256, .n_threads = threads, .plan = plan};
    int rc = tf_pair_create(m, &o, &c);
    if (rc) return rc;
    int32_t *toks = malloc(fill * sizeof *toks);
    uint64_t x = 12345;
    for (uint32_t i = 0; i < fill; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % m->hp.n_vocab);
    }
    const float *logits;
    rc = tf_pair_forward(&c, toks, fill, 0, &logits);
    double runs[3];
    for (int r = 0; r < 3 && !rc; r++) {
        int32_t tok = toks[0];
        double t0 = now_s();
        for (int i = 0; i < steps && !rc; i++) { /* rewinds to the same positions each run */
            rc = tf_pair_forward(&c, &tok, 1, fill + (uint32_t)i, &logits);
            tok = (tok + 7) % (int32_t)m->hp.n_vocab;
        }
        runs[r] = (now_s() - t0) * 1e3 / steps;
    }
    qsort(runs, 3, sizeof runs[0], cmp_d);
    *ms = runs[1];
    free(toks);
    tf_pair_destroy(&c);
    return rc;
}

/* Aggregate decode tokens/s of n sequences stepping together. */
static int batch_tps(const struct model *m, int threads, uint32_t n, int steps, double *tps)
{
    struct tf_ws *ws;
    struct tf_pair seq[TF_MAX_BATCH];
    struct tf_seg segs[TF_MAX_BATCH];
    struct tf_opts o = {.n_ctx = 64 + (uint32_t)steps, .n_batch = n > 32 ? n : 32, .n_threads = threads};
    int rc = tf_ws_create(m, &o, &ws);
    if (rc) return rc;
    const float *lg;
    int32_t toks[TF_MAX_BATCH];
    uint32_t pos[TF_MAX_BATCH];
    float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof(float));
    struct tf_opts so = {.n_ctx = 64 + (uint32_t)steps, .n_batch = 32, .n_threads = 1};
    int32_t prompt[32];
    for (int i = 0; i < 32; i++) prompt[i] = (int32_t)((i * 7919 + 13) % m->hp.n_vocab);
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = tf_pair_create(m, &so, &seq[i]);
        if (!rc) rc = tf_pair_forward(&seq[i], prompt, 32, 0, &lg);
        toks[i] = prompt[i % 32];
        pos[i] = 32;
    }
    double t0 = now_s();
    for (int s = 0; s < steps && !rc; s++) {
        for (uint32_t i = 0; i < n; i++)
            segs[i] = (struct tf_seg){.seq = seq[i].seq, .tokens = &toks[i], .T = 1, .pos0 = pos[i], .want_logits = true};
        rc = tf_step(ws, segs, n, logits);
        for (uint32_t i = 0; i < n; i++) {
            pos[i]++;
            toks[i] = (toks[i] + 11) % (int32_t)m->hp.n_vocab;
        }
    }
    *tps = (double)n * steps / (now_s() - t0);
    for (uint32_t i = 0; i < n; i++) tf_pair_destroy(&seq[i]);
    free(logits);
    tf_ws_destroy(ws);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *share = NULL;
    char ctx_list[256] = "256,1024,2048", batch_list[256] = "";
    int threads = 2, steps = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--share") && i + 1 < argc) share = argv[++i];
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) snprintf(ctx_list, sizeof ctx_list, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) snprintf(batch_list, sizeof batch_list, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: bench_step -m MODEL [-t 2] [--ctx 256,1024,2048] [--steps 32] [--share SPANS]\n");
            return 2;
        }
    }
    if (!model_path || steps < 1 || threads < 1) {
        fprintf(stderr, "bench_step: -m MODEL is required\n");
        return 2;
    }
    char msg[512];
    struct model *m;
    struct model_load_opts lo = {.use_mmap = false};
    if (model_load(model_path, &lo, &m, msg, sizeof msg)) {
        fprintf(stderr, "bench_step: %s\n", msg);
        return 2;
    }
    if (batch_list[0]) {
        printf("| sequences | decode tok/s | vs 1 |\n|---:|---:|---:|\n");
        double base = 0;
        for (char *s = strtok(batch_list, ","); s; s = strtok(NULL, ",")) {
            uint32_t n = (uint32_t)atoi(s);
            double tps;
            int rc = n >= 1 && n <= TF_MAX_BATCH ? batch_tps(m, threads, n, steps, &tps) : SA_ERR_INVALID_ARG;
            if (rc) {
                fprintf(stderr, "bench_step: --batch %u: %s\n", n, sa_err_str(rc));
                return 1;
            }
            if (!base) base = tps;
            printf("| %u | %.1f | %.2fx |\n", n, tps, tps / base);
            fflush(stdout);
        }
        model_free(m);
        return 0;
    }
    uint32_t ctxs[16];
    int n_ctx = 0;
    for (char *s = strtok(ctx_list, ","); s && n_ctx < 16; s = strtok(NULL, ",")) ctxs[n_ctx++] = (uint32_t)atoi(s);
    struct share_plan plans[2];
    share_plan_init(&plans[0], m->hp.n_layer);
    int n_plans = 1;
    if (share && share_plan_parse(&plans[1], share, m->hp.n_layer, msg, sizeof msg) == 0) n_plans = 2;
    else if (share) fprintf(stderr, "bench_step: --share: %s\n", msg);
    printf("| plan | context | ms per decode step | vs first |\n|---|---:|---:|---:|\n");
    double fit[2][2];
    for (int p = 0; p < n_plans; p++) {
        double ms[16], sx = 0, sy = 0, sxx = 0, sxy = 0;
        char name[128];
        if (p) share_plan_format(&plans[p], name, sizeof name);
        else snprintf(name, sizeof name, "off");
        for (int k = 0; k < n_ctx; k++) {
            int rc = step_ms(m, &plans[p], threads, ctxs[k], steps, &ms[k]);
            if (rc) {
                fprintf(stderr, "bench_step: %s\n", sa_err_str(rc));
                return 1;
            }
            printf("| %s | %u | %.2f | %.2fx |\n", name, ctxs[k], ms[k], ms[k] / ms[0]);
            fflush(stdout);
            sx += ctxs[k];
            sy += ms[k];
            sxx += (double)ctxs[k] * ctxs[k];
            sxy += (double)ctxs[k] * ms[k];
        }
        double n = n_ctx, b = (n * sxy - sx * sy) / (n * sxx - sx * sx), a = (sy - b * sx) / n;
        double ss_tot = 0, ss_res = 0, worst = 0;
        for (int k = 0; k < n_ctx; k++) {
            double pred = a + b * ctxs[k], d = ms[k] - pred;
            ss_res += d * d;
            ss_tot += (ms[k] - sy / n) * (ms[k] - sy / n);
            if (d / pred > worst || -d / pred > worst) worst = d > 0 ? d / pred : -d / pred;
        }
        fit[p][0] = a;
        fit[p][1] = b;
        printf("\nplan %s: step ms = %.3f + %.4f x context (%.3f ms per 1k tokens of context), R^2 = %.4f, "
               "largest deviation from the line %.1f%%\n\n",
               name, a, b, b * 1000, ss_tot > 0 ? 1 - ss_res / ss_tot : 1, worst * 100);
    }
    if (n_plans == 2)
        printf("context cost per 1k tokens, share on / off: %.2f\n", fit[1][1] / fit[0][1]);
    model_free(m);
    return 0;
}
