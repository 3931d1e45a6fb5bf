/*
 * test_oneshot.c - engine.h's one-shot model tools (engine/oneshot.c) on
 * stories260K, against independent references: generate's greedy tokens are
 * the golden ones test_engine.c checks the engine with, and equal the engine's
 * own (engine_submit) for a prompt with a sharing plan and the re-balancer;
 * perplexity's summed negative log-likelihood equals minus the sum of the
 * sampler's log-probabilities of the same tokens generated one at a time;
 * similarity is a cosine matrix; describe agrees with engine_info; bad
 * arguments get their named errors.
 */
#include "../test.h"

#include "engine/engine.h"

#include <math.h>
#include <pthread.h>

/* BOS, then greedy: the same golden tokens as test_engine.c */
static const int32_t golden_260k[40] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                        426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                        295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};

static const char *model_path(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    return path;
}

struct got {
    int32_t ids[256];
    float logprob[256];
    size_t n;
    char text[4096];
    size_t n_text;
    int prompts, flushes;
};

static void on_text(void *user, int32_t id, const char *text, size_t len, const struct sampler_result *res)
{
    struct got *g = user;
    if (id == ENGINE_GEN_PROMPT) g->prompts++;
    if (id == ENGINE_GEN_FLUSH) g->flushes++;
    if (id >= 0 && g->n < 256) {
        g->logprob[g->n] = res->logprob;
        g->ids[g->n++] = id;
    }
    if (id != ENGINE_GEN_PROMPT && g->n_text + len < sizeof g->text) {
        memcpy(g->text + g->n_text, text, len);
        g->n_text += len;
        g->text[g->n_text] = 0;
    }
}

static struct engine_generate_params greedy_params(uint32_t n, struct got *g)
{
    struct engine_generate_params p = {.n_predict = n, .n_threads = 2, .sampling = sampler_default_params(),
                                       .on_text = on_text, .user = g};
    p.sampling.temperature = 0;
    return p;
}

static void test_generate_golden(void)
{
    char msg[256];
    struct engine_model *m;
    ASSERT_OK(engine_model_open(model_path(), false, &m, msg, sizeof msg));
    int32_t bos = engine_model_bos(m);
    ASSERT_EQ(bos, 1);
    struct got g = {0};
    struct engine_generate_params p = greedy_params(40, &g);
    struct engine_generate_result r;
    ASSERT_OK(engine_model_generate(m, &bos, 1, &p, &r));
    ASSERT_TRUE(r.started);
    ASSERT_EQ(r.n_generated, 40);
    ASSERT_EQ(g.n, 40);
    for (size_t i = 0; i < 40 && i < g.n; i++) ASSERT_EQ(g.ids[i], golden_260k[i]);
    ASSERT_EQ(g.prompts, 1);
    ASSERT_EQ(g.flushes, 1);
    ASSERT_EQ(r.cache.tokens, 40); /* BOS + 39 fed back; the 40th is sampled, not cached */
    ASSERT_CONTAINS(g.text, "Once upon a time, there was a little girl named Lily.");
    /* n_predict is clamped to the context: 8 positions hold BOS + 7 generated */
    struct got g2 = {0};
    p = greedy_params(100, &g2);
    p.n_ctx = 8;
    ASSERT_OK(engine_model_generate(m, &bos, 1, &p, &r));
    ASSERT_EQ(r.n_generated, 7);
    engine_model_close(m);
}

struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t ids[64];
    size_t n;
    bool done;
};

static void engine_cb(void *user, const struct engine_event *ev)
{
    struct collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->type == ENGINE_EV_TOKEN && ev->token >= 0 && c->n < 64) c->ids[c->n++] = ev->token;
    if (ev->type != ENGINE_EV_TOKEN) c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* The same prompt, plan and re-balancer through engine_submit and through the one-shot
 * call give the same greedy tokens (the engine first, destroyed before the one-shot
 * run); describe agrees with engine_info. */
static void test_generate_equals_engine(void)
{
    char msg[256];
    struct engine_config cfg = engine_default_config();
    cfg.model_path = model_path();
    cfg.n_slots = 1;
    cfg.n_ctx = 128;
    cfg.share_spans = "off";
    cfg.prefix_cache = false;
    struct engine *e;
    ASSERT_OK(engine_create(&cfg, &e, msg, sizeof msg));
    int32_t prompt[13] = {1};
    memcpy(prompt + 1, golden_260k, 12 * sizeof(int32_t));
    struct collect c = {.n = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    struct engine_request req = {.prompt = prompt, .n_prompt = 13, .max_tokens = 24,
                                 .sampling = sampler_default_params(), .share = true,
                                 .rebalance = rebalance_default_params(), .cb = engine_cb, .user = &c};
    req.sampling.temperature = 0;
    req.rebalance.on = true;
    ASSERT_OK(engine_parse_plan(e, "3-4", &req.plan, msg, sizeof msg));
    uint64_t id;
    ASSERT_OK(engine_submit(e, &req, &id));
    pthread_mutex_lock(&c.mu);
    while (!c.done) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    struct engine_model_info info_copy = *engine_info(e), *info = &info_copy;
    char name[128];
    snprintf(name, sizeof name, "%s", info->name);
    info->name = name;
    engine_destroy(e); /* the one-shot tools are not for use next to an engine (engine.h) */

    struct engine_model *m;
    ASSERT_OK(engine_model_open(model_path(), true, &m, msg, sizeof msg));
    struct engine_model_desc d;
    engine_model_describe(m, &d);
    ASSERT_STR_EQ(d.name, info->name);
    ASSERT_EQ(d.n_layer, info->n_layer);
    ASSERT_EQ(d.dim, info->dim);
    ASSERT_EQ(d.n_head, info->n_head);
    ASSERT_EQ(d.n_head_kv, info->n_head_kv);
    ASSERT_EQ(d.n_vocab, info->n_vocab);
    ASSERT_EQ(d.n_ctx_train, info->n_ctx_train);
    ASSERT_EQ(d.n_params, info->n_params);
    struct share_plan plan;
    ASSERT_OK(engine_model_plan(m, "3-4", 0.9f, 2, &plan, msg, sizeof msg));
    struct got g = {0};
    struct engine_generate_params p = greedy_params(24, &g);
    p.n_ctx = 128;
    p.plan = &plan;
    p.rebalance = req.rebalance;
    struct engine_generate_result r;
    ASSERT_OK(engine_model_generate(m, prompt, 13, &p, &r));
    ASSERT_EQ(g.n, c.n);
    ASSERT_EQ(g.n, 24);
    for (size_t i = 0; i < g.n && i < c.n; i++) ASSERT_EQ(g.ids[i], c.ids[i]);
    ASSERT_TRUE(r.cache.shared_attention);
    ASSERT_EQ(r.cache.sharing_layers, 2); /* layers 3 and 4 take layer 2's probabilities */
    ASSERT_TRUE(r.cache.kv_bytes < r.cache.kv_bytes_without_sharing);
    engine_model_close(m);
}

/* Perplexity over BOS + the greedy tokens in one window: its summed NLL is minus the
 * sum of the log-probabilities the sampler reported for them (raw logits, no
 * penalties), computed one token at a time. Tolerance 1e-3 nats per token: the two
 * paths differ only in batched vs single-row float arithmetic. */
static void test_perplexity_equals_logprobs(void)
{
    char msg[256];
    struct engine_model *m;
    ASSERT_OK(engine_model_open(model_path(), true, &m, msg, sizeof msg));
    int32_t ids[31] = {1};
    struct got g = {0};
    struct engine_generate_params p = greedy_params(30, &g);
    p.sampling.n_logprobs = 1;
    struct engine_generate_result r;
    ASSERT_OK(engine_model_generate(m, ids, 1, &p, &r));
    ASSERT_EQ(g.n, 30);
    double want = 0;
    for (size_t i = 0; i < g.n && i < 30; i++) {
        ids[i + 1] = g.ids[i];
        want -= g.logprob[i];
    }
    struct engine_perplexity_params pp = {.window = 31, .n_threads = 2};
    struct engine_perplexity_result pr;
    ASSERT_OK(engine_model_perplexity(m, ids, 31, &pp, &pr));
    ASSERT_TRUE(pr.started);
    ASSERT_EQ(pr.tokens_scored, 30);
    ASSERT_TRUE(pr.bytes_scored >= 30);
    ASSERT_NEAR(pr.nll, want, 30 * 1e-3);
    ASSERT_TRUE(want > 0.1); /* not a vacuous zero */
    /* windows of 8 (BOS + 7 tokens; the last BOS + 2): each token is still scored once,
     * but with less context, so the NLL per token grows */
    pp.window = 8;
    struct engine_perplexity_result pw;
    ASSERT_OK(engine_model_perplexity(m, ids, 31, &pp, &pw));
    ASSERT_EQ(pw.tokens_scored, 30);
    ASSERT_TRUE(pw.nll / (double)pw.tokens_scored > pr.nll / (double)pr.tokens_scored);
    engine_model_close(m);
}

static void test_similarity(void)
{
    char msg[256];
    struct engine_model *m;
    ASSERT_OK(engine_model_open(model_path(), true, &m, msg, sizeof msg));
    int32_t *ids;
    size_t n;
    ASSERT_OK(engine_model_tokenize(m, NULL, 0, &ids, &n)); /* the built-in story */
    ASSERT_TRUE(n > 64);
    ASSERT_EQ(ids[0], 1);
    float sim[25];
    struct share_plan plan;
    ASSERT_OK(engine_model_similarity(m, ids, 64, 2, -1.0f, sim, &plan));
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++) {
            ASSERT_NEAR(sim[a * 5 + b], sim[b * 5 + a], 1e-5);
            ASSERT_TRUE(sim[a * 5 + b] >= -1.0001f && sim[a * 5 + b] <= 1.0001f);
        }
    for (int a = 0; a < 5; a++) ASSERT_NEAR(sim[a * 5 + a], 1.0, 1e-4);
    ASSERT_TRUE(plan.n_spans > 0); /* threshold -1: every pair is similar enough */
    free(ids);
    engine_model_close(m);
}

static void test_errors(void)
{
    char msg[256] = "";
    struct engine_model *m = (struct engine_model *)&msg;
    ASSERT_NE(engine_model_open("/nonexistent/model.gguf", true, &m, msg, sizeof msg), 0);
    ASSERT_TRUE(m == NULL);
    ASSERT_CONTAINS(msg, "/nonexistent/model.gguf");
    ASSERT_OK(engine_model_open(model_path(), true, &m, msg, sizeof msg));
    struct share_plan plan;
    msg[0] = 0;
    ASSERT_EQ(engine_model_plan(m, "9-12", 0.9f, 2, &plan, msg, sizeof msg), SA_ERR_INVALID_ARG);
    ASSERT_CONTAINS(msg, "out of range");
    ASSERT_OK(engine_model_plan(m, "off", 0.9f, 2, &plan, msg, sizeof msg));
    ASSERT_EQ(plan.n_spans, 0);
    int32_t ids[4] = {1, 403, 407, 261};
    struct engine_perplexity_params pp = {.window = 1, .n_threads = 2};
    struct engine_perplexity_result pr;
    ASSERT_EQ(engine_model_perplexity(m, ids, 4, &pp, &pr), SA_ERR_INVALID_ARG);
    ASSERT_TRUE(!pr.started);
    ASSERT_OK(engine_model_check_values(m, msg, sizeof msg));
    engine_model_close(m);
    engine_model_close(NULL);
    struct engine_quantize_stats st;
    char in[512];
    snprintf(in, sizeof in, "%s/models/kquant/tiny-f32.gguf", test_shared_dir());
    msg[0] = 0;
    ASSERT_EQ(engine_quantize_file(in, "/nonexistent/out.gguf", "BOGUS", &st, msg, sizeof msg),
              SA_ERR_INVALID_ARG);
    ASSERT_CONTAINS(msg, "BOGUS");
}

int main(void)
{
    TEST_RUN(test_generate_golden);
    TEST_RUN(test_generate_equals_engine);
    TEST_RUN(test_perplexity_equals_logprobs);
    TEST_RUN(test_similarity);
    TEST_RUN(test_errors);
    TEST_DONE();
}
