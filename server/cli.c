#include "cli.h"

#include "heatmap.h"

#include "config/config.h"
#include "engine/calibrate.h"
#include "engine/defaults.h"
#include "engine/errors.h"
#include "engine/model.h"
#include "engine/quantize.h"
#include "engine/rebalance.h"
#include "engine/share.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/transformer.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Load a model; on failure print one line naming the field and return NULL
 * (callers exit 2, as check-model documents). opts NULL: model_load's default. */
static struct model *load_model_or_report(const char *path, const struct model_load_opts *opts)
{
    char msg[512];
    struct model *m;
    int rc = model_load(path, opts, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", path, msg[0] ? msg : sa_err_str(rc));
        return NULL;
    }
    return m;
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

/* --share/--rebalance options shared by generate and perplexity. */
struct attn_opts {
    const char *share; /* NULL/"off", "auto" or spans */
    float threshold;
    struct rebalance_params rb;
};

#define ATTN_OPTS_HELP                                                                          \
    "      --share SPANS       Shared Attention plan: 'a-b,c-d', 'auto' or 'off' (default off)\n" \
    "      --share-threshold T similarity threshold of the auto plan (default 0.9)\n"            \
    "      --rebalance         attention re-balancer on  --alpha A (0.2)  --tau T (0.01)\n"       \
    "      --renormalize       renormalise re-balanced attention rows\n"

enum { O_SHARE = 512, O_SHARE_TH, O_REBAL, O_ALPHA, O_TAU, O_RENORM };
#define ATTN_LONG_OPTS                                                                          \
    {"share", required_argument, 0, O_SHARE}, {"share-threshold", required_argument, 0, O_SHARE_TH}, \
        {"rebalance", no_argument, 0, O_REBAL}, {"alpha", required_argument, 0, O_ALPHA},         \
        {"tau", required_argument, 0, O_TAU}, {"renormalize", no_argument, 0, O_RENORM}

static void attn_opts_init(struct attn_opts *a)
{
    a->share = NULL;
    a->threshold = CALIB_DEFAULT_THRESHOLD;
    a->rb = rebalance_default_params();
}

/* 1 if c was an attention option (0 if not, -1 on a bad value). */
static int attn_opts_parse(struct attn_opts *a, int c, const char *arg)
{
    double v;
    switch (c) {
    case O_SHARE: a->share = arg; return 1;
    case O_SHARE_TH: if (parse_double("--share-threshold", arg, -1, 1, &v)) return -1; a->threshold = (float)v; return 1;
    case O_REBAL: a->rb.on = true; return 1;
    case O_ALPHA: if (parse_double("--alpha", arg, -10, 10, &v)) return -1; a->rb.alpha = (float)v; return 1;
    case O_TAU: if (parse_double("--tau", arg, 0, 1, &v)) return -1; a->rb.tau = (float)v; return 1;
    case O_RENORM: a->rb.renormalize = true; return 1;
    default: return 0;
    }
}

/* The default case of a command's option switch: an attention option, or a
 * usage error. Returns 0 (handled), 1 (bad value) or 2 (unknown option: usage shown). */
static int attn_opts_or_usage(struct attn_opts *a, int c, const char *arg, void (*usage)(void))
{
    int r = attn_opts_parse(a, c, arg);
    if (r == 0) {
        usage();
        return 2;
    }
    return r < 0;
}

/* Resolve the plan for model m (auto runs the built-in calibration). */
static int attn_opts_plan(const struct attn_opts *a, const struct model *m, int threads, struct share_plan *plan)
{
    char msg[256];
    if (a->share && !strcmp(a->share, "auto")) {
        int rc = calib_auto_plan(m, NULL, threads, a->threshold, plan, NULL, msg, sizeof msg);
        if (rc) fprintf(stderr, "saserve: --share auto: %s\n", msg);
        return rc;
    }
    if (share_plan_parse(plan, a->share, m->hp.n_layer, msg, sizeof msg)) {
        fprintf(stderr, "saserve: --share: %s\n", msg);
        return SA_ERR_INVALID_ARG;
    }
    return 0;
}

static void print_cache_stats(FILE *f, const struct tf_cache_stats *st, const struct share_plan *plan,
                              const struct rebalance_params *rb)
{
    char spans[256];
    share_plan_format(plan, spans, sizeof spans);
    fprintf(f,
            "cache: shared_attention=%s spans=%s rebalance=%s layers=%u sharing_layers=%u tokens=%u\n"
            "       k_bytes=%llu v_bytes=%llu kv_bytes=%llu kv_bytes_without_sharing=%llu kv_bytes_saved=%llu "
            "kv_saved_ratio=%.4f attention_flops_saved=%llu\n",
            plan->n_spans ? "on" : "off", spans, rb->on ? "on" : "off", st->layers, st->sharing_layers, st->tokens,
            (unsigned long long)st->k_bytes, (unsigned long long)st->v_bytes, (unsigned long long)st->kv_bytes,
            (unsigned long long)st->kv_bytes_without_sharing, (unsigned long long)st->kv_bytes_saved,
            st->kv_saved_ratio, (unsigned long long)st->attention_flops_saved);
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
            "      --temp T            temperature (0 = greedy; default: the settings table's, 1)\n"
            "      --top-k K           (default 40)      --top-p P (default 0.95)\n"
            "      --min-p P           (default 0.05)    --seed N  (default 1)\n"
            "      --repeat-penalty R  (default 1.0)     --repeat-last-n N (default: the settings table's, 64)\n"
            "      --frequency-penalty F, --presence-penalty F (default 0)\n"
            "      --logprobs N        print the top-N alternatives of each token\n"
            "      --ids               print generated token ids to stderr\n"
            "      --mmap              map the weights instead of reading them into memory\n"
            "      --no-eos            keep going past end-of-sequence tokens\n" ATTN_OPTS_HELP);
}

int cli_generate(int argc, char **argv)
{
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_SEED, O_RP, O_RLN, O_FP, O_PP, O_LP, O_IDS, O_NOMMAP, O_NOEOS, O_MMAP };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"n-predict", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
        {"ctx", required_argument, 0, 'c'}, {"temp", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
        {"min-p", required_argument, 0, O_MINP}, {"seed", required_argument, 0, O_SEED},
        {"repeat-penalty", required_argument, 0, O_RP}, {"repeat-last-n", required_argument, 0, O_RLN},
        {"frequency-penalty", required_argument, 0, O_FP}, {"presence-penalty", required_argument, 0, O_PP},
        {"logprobs", required_argument, 0, O_LP}, {"ids", no_argument, 0, O_IDS},
        {"no-mmap", no_argument, 0, O_NOMMAP}, {"mmap", no_argument, 0, O_MMAP}, {"no-eos", no_argument, 0, O_NOEOS},
        {"help", no_argument, 0, 'h'}, ATTN_LONG_OPTS, {0, 0, 0, 0}};
    const char *model_path = NULL, *prompt = "";
    struct attn_opts ao;
    attn_opts_init(&ao);
    double n_predict = 64, threads = SA_DEFAULT_THREADS, n_ctx = 0, v;
    struct config defaults; /* temperature and repeat_last_n: the settings table's */
    config_defaults(&defaults);
    struct sampler_params sp = sampler_default_params();
    sp.temperature = defaults.temperature;
    sp.top_k = 40; /* llama.cpp's command-line truncation */
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    sp.repeat_last_n = (int32_t)defaults.repeat_last_n;
    sp.seed = 1;
    bool print_ids = false, no_eos = false;
    struct model_load_opts lo = {.use_mmap = false};
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
        case O_MMAP: lo.use_mmap = true; break;
        case O_NOEOS: no_eos = true; break;
        case 'h': generate_usage(); return 0;
        default:
            bad = attn_opts_or_usage(&ao, c, name, generate_usage);
        }
        if (bad) return 1;
    }
    if (!model_path || optind != argc) {
        generate_usage();
        return 1;
    }
    double t0 = now_s();
    struct model *m = load_model_or_report(model_path, &lo);
    if (!m) return 2;
    int rc;
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
    struct share_plan plan;
    if (attn_opts_plan(&ao, m, (int)threads, &plan)) {
        free(ids);
        model_free(m);
        return 1;
    }
    struct tf_opts to = {.n_ctx = (uint32_t)n_ctx, .n_threads = (int)threads, .plan = &plan, .rebalance = ao.rb};
    if (!to.n_ctx) to.n_ctx = m->hp.n_ctx_train;
    if (n_prompt + (size_t)n_predict > to.n_ctx) n_predict = (double)(to.n_ctx > n_prompt ? to.n_ctx - n_prompt : 0);
    struct tf_ws *ws = NULL;
    struct tf_seq *ctx = NULL;
    struct sampler *smp = NULL;
    if ((rc = tf_ws_create(m, &to, &ws)) || (rc = tf_seq_create(m, &to, &ctx)) ||
        (rc = sampler_create(&sp, (int32_t)m->hp.n_vocab, &smp))) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
        free(ids);
        tf_seq_destroy(ctx);
        tf_ws_destroy(ws);
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
    rc = tf_forward(ws, ctx, ids, (uint32_t)n_prompt, 0, &logits);
    double t_prompt = now_s() - t1;
    int n_gen = 0;
    uint32_t n_cached = (uint32_t)n_prompt;
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
        rc = tf_forward(ws, ctx, &id, 1, pos, &logits);
        if (!rc) n_cached++;
    }
    size_t len = tok_stream_flush(&ts, piece, sizeof piece);
    fwrite(piece, 1, len, stdout);
    printf("\n");
    double t_gen = now_s() - t2;
    if (print_ids) fprintf(stderr, "\n");
    fprintf(stderr, "saserve: load %.3f s | prompt %zu tok, %.1f tok/s | generated %d tok, %.1f tok/s\n", t_load,
            n_prompt, (double)n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), n_gen,
            (double)n_gen / (t_gen > 0 ? t_gen : 1e-9));
    struct tf_cache_stats st;
    tf_cache_stats(ctx, n_cached, &st);
    print_cache_stats(stderr, &st, &plan, &ao.rb);
    if (rc) fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
    sampler_destroy(smp);
    tf_seq_destroy(ctx);
    tf_ws_destroy(ws);
    free(ids);
    model_free(m);
    return rc ? 1 : 0;
}

int cli_check_model(int argc, char **argv)
{
    bool full = argc == 3 && strcmp(argv[1], "--full") == 0;
    if (argc != 2 + full) {
        fprintf(stderr, "usage: saserve check-model [--full] FILE.gguf | HF_DIR | FILE.safetensors\n"
                        "  --full  also check that every weight is a finite number (reads the whole file)\n");
        return 1;
    }
    const char *path = argv[1 + full];
    int vrc = cli_check_vision_model(path);
    if (vrc >= 0) return vrc; /* a phiDNN file (cli_vision.c; its weights are always checked finite) */
    /* a later shard of a split set (<prefix>-0000N-of-0000M.gguf, N > 1) is checked with its
     * whole set, loaded from the first shard as every loader does (when it is there) */
    char first[4096];
    const char *load_path = path;
    size_t pl = strlen(path);
    unsigned no = 0, count = 0;
    int used = 0;
    if (pl > 20 && pl < sizeof first && sscanf(path + pl - 20, "-%5u-of-%5u.gguf%n", &no, &count, &used) == 2 &&
        used == 20 && no > 1 && no <= count) {
        memcpy(first, path, pl - 20);
        snprintf(first + pl - 20, sizeof first - (pl - 20), "-%05u-of-%05u.gguf", 1u, count);
        if (access(first, F_OK) == 0) { /* else the shard alone is loaded: its error names split.no */
            printf("%s: shard %u of %u: checking its set from %s\n", path, no, count, first);
            load_path = first;
        }
    }
    path = load_path;
    struct model *m = load_model_or_report(path, NULL);
    if (!m) return 2;
    char msg[512];
    if (full && model_check_values(m, msg, sizeof msg) != 0) {
        fprintf(stderr, "saserve: %s: %s\n", path, msg);
        model_free(m);
        return 2;
    }
    printf("%s: ok: %s, %u layers, dim %u, %u heads (%u kv), ffn %u, vocab %u, %llu parameters\n", path, m->name,
           m->hp.n_layer, m->hp.dim, m->hp.n_head, m->hp.n_head_kv, m->hp.ffn, m->hp.n_vocab,
           (unsigned long long)model_n_params(m));
    model_free(m);
    return 0;
}

static char *read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* Tokenize a file (or the built-in text) with BOS; caller frees. */
static int32_t *tokenize_text(const struct model *m, const char *path, size_t max_tokens, size_t *n_out)
{
    size_t len;
    char *text = path ? read_text_file(path, &len) : NULL;
    if (path && !text) {
        fprintf(stderr, "saserve: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    const char *src = text ? text : calib_builtin_text;
    if (!text) len = strlen(src);
    size_t cap = len + 2, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids || tok_encode(m->tok, src, len, true, false, ids, cap, &n) != 0) {
        fprintf(stderr, "saserve: cannot tokenize %s\n", path ? path : "the built-in text");
        free(ids);
        free(text);
        return NULL;
    }
    if (max_tokens && n > max_tokens) n = max_tokens;
    free(text);
    *n_out = n;
    return ids;
}

static void similarity_usage(void)
{
    fprintf(stderr,
            "usage: saserve similarity -m MODEL [-f TEXT] [options]\n"
            "  L x L mean cosine similarity of the layers' attention rows (over heads and positions)\n"
            "  -f, --file PATH      calibration text (default: built-in story)\n"
            "  -c, --ctx N          tokens of the text to use (default 512)\n"
            "  -t, --threads N      (default 2)\n"
            "      --json PATH      write {matrix, spans, threshold} as JSON\n"
            "      --png PATH       draw the matrix as a heatmap\n"
            "      --threshold T    similarity threshold for the proposed spans (default 0.9)\n");
}

int cli_similarity(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
                                         {"ctx", required_argument, 0, 'c'},   {"threads", required_argument, 0, 't'},
                                         {"json", required_argument, 0, 'j'},  {"png", required_argument, 0, 'g'},
                                         {"threshold", required_argument, 0, 'T'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *file = NULL, *json = NULL, *png = NULL;
    double n_ctx = 512, threads = 2, threshold = CALIB_DEFAULT_THRESHOLD;
    optind = 1;
    int c, bad = 0;
    while ((c = getopt_long(argc, argv, "m:f:c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': file = optarg; break;
        case 'c': bad = parse_double("--ctx", optarg, 2, 1 << 16, &n_ctx); break;
        case 't': bad = parse_double("--threads", optarg, 1, 256, &threads); break;
        case 'j': json = optarg; break;
        case 'g': png = optarg; break;
        case 'T': bad = parse_double("--threshold", optarg, -1, 1, &threshold); break;
        case 'h': similarity_usage(); return 0;
        default: similarity_usage(); return 1;
        }
        if (bad) return 1;
    }
    if (!model_path || optind != argc) {
        similarity_usage();
        return 1;
    }
    struct model *m = load_model_or_report(model_path, NULL);
    if (!m) return 2;
    int rc;
    size_t n;
    int32_t *ids = tokenize_text(m, file, (size_t)n_ctx, &n);
    uint32_t L = m->hp.n_layer;
    float *sim = malloc((size_t)L * L * sizeof *sim);
    if (!ids || !sim) {
        free(ids);
        free(sim);
        model_free(m);
        return 1;
    }
    rc = calib_similarity(m, ids, n, (uint32_t)n, (int)threads, sim);
    if (rc) {
        fprintf(stderr, "saserve: similarity: %s\n", sa_err_str(rc));
    } else {
        struct share_plan plan;
        share_plan_auto(&plan, sim, L, (float)threshold);
        char spans[256];
        share_plan_format(&plan, spans, sizeof spans);
        printf("attention similarity, %s, %zu tokens (mean cosine over %u heads and all query positions)\n      ",
               m->name, n, m->hp.n_head);
        for (uint32_t b = 0; b < L; b++) printf(" %5u", b);
        printf("\n");
        for (uint32_t a = 0; a < L; a++) {
            printf("%5u ", a);
            for (uint32_t b = 0; b < L; b++) printf(" %5.3f", (double)sim[a * L + b]);
            printf("\n");
        }
        printf("auto spans at threshold %.2f: %s\n", threshold, spans);
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) {
                fprintf(stderr, "saserve: %s: %s\n", json, strerror(errno));
                rc = SA_ERR_IO;
            } else {
                fprintf(f, "{\"model\": \"%s\", \"tokens\": %zu, \"layers\": %u, \"threshold\": %.4f, \"spans\": \"%s\", \"matrix\": [",
                        m->name, n, L, threshold, spans);
                for (uint32_t a = 0; a < L; a++) {
                    fprintf(f, "%s[", a ? ", " : "");
                    for (uint32_t b = 0; b < L; b++) fprintf(f, "%s%.6f", b ? ", " : "", (double)sim[a * L + b]);
                    fprintf(f, "]");
                }
                fprintf(f, "]}\n");
                fclose(f);
            }
        }
        if (png && heatmap_write_png(png, sim, (int)L, 0.0f) != 0) {
            fprintf(stderr, "saserve: %s: cannot write the heatmap\n", png);
            rc = SA_ERR_IO;
        }
    }
    free(ids);
    free(sim);
    model_free(m);
    return rc ? 1 : 0;
}

static void perplexity_usage(void)
{
    fprintf(stderr,
            "usage: saserve perplexity -m MODEL -f TEXT [options]\n"
            "  Splits the tokenized text into windows of --ctx tokens (each starting with BOS)\n"
            "  and scores every next-token prediction in each window.\n"
            "  -c, --ctx N          window (default 256)\n"
            "  -n, --max-tokens N   use at most N tokens of the text (default: all)\n"
            "  -t, --threads N      (default 2)\n"
            "      --json           print one JSON line instead of text\n" ATTN_OPTS_HELP);
}

int cli_perplexity(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
                                         {"ctx", required_argument, 0, 'c'}, {"max-tokens", required_argument, 0, 'n'},
                                         {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, ATTN_LONG_OPTS, {0, 0, 0, 0}};
    const char *model_path = NULL, *file = NULL;
    double n_ctx = 256, max_tokens = 0, threads = 2;
    bool as_json = false;
    struct attn_opts ao;
    attn_opts_init(&ao);
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:f:c:n:t:h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': file = optarg; break;
        case 'c': bad = parse_double("--ctx", optarg, 2, 1 << 16, &n_ctx); break;
        case 'n': bad = parse_double("--max-tokens", optarg, 0, 1e9, &max_tokens); break;
        case 't': bad = parse_double("--threads", optarg, 1, 256, &threads); break;
        case 'j': as_json = true; break;
        case 'h': perplexity_usage(); return 0;
        default:
            bad = attn_opts_or_usage(&ao, c, optarg, perplexity_usage);
        }
        if (bad) return 1;
    }
    if (!model_path || !file || optind != argc) {
        perplexity_usage();
        return 1;
    }
    struct model *m = load_model_or_report(model_path, NULL);
    if (!m) return 2;
    int rc;
    struct share_plan plan;
    size_t n = 0;
    int32_t *ids = NULL;
    if (attn_opts_plan(&ao, m, (int)threads, &plan) || !(ids = tokenize_text(m, file, (size_t)max_tokens, &n))) {
        model_free(m);
        return 1;
    }
    uint32_t W = (uint32_t)n_ctx, V = m->hp.n_vocab;
    struct tf_opts to = {.n_ctx = W, .n_batch = W < 128 ? W : 128, .n_threads = (int)threads, .all_logits = true,
                         .plan = &plan, .rebalance = ao.rb};
    struct tf_ws *ws = NULL;
    struct tf_seq *ctx = NULL;
    if ((rc = tf_ws_create(m, &to, &ws)) || (rc = tf_seq_create(m, &to, &ctx))) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
        tf_ws_destroy(ws);
        free(ids);
        model_free(m);
        return 1;
    }
    int32_t *win = malloc((size_t)W * sizeof *win);
    double nll = 0, t0 = now_s();
    uint64_t scored = 0, scored_bytes = 0;
    char piece[256];
    /* windows: BOS + the next W-1 text tokens (ids[0] is the text's own BOS) */
    for (size_t start = 1; start + 1 < n && !rc; start += W - 1) {
        uint32_t len = (uint32_t)((n - start < W - 1) ? n - start : W - 1) + 1;
        win[0] = tok_bos(m->tok) >= 0 ? tok_bos(m->tok) : ids[0];
        memcpy(win + 1, ids + start, (len - 1) * sizeof *win);
        for (uint32_t p = 0; p < len && !rc; p += tf_ws_n_batch(ws)) {
            uint32_t cnt = len - p < tf_ws_n_batch(ws) ? len - p : tf_ws_n_batch(ws);
            const float *lg;
            rc = tf_forward(ws, ctx, win + p, cnt, p, &lg);
            for (uint32_t t = 0; t < cnt && !rc; t++) {
                if (p + t + 1 >= len) break; /* the last token predicts nothing in this window */
                const float *row = lg + (size_t)t * V;
                float mx = row[0];
                for (uint32_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                double z = 0;
                for (uint32_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
                int32_t next = win[p + t + 1];
                nll -= (double)row[next] - mx - log(z);
                scored++;
                scored_bytes += tok_token_to_bytes(m->tok, next, false, piece, sizeof piece);
            }
        }
    }
    double secs = now_s() - t0;
    if (!rc && scored) {
        struct tf_cache_stats st;
        tf_cache_stats(ctx, 1, &st);
        char spans[256];
        share_plan_format(&plan, spans, sizeof spans);
        double ppl = exp(nll / (double)scored), bpb = nll / log(2.0) / (double)(scored_bytes ? scored_bytes : 1);
        if (as_json)
            printf("{\"model\": \"%s\", \"spans\": \"%s\", \"rebalance\": %s, \"alpha\": %.4f, \"tau\": %.4f, "
                   "\"tokens_scored\": %llu, \"perplexity\": %.6f, \"bits_per_byte\": %.6f, \"kv_bytes_per_token\": %llu, "
                   "\"kv_bytes_per_token_without_sharing\": %llu, \"seconds\": %.2f}\n",
                   m->name, spans, ao.rb.on ? "true" : "false", (double)ao.rb.alpha, (double)ao.rb.tau,
                   (unsigned long long)scored, ppl, bpb, (unsigned long long)st.kv_bytes,
                   (unsigned long long)st.kv_bytes_without_sharing, secs);
        else
            printf("%s: spans %s, rebalance %s: perplexity %.4f, %.4f bits/byte over %llu tokens; KV %llu of %llu "
                   "bytes/token (%.1f s)\n",
                   m->name, spans, ao.rb.on ? "on" : "off", ppl, bpb, (unsigned long long)scored,
                   (unsigned long long)st.kv_bytes, (unsigned long long)st.kv_bytes_without_sharing, secs);
    } else if (rc) {
        fprintf(stderr, "saserve: perplexity: %s\n", sa_err_str(rc));
    }
    free(win);
    free(ids);
    tf_seq_destroy(ctx);
    tf_ws_destroy(ws);
    model_free(m);
    return rc ? 1 : 0;
}

int cli_quantize(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: saserve quantize IN.gguf OUT.gguf TYPE\n"
                        "  IN: F32/F16/BF16 tensors. TYPE: Q8_0 Q4_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS\n"
                        "  (every 2-D weight in that type) or Q4_K_M Q5_K_M (llama.cpp's mixtures:\n"
                        "  Q6_K for output.weight and some attn_v / ffn_down)\n");
        return 1;
    }
    char msg[512];
    struct quantize_stats st;
    double t0 = now_s();
    int rc = quantize_file(argv[1], argv[2], argv[3], &st, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", argv[1], msg[0] ? msg : sa_err_str(rc));
        return rc == SA_ERR_INVALID_ARG ? 1 : 2;
    }
    printf("%s: %s, %llu of %llu tensors quantised, %.2f MB -> %.2f MB in %.1f s\n", argv[2], argv[3],
           (unsigned long long)st.n_quantized, (unsigned long long)st.n_tensors, (double)st.bytes_in / 1e6,
           (double)st.bytes_out / 1e6, now_s() - t0);
    return 0;
}
