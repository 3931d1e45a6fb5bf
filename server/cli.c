#include "cli.h"

#include "engine/errors.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"

#include <errno.h>
#include <getopt.h>
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

/* Strict number parsing: the whole string, finite, within [lo, hi]. */
static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "saserve: %s: '%s' is not a number in [%g, %g]\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void generate_usage(void)
{
    fprintf(stderr,
            "usage: saserve generate -m MODEL [-p PROMPT] [options]\n"
            "  -m, --model PATH        GGUF model\n"
            "  -p, --prompt TEXT       prompt (default: empty, start from BOS)\n"
            "  -n, --n-predict N       tokens to generate (default 64)\n"
            "  -t, --threads N         threads (default 2)\n"
            "  -c, --ctx N             context size (default: model's)\n"
            "      --temp T            temperature (0 = greedy; default 0.8)\n"
            "      --top-k K           (default 40)      --top-p P (default 0.95)\n"
            "      --min-p P           (default 0.05)    --seed N  (default 1)\n"
            "      --repeat-penalty R  (default 1.0)     --repeat-last-n N (default 64)\n"
            "      --frequency-penalty F, --presence-penalty F (default 0)\n"
            "      --logprobs N        print the top-N alternatives of each token\n"
            "      --ids               print generated token ids to stderr\n"
            "      --no-mmap           read the weights into memory instead of mapping them\n"
            "      --no-eos            keep going past end-of-sequence tokens\n");
}

int cli_generate(int argc, char **argv)
{
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_SEED, O_RP, O_RLN, O_FP, O_PP, O_LP, O_IDS, O_NOMMAP, O_NOEOS };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"n-predict", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
        {"ctx", required_argument, 0, 'c'}, {"temp", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
        {"min-p", required_argument, 0, O_MINP}, {"seed", required_argument, 0, O_SEED},
        {"repeat-penalty", required_argument, 0, O_RP}, {"repeat-last-n", required_argument, 0, O_RLN},
        {"frequency-penalty", required_argument, 0, O_FP}, {"presence-penalty", required_argument, 0, O_PP},
        {"logprobs", required_argument, 0, O_LP}, {"ids", no_argument, 0, O_IDS},
        {"no-mmap", no_argument, 0, O_NOMMAP}, {"no-eos", no_argument, 0, O_NOEOS},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_path = NULL, *prompt = "";
    double n_predict = 64, threads = 2, n_ctx = 0, v;
    struct sampler_params sp = sampler_default_params();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    sp.repeat_last_n = 64;
    sp.seed = 1;
    bool print_ids = false, no_eos = false;
    struct model_load_opts lo = {.use_mmap = true};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:t:c:h", opts, NULL)) != -1) {
        const char *name = optarg;
        int bad = 0;
        switch (c) {
        case 'm': model_path = name; break;
        case 'p': prompt = name; break;
        case 'n': bad = parse_double("--n-predict", name, 0, 1 << 20, &n_predict); break;
        case 't': bad = parse_double("--threads", name, 1, 256, &threads); break;
        case 'c': bad = parse_double("--ctx", name, 1, 1 << 20, &n_ctx); break;
        case O_TEMP: bad = parse_double("--temp", name, 0, 100, &v); sp.temperature = (float)v; break;
        case O_TOPK: bad = parse_double("--top-k", name, 0, 1 << 24, &v); sp.top_k = (int32_t)v; break;
        case O_TOPP: bad = parse_double("--top-p", name, 1e-6, 1, &v); sp.top_p = (float)v; break;
        case O_MINP: bad = parse_double("--min-p", name, 0, 1, &v); sp.min_p = (float)v; break;
        case O_SEED: bad = parse_double("--seed", name, 0, 9007199254740992.0, &v); sp.seed = (uint64_t)v; break;
        case O_RP: bad = parse_double("--repeat-penalty", name, 1e-3, 100, &v); sp.repeat_penalty = (float)v; break;
        case O_RLN: bad = parse_double("--repeat-last-n", name, 0, 1 << 20, &v); sp.repeat_last_n = (int32_t)v; break;
        case O_FP: bad = parse_double("--frequency-penalty", name, -2, 2, &v); sp.frequency_penalty = (float)v; break;
        case O_PP: bad = parse_double("--presence-penalty", name, -2, 2, &v); sp.presence_penalty = (float)v; break;
        case O_LP: bad = parse_double("--logprobs", name, 0, SAMPLER_MAX_LOGPROBS, &v); sp.n_logprobs = (int32_t)v; break;
        case O_IDS: print_ids = true; break;
        case O_NOMMAP: lo.use_mmap = false; break;
        case O_NOEOS: no_eos = true; break;
        case 'h': generate_usage(); return 0;
        default: generate_usage(); return 1;
        }
        if (bad) return 1;
    }
    if (!model_path || optind != argc) {
        generate_usage();
        return 1;
    }
    char msg[512];
    struct model *m;
    double t0 = now_s();
    int rc = model_load(model_path, &lo, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", model_path, msg[0] ? msg : sa_err_str(rc));
        return 2;
    }
    double t_load = now_s() - t0;
    const struct tokenizer *tok = m->tok;
    size_t n_prompt = 0, cap = strlen(prompt) + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    rc = ids ? tok_encode(tok, prompt, strlen(prompt), true, false, ids, cap, &n_prompt) : SA_ERR_NOMEM;
    if (rc == 0 && n_prompt == 0 && tok_bos(tok) >= 0) ids[n_prompt++] = tok_bos(tok); /* nothing to condition on */
    if (rc || n_prompt == 0) {
        fprintf(stderr, "saserve: prompt: %s\n", rc ? sa_err_str(rc) : "empty prompt and the model has no BOS");
        free(ids);
        model_free(m);
        return 1;
    }
    struct tf_opts to = {.n_ctx = (uint32_t)n_ctx, .n_threads = (int)threads};
    if (!to.n_ctx) to.n_ctx = m->hp.n_ctx_train;
    if (n_prompt + (size_t)n_predict > to.n_ctx) n_predict = (double)(to.n_ctx > n_prompt ? to.n_ctx - n_prompt : 0);
    struct tf_ctx *ctx = NULL;
    struct sampler *smp = NULL;
    if ((rc = tf_create(m, &to, &ctx)) || (rc = sampler_create(&sp, (int32_t)m->hp.n_vocab, &smp))) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
        free(ids);
        tf_destroy(ctx);
        model_free(m);
        return 1;
    }
    /* echo the prompt as the model sees it */
    char *shown = tok_decode(tok, ids, n_prompt, true);
    if (shown) fputs(shown, stdout);
    free(shown);
    fflush(stdout);
    struct tok_stream ts;
    tok_stream_init(&ts, tok, n_prompt == 1 && ids[0] == tok_bos(tok));
    const float *logits;
    double t1 = now_s();
    rc = tf_forward(ctx, ids, (uint32_t)n_prompt, 0, &logits);
    double t_prompt = now_s() - t1;
    int n_gen = 0;
    double t2 = now_s();
    char piece[512];
    struct sampler_result res;
    for (uint32_t pos = (uint32_t)n_prompt; rc == 0 && n_gen < (int)n_predict; pos++) {
        int32_t id = sampler_sample(smp, logits, &res);
        sampler_accept(smp, id);
        n_gen++;
        if (!no_eos && tok_is_eog(tok, id)) break;
        size_t len = tok_stream_push(&ts, id, piece, sizeof piece);
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (print_ids) fprintf(stderr, "%d ", id);
        if (sp.n_logprobs) {
            fprintf(stderr, "[%d %.3f |", id, res.logprob);
            for (int i = 0; i < res.n_top; i++) fprintf(stderr, " %d:%.3f", res.top[i].id, res.top[i].logprob);
            fprintf(stderr, "]\n");
        }
        if (n_gen == (int)n_predict) break;
        rc = tf_forward(ctx, &id, 1, pos, &logits);
    }
    size_t len = tok_stream_flush(&ts, piece, sizeof piece);
    fwrite(piece, 1, len, stdout);
    printf("\n");
    double t_gen = now_s() - t2;
    if (print_ids) fprintf(stderr, "\n");
    fprintf(stderr, "saserve: load %.3f s | prompt %zu tok, %.1f tok/s | generated %d tok, %.1f tok/s\n", t_load,
            n_prompt, (double)n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), n_gen,
            (double)n_gen / (t_gen > 0 ? t_gen : 1e-9));
    if (rc) fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
    sampler_destroy(smp);
    tf_destroy(ctx);
    free(ids);
    model_free(m);
    return rc ? 1 : 0;
}

int cli_check_model(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: saserve check-model FILE\n");
        return 1;
    }
    char msg[512];
    struct model *m;
    int rc = model_load(argv[1], NULL, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", argv[1], msg[0] ? msg : sa_err_str(rc));
        return 2;
    }
    printf("%s: ok: %s, %u layers, dim %u, %u heads (%u kv), ffn %u, vocab %u, %llu parameters\n", argv[1], m->name,
           m->hp.n_layer, m->hp.dim, m->hp.n_head, m->hp.n_head_kv, m->hp.ffn, m->hp.n_vocab,
           (unsigned long long)model_n_params(m));
    model_free(m);
    return 0;
}
