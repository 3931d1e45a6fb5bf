#include "cli.h"

#include "heatmap.h"

#include "config/config.h"
#include "engine/defaults.h"
#include "engine/engine.h"
#include "engine/errors.h"

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
 * (callers exit 2, as check-model documents). */
static struct engine_model *load_model_or_report(const char *path, bool use_mmap)
{
    char msg[512] = "";
    struct engine_model *m;
    int rc = engine_model_open(path, use_mmap, &m, msg, sizeof msg);
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

#define ATTN_OPTS_HELP                                                                                         \
    "      --share SPANS       Shared Attention plan: 'a-b,c-d', 'auto' or 'off' (default off)\n"                \
    "      --share-threshold T similarity threshold of the auto plan (default " SA_DEFAULT_STR(                  \
        SA_DEFAULT_SHARE_THRESHOLD) ")\n"                                                                      \
    "      --rebalance         attention re-balancer on  --alpha A (" SA_DEFAULT_STR(                            \
        SA_DEFAULT_REBALANCE_ALPHA) ")  --tau T (" SA_DEFAULT_STR(SA_DEFAULT_REBALANCE_TAU) ")\n"              \
    "      --renormalize       renormalise re-balanced attention rows\n"

enum { O_SHARE = 512, O_SHARE_TH, O_REBAL, O_ALPHA, O_TAU, O_RENORM };
#define ATTN_LONG_OPTS                                                                          \
    {"share", required_argument, 0, O_SHARE}, {"share-threshold", required_argument, 0, O_SHARE_TH}, \
        {"rebalance", no_argument, 0, O_REBAL}, {"alpha", required_argument, 0, O_ALPHA},         \
        {"tau", required_argument, 0, O_TAU}, {"renormalize", no_argument, 0, O_RENORM}

static void attn_opts_init(struct attn_opts *a)
{
    a->share = NULL;
    a->threshold = (float)SA_DEFAULT_SHARE_THRESHOLD;
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
static int attn_opts_plan(const struct attn_opts *a, const struct engine_model *m, int threads, struct share_plan *plan)
{
    char msg[256] = "";
    int rc = engine_model_plan(m, a->share, a->threshold, threads, plan, msg, sizeof msg);
    if (rc) fprintf(stderr, "saserve: --share%s: %s\n", a->share && !strcmp(a->share, "auto") ? " auto" : "", msg);
    return rc;
}

static void print_cache_stats(FILE *f, const struct engine_cache_stats *st, const struct share_plan *plan,
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

/* generate's own defaults (llama.cpp's command line); temperature, repeat_last_n and
 * threads are the settings table's (engine/defaults.h) */
#define GEN_N_PREDICT 64
#define GEN_TOP_K 40
#define GEN_TOP_P 0.95
#define GEN_MIN_P 0.05
#define GEN_SEED 1

static void generate_usage(void)
{
    fprintf(stderr,
            "usage: saserve generate -m MODEL [-p PROMPT] [options]\n"
            "  -m, --model PATH        GGUF model\n"
            "  -p, --prompt TEXT       prompt (default: empty, start from BOS)\n"
            "  -n, --n-predict N       tokens to generate (default " SA_DEFAULT_STR(GEN_N_PREDICT) ")\n"
            "  -t, --threads N         threads (default " SA_DEFAULT_STR(SA_DEFAULT_THREADS) ")\n"
            "  -c, --ctx N             context size (default: model's)\n"
            "      --temp T            temperature (0 = greedy; default: the settings table's, " SA_DEFAULT_STR(
                SA_DEFAULT_TEMPERATURE) ")\n"
            "      --top-k K           (default " SA_DEFAULT_STR(GEN_TOP_K) ")      --top-p P (default " SA_DEFAULT_STR(
                GEN_TOP_P) ")\n"
            "      --min-p P           (default " SA_DEFAULT_STR(GEN_MIN_P) ")    --seed N  (default " SA_DEFAULT_STR(
                GEN_SEED) ")\n"
            "      --repeat-penalty R  (default 1.0)     --repeat-last-n N (default: the settings table's, " SA_DEFAULT_STR(
                SA_DEFAULT_REPEAT_LAST_N) ")\n"
            "      --frequency-penalty F, --presence-penalty F (default 0)\n"
            "      --logprobs N        print the top-N alternatives of each token\n"
            "      --ids               print generated token ids to stderr\n"
            "      --mmap              map the weights instead of reading them into memory\n"
            "      --no-eos            keep going past end-of-sequence tokens\n" ATTN_OPTS_HELP);
}

/* What generate prints as the text comes (engine_model_generate's on_text). */
struct gen_print {
    bool print_ids;
    int32_t n_logprobs;
};

static void gen_on_text(void *user, int32_t id, const char *text, size_t len, const struct sampler_result *res)
{
    const struct gen_print *gp = user;
    fwrite(text, 1, len, stdout);
    if (id == ENGINE_GEN_FLUSH) return; /* the caller ends the line */
    fflush(stdout);
    if (id < 0) return; /* the prompt */
    if (gp->print_ids) fprintf(stderr, "%d ", id);
    if (gp->n_logprobs) {
        fprintf(stderr, "[%d %.3f |", id, res->logprob);
        for (int i = 0; i < res->n_top; i++) fprintf(stderr, " %d:%.3f", res->top[i].id, res->top[i].logprob);
        fprintf(stderr, "]\n");
    }
}

struct gen_args {
    const char *model_path, *prompt;
    struct attn_opts ao;
    double n_predict, threads, n_ctx;
    struct sampler_params sp;
    bool print_ids, no_eos, use_mmap;
};

/* Parse generate's options into g: 0, or the exit status (usage / a bad value) with *done set. */
static int generate_parse(int argc, char **argv, struct gen_args *g, bool *done)
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
    struct sampler_params *sp = &g->sp;
    double v;
    *done = true;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:t:c:h", opts, NULL)) != -1) {
        const char *name = optarg;
        int bad = 0;
        switch (c) {
        case 'm': g->model_path = name; break;
        case 'p': g->prompt = name; break;
        case 'n': bad = parse_double("--n-predict", name, 0, 1 << 20, &g->n_predict); break;
        case 't': bad = parse_double("--threads", name, 1, 256, &g->threads); break;
        case 'c': bad = parse_double("--ctx", name, 1, 1 << 20, &g->n_ctx); break;
        case O_TEMP: bad = parse_double("--temp", name, 0, 100, &v); sp->temperature = (float)v; break;
        case O_TOPK: bad = parse_double("--top-k", name, 0, 1 << 24, &v); sp->top_k = (int32_t)v; break;
        case O_TOPP: bad = parse_double("--top-p", name, 1e-6, 1, &v); sp->top_p = (float)v; break;
        case O_MINP: bad = parse_double("--min-p", name, 0, 1, &v); sp->min_p = (float)v; break;
        case O_SEED: bad = parse_double("--seed", name, 0, 9007199254740992.0, &v); sp->seed = (uint64_t)v; break;
        case O_RP: bad = parse_double("--repeat-penalty", name, 1e-3, 100, &v); sp->repeat_penalty = (float)v; break;
        case O_RLN: bad = parse_double("--repeat-last-n", name, 0, 1 << 20, &v); sp->repeat_last_n = (int32_t)v; break;
        case O_FP: bad = parse_double("--frequency-penalty", name, -2, 2, &v); sp->frequency_penalty = (float)v; break;
        case O_PP: bad = parse_double("--presence-penalty", name, -2, 2, &v); sp->presence_penalty = (float)v; break;
        case O_LP: bad = parse_double("--logprobs", name, 0, SAMPLER_MAX_LOGPROBS, &v); sp->n_logprobs = (int32_t)v; break;
        case O_IDS: g->print_ids = true; break;
        case O_NOMMAP: g->use_mmap = false; break;
        case O_MMAP: g->use_mmap = true; break;
        case O_NOEOS: g->no_eos = true; break;
        case 'h': generate_usage(); return 0;
        default:
            bad = attn_opts_or_usage(&g->ao, c, name, generate_usage);
        }
        if (bad) return 1;
    }
    if (!g->model_path || optind != argc) {
        generate_usage();
        return 1;
    }
    *done = false;
    return 0;
}

int cli_generate(int argc, char **argv)
{
    struct config defaults; /* temperature and repeat_last_n: the settings table's */
    config_defaults(&defaults);
    struct gen_args g = {.prompt = "", .n_predict = GEN_N_PREDICT, .threads = SA_DEFAULT_THREADS,
                         .sp = sampler_default_params()};
    attn_opts_init(&g.ao);
    g.sp.temperature = defaults.temperature;
    g.sp.top_k = GEN_TOP_K;
    g.sp.top_p = (float)GEN_TOP_P;
    g.sp.min_p = (float)GEN_MIN_P;
    g.sp.repeat_last_n = (int32_t)defaults.repeat_last_n;
    g.sp.seed = GEN_SEED;
    bool done;
    int rc = generate_parse(argc, argv, &g, &done);
    if (done) return rc;
    double t0 = now_s();
    struct engine_model *m = load_model_or_report(g.model_path, g.use_mmap);
    if (!m) return 2;
    double t_load = now_s() - t0;
    size_t n_prompt = 0;
    int32_t *ids;
    int32_t bos = engine_model_bos(m);
    rc = engine_model_tokenize(m, g.prompt, strlen(g.prompt), &ids, &n_prompt);
    if (rc == 0 && n_prompt == 0 && bos >= 0) ids[n_prompt++] = bos; /* nothing to condition on */
    if (rc || n_prompt == 0) {
        fprintf(stderr, "saserve: prompt: %s\n", rc ? sa_err_str(rc) : "empty prompt and the model has no BOS");
        free(ids);
        engine_model_close(m);
        return 1;
    }
    struct share_plan plan;
    if (attn_opts_plan(&g.ao, m, (int)g.threads, &plan)) {
        free(ids);
        engine_model_close(m);
        return 1;
    }
    struct gen_print gp = {.print_ids = g.print_ids, .n_logprobs = g.sp.n_logprobs};
    struct engine_generate_params p = {.n_predict = (uint32_t)g.n_predict, .n_ctx = (uint32_t)g.n_ctx,
                                       .n_threads = (int)g.threads, .sampling = g.sp, .no_eos = g.no_eos,
                                       .plan = &plan, .rebalance = g.ao.rb, .on_text = gen_on_text, .user = &gp};
    struct engine_generate_result r;
    rc = engine_model_generate(m, ids, n_prompt, &p, &r);
    free(ids);
    if (!r.started) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
        engine_model_close(m);
        return 1;
    }
    printf("\n");
    if (g.print_ids) fprintf(stderr, "\n");
    fprintf(stderr, "saserve: load %.3f s | prompt %zu tok, %.1f tok/s | generated %u tok, %.1f tok/s\n", t_load,
            n_prompt, (double)n_prompt / (r.prompt_s > 0 ? r.prompt_s : 1e-9), r.n_generated,
            (double)r.n_generated / (r.generate_s > 0 ? r.generate_s : 1e-9));
    print_cache_stats(stderr, &r.cache, &plan, &g.ao.rb);
    if (rc) fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
    engine_model_close(m);
    return rc ? 1 : 0;
}

/* A later shard of a split set (<prefix>-0000N-of-0000M.gguf, N > 1) is checked with its
 * whole set, loaded from the first shard as every loader does (when it is there): the
 * path to load, path itself or first[]. */
static const char *check_model_path(const char *path, char *first, size_t first_len)
{
    size_t pl = strlen(path);
    unsigned no = 0, count = 0;
    int used = 0;
    if (pl > 20 && pl < first_len && sscanf(path + pl - 20, "-%5u-of-%5u.gguf%n", &no, &count, &used) == 2 &&
        used == 20 && no > 1 && no <= count) {
        memcpy(first, path, pl - 20);
        snprintf(first + pl - 20, first_len - (pl - 20), "-%05u-of-%05u.gguf", 1u, count);
        if (access(first, F_OK) == 0) { /* else the shard alone is loaded: its error names split.no */
            printf("%s: shard %u of %u: checking its set from %s\n", path, no, count, first);
            return first;
        }
    }
    return path;
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
    char first[4096];
    path = check_model_path(path, first, sizeof first);
    struct engine_model *m = load_model_or_report(path, true);
    if (!m) return 2;
    char msg[512];
    if (full && engine_model_check_values(m, msg, sizeof msg) != 0) {
        fprintf(stderr, "saserve: %s: %s\n", path, msg);
        engine_model_close(m);
        return 2;
    }
    struct engine_model_desc d;
    engine_model_describe(m, &d);
    printf("%s: ok: %s, %u layers, dim %u, %u heads (%u kv), ffn %u, vocab %u, %llu parameters\n", path, d.name,
           d.n_layer, d.dim, d.n_head, d.n_head_kv, d.ffn, d.n_vocab, (unsigned long long)d.n_params);
    engine_model_close(m);
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
static int32_t *tokenize_text(const struct engine_model *m, const char *path, size_t max_tokens, size_t *n_out)
{
    size_t len = 0, n = 0;
    char *text = path ? read_text_file(path, &len) : NULL;
    if (path && !text) {
        fprintf(stderr, "saserve: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    int32_t *ids;
    if (engine_model_tokenize(m, text, len, &ids, &n) != 0) {
        fprintf(stderr, "saserve: cannot tokenize %s\n", path ? path : "the built-in text");
        free(text);
        return NULL;
    }
    if (max_tokens && n > max_tokens) n = max_tokens;
    free(text);
    *n_out = n;
    return ids;
}

#define SIM_CTX 512 /* similarity's tokens of the text */

static void similarity_usage(void)
{
    fprintf(stderr,
            "usage: saserve similarity -m MODEL [-f TEXT] [options]\n"
            "  L x L mean cosine similarity of the layers' attention rows (over heads and positions)\n"
            "  -f, --file PATH      calibration text (default: built-in story)\n"
            "  -c, --ctx N          tokens of the text to use (default " SA_DEFAULT_STR(SIM_CTX) ")\n"
            "  -t, --threads N      (default " SA_DEFAULT_STR(SA_DEFAULT_THREADS) ")\n"
            "      --json PATH      write {matrix, spans, threshold} as JSON\n"
            "      --png PATH       draw the matrix as a heatmap\n"
            "      --threshold T    similarity threshold for the proposed spans (default " SA_DEFAULT_STR(
                SA_DEFAULT_SHARE_THRESHOLD) ")\n");
}

/* Write similarity's {model, tokens, layers, threshold, spans, matrix} JSON file. */
static int write_similarity_json(const char *path, const char *model, size_t n, uint32_t L, double threshold,
                                 const char *spans, const float *sim)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "saserve: %s: %s\n", path, strerror(errno));
        return SA_ERR_IO;
    }
    fprintf(f, "{\"model\": \"%s\", \"tokens\": %zu, \"layers\": %u, \"threshold\": %.4f, \"spans\": \"%s\", \"matrix\": [",
            model, n, L, threshold, spans);
    for (uint32_t a = 0; a < L; a++) {
        fprintf(f, "%s[", a ? ", " : "");
        for (uint32_t b = 0; b < L; b++) fprintf(f, "%s%.6f", b ? ", " : "", (double)sim[a * L + b]);
        fprintf(f, "]");
    }
    fprintf(f, "]}\n");
    fclose(f);
    return 0;
}

int cli_similarity(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
                                         {"ctx", required_argument, 0, 'c'},   {"threads", required_argument, 0, 't'},
                                         {"json", required_argument, 0, 'j'},  {"png", required_argument, 0, 'g'},
                                         {"threshold", required_argument, 0, 'T'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *file = NULL, *json = NULL, *png = NULL;
    double n_ctx = SIM_CTX, threads = SA_DEFAULT_THREADS, threshold = SA_DEFAULT_SHARE_THRESHOLD;
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
    struct engine_model *m = load_model_or_report(model_path, true);
    if (!m) return 2;
    struct engine_model_desc d;
    engine_model_describe(m, &d);
    size_t n;
    int32_t *ids = tokenize_text(m, file, (size_t)n_ctx, &n);
    const uint32_t L = d.n_layer;
    float *sim = malloc((size_t)L * L * sizeof *sim);
    if (!ids || !sim) {
        free(ids);
        free(sim);
        engine_model_close(m);
        return 1;
    }
    struct share_plan plan;
    int rc = engine_model_similarity(m, ids, n, (int)threads, (float)threshold, sim, &plan);
    if (rc) {
        fprintf(stderr, "saserve: similarity: %s\n", sa_err_str(rc));
    } else {
        char spans[256];
        share_plan_format(&plan, spans, sizeof spans);
        printf("attention similarity, %s, %zu tokens (mean cosine over %u heads and all query positions)\n      ",
               d.name, n, d.n_head);
        for (uint32_t b = 0; b < L; b++) printf(" %5u", b);
        printf("\n");
        for (uint32_t a = 0; a < L; a++) {
            printf("%5u ", a);
            for (uint32_t b = 0; b < L; b++) printf(" %5.3f", (double)sim[a * L + b]);
            printf("\n");
        }
        printf("auto spans at threshold %.2f: %s\n", threshold, spans);
        if (json) rc = write_similarity_json(json, d.name, n, L, threshold, spans, sim);
        if (png && heatmap_write_png(png, sim, (int)L, 0.0f) != 0) {
            fprintf(stderr, "saserve: %s: cannot write the heatmap\n", png);
            rc = SA_ERR_IO;
        }
    }
    free(ids);
    free(sim);
    engine_model_close(m);
    return rc ? 1 : 0;
}

#define PPL_CTX 256 /* perplexity's window */

static void perplexity_usage(void)
{
    fprintf(stderr,
            "usage: saserve perplexity -m MODEL -f TEXT [options]\n"
            "  Splits the tokenized text into windows of --ctx tokens (each starting with BOS)\n"
            "  and scores every next-token prediction in each window.\n"
            "  -c, --ctx N          window (default " SA_DEFAULT_STR(PPL_CTX) ")\n"
            "  -n, --max-tokens N   use at most N tokens of the text (default: all)\n"
            "  -t, --threads N      (default " SA_DEFAULT_STR(SA_DEFAULT_THREADS) ")\n"
            "      --json           print one JSON line instead of text\n" ATTN_OPTS_HELP);
}

static void print_perplexity(const char *model, const struct share_plan *plan, const struct rebalance_params *rb,
                             const struct engine_perplexity_result *r, bool as_json)
{
    char spans[256];
    share_plan_format(plan, spans, sizeof spans);
    const double ppl = exp(r->nll / (double)r->tokens_scored),
                 bpb = r->nll / log(2.0) / (double)(r->bytes_scored ? r->bytes_scored : 1);
    if (as_json)
        printf("{\"model\": \"%s\", \"spans\": \"%s\", \"rebalance\": %s, \"alpha\": %.4f, \"tau\": %.4f, "
               "\"tokens_scored\": %llu, \"perplexity\": %.6f, \"bits_per_byte\": %.6f, \"kv_bytes_per_token\": %llu, "
               "\"kv_bytes_per_token_without_sharing\": %llu, \"seconds\": %.2f}\n",
               model, spans, rb->on ? "true" : "false", (double)rb->alpha, (double)rb->tau,
               (unsigned long long)r->tokens_scored, ppl, bpb, (unsigned long long)r->cache.kv_bytes,
               (unsigned long long)r->cache.kv_bytes_without_sharing, r->seconds);
    else
        printf("%s: spans %s, rebalance %s: perplexity %.4f, %.4f bits/byte over %llu tokens; KV %llu of %llu "
               "bytes/token (%.1f s)\n",
               model, spans, rb->on ? "on" : "off", ppl, bpb, (unsigned long long)r->tokens_scored,
               (unsigned long long)r->cache.kv_bytes, (unsigned long long)r->cache.kv_bytes_without_sharing,
               r->seconds);
}

int cli_perplexity(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
                                         {"ctx", required_argument, 0, 'c'}, {"max-tokens", required_argument, 0, 'n'},
                                         {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, ATTN_LONG_OPTS, {0, 0, 0, 0}};
    const char *model_path = NULL, *file = NULL;
    double n_ctx = PPL_CTX, max_tokens = 0, threads = SA_DEFAULT_THREADS;
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
    struct engine_model *m = load_model_or_report(model_path, true);
    if (!m) return 2;
    struct share_plan plan;
    size_t n = 0;
    int32_t *ids = NULL;
    if (attn_opts_plan(&ao, m, (int)threads, &plan) || !(ids = tokenize_text(m, file, (size_t)max_tokens, &n))) {
        engine_model_close(m);
        return 1;
    }
    struct engine_perplexity_params p = {.window = (uint32_t)n_ctx, .n_threads = (int)threads, .plan = &plan,
                                         .rebalance = ao.rb};
    struct engine_perplexity_result r;
    int rc = engine_model_perplexity(m, ids, n, &p, &r);
    free(ids);
    if (!r.started) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
    } else if (!rc && r.tokens_scored) {
        struct engine_model_desc d;
        engine_model_describe(m, &d);
        print_perplexity(d.name, &plan, &ao.rb, &r, as_json);
    } else if (rc) {
        fprintf(stderr, "saserve: perplexity: %s\n", sa_err_str(rc));
    }
    engine_model_close(m);
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
    char msg[512] = "";
    struct engine_quantize_stats st;
    double t0 = now_s();
    int rc = engine_quantize_file(argv[1], argv[2], argv[3], &st, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", argv[1], msg[0] ? msg : sa_err_str(rc));
        return rc == SA_ERR_INVALID_ARG ? 1 : 2;
    }
    printf("%s: %s, %llu of %llu tensors quantised, %.2f MB -> %.2f MB in %.1f s\n", argv[2], argv[3],
           (unsigned long long)st.n_quantized, (unsigned long long)st.n_tensors, (double)st.bytes_in / 1e6,
           (double)st.bytes_out / 1e6, now_s() - t0);
    return 0;
}
