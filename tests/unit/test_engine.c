/*
 * test_engine.c - the request engine end to end on stories260K: golden
 * greedy tokens through the queue and slots, concurrent sequences with
 * different plans equal their runs alone, stop strings, cancellation
 * (queued and running), queue limits and argument errors.
 */
#include "../test.h"

#include "engine/calibrate.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "engine/transformer.h"
#include "../tf_pair.h"

#include <pthread.h>
#include <time.h>

static const int32_t golden_260k[40] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                        426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                        295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};

struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t tokens[512];
    size_t n_tokens;
    char text[4096];
    size_t n_text;
    bool done;
    struct engine_event last;
    float embd[1024];
    uint32_t n_embd;
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void on_event(void *user, const struct engine_event *ev)
{
    struct collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->type == ENGINE_EV_TOKEN) {
        if (ev->token >= 0 && c->n_tokens < 512) c->tokens[c->n_tokens++] = ev->token;
        if (c->n_text + ev->text_len < sizeof c->text) {
            memcpy(c->text + c->n_text, ev->text, ev->text_len);
            c->n_text += ev->text_len;
        }
    } else {
        c->last = *ev;
        c->n_embd = ev->embedding ? ev->n_embd : 0;
        if (ev->embedding) memcpy(c->embd, ev->embedding, ev->n_embd * sizeof(float));
        c->last.embedding = NULL; /* valid during the callback only */
        c->done = true;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void wait_done(struct collect *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->done) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static struct engine *start(uint32_t slots, uint32_t queue_max)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.n_slots = slots;
    cfg.queue_max = queue_max;
    cfg.n_ctx = 256;
    cfg.prefill_chunk = 4; /* exercise chunked prefill */
    cfg.share_spans = "off";
    cfg.debug_checks = true; /* the pool's books are checked after every step */
    struct engine *e = NULL;
    if (engine_create(&cfg, &e, msg, sizeof msg)) fprintf(stderr, "engine_create: %s\n", msg);
    return e;
}

/* No sequence holds a page or a reservation; only the prefix cache may hold pages. */
static void assert_pool_idle(struct engine *e)
{
    struct engine_metrics m;
    engine_get_metrics(e, &m);
    ASSERT_EQ(m.active_sequences, 0);
    ASSERT_EQ(m.kv_pages_held, 0);
    ASSERT_EQ(m.kv_pages_reserved, 0);
    ASSERT_EQ(m.kv_pages_used, m.kv_pages_cached);
    ASSERT_EQ(m.kv_bytes_used, 0);
}

static struct engine_request greedy(const int32_t *prompt, size_t n, uint32_t max_tokens, struct collect *c)
{
    struct engine_request r = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens,
                               .sampling = sampler_default_params(), .rebalance = rebalance_default_params(),
                               .cb = on_event, .user = c};
    return r;
}

static void test_golden_through_engine(void)
{
    struct engine *e = start(2, 8);
    ASSERT_TRUE(e != NULL);
    if (!e) return;
    int32_t bos = 1;
    struct collect c;
    collect_init(&c);
    struct engine_request r = greedy(&bos, 1, 40, &c);
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
    wait_done(&c);
    ASSERT_EQ(c.last.finish, ENGINE_FINISH_LENGTH);
    ASSERT_EQ(c.n_tokens, 40);
    for (int i = 0; i < 40 && i < (int)c.n_tokens; i++) ASSERT_EQ(c.tokens[i], golden_260k[i]);
    ASSERT_EQ(c.last.completion_tokens, 40);
    ASSERT_EQ(c.last.cache.tokens, 40); /* BOS + 39 fed back; the 40th is sampled, not cached */
    ASSERT_CONTAINS(c.text, "Once upon a time, there was a little girl named Lily.");
    engine_destroy(e);
}

/* prompt: BOS + the first len-1 golden tokens (longer than one prefill chunk) */
static void submit_prompt(struct engine *e, size_t len, const char *spans, bool rebalance, struct collect *c)
{
    int32_t prompt[40] = {1};
    memcpy(prompt + 1, golden_260k, 39 * sizeof(int32_t));
    collect_init(c);
    struct engine_request r = greedy(prompt, len, 20, c);
    if (spans) {
        r.share = true;
        ASSERT_OK(engine_parse_plan(e, spans, &r.plan, NULL, 0));
    }
    r.rebalance.on = rebalance;
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
}

/* Six sequences with mixed plans (off / 3-4 / 1-2), re-balancer on and off
 * and mixed prompt lengths, run together (prefill chunks and decode rows
 * share steps; 3+ decode rows take the blocked kernel), give the greedy
 * tokens each gives alone; with and without the prefix cache. */
static void test_concurrent_plans_equal_alone(void)
{
    const char *plans[6] = {NULL, "3-4", "1-2", NULL, "3-4", "1-2"};
    const bool rb[6] = {false, false, true, true, false, false};
    const size_t len[6] = {13, 5, 29, 21, 13, 3};
    for (int prefix = 0; prefix < 2; prefix++) {
        char path[512], msg[256];
        snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
        struct engine_config cfg = engine_default_config();
        cfg.model_path = path;
        cfg.n_slots = 6;
        cfg.n_ctx = 256;
        cfg.prefill_chunk = 8; /* prompts take several steps, next to others' decode rows */
        cfg.share_spans = "off";
        cfg.prefix_cache = prefix;
        cfg.debug_checks = true;
        struct engine *e = NULL;
        ASSERT_OK(engine_create(&cfg, &e, msg, sizeof msg));
        if (!e) return;
        struct collect alone[6], c[6];
        for (int k = 0; k < 6; k++) {
            submit_prompt(e, len[k], plans[k], rb[k], &alone[k]);
            wait_done(&alone[k]);
        }
        for (int k = 0; k < 6; k++) submit_prompt(e, len[k], plans[k], rb[k], &c[k]);
        for (int k = 0; k < 6; k++) {
            wait_done(&c[k]);
            ASSERT_EQ(c[k].n_tokens, alone[k].n_tokens);
            ASSERT_TRUE(memcmp(c[k].tokens, alone[k].tokens, alone[k].n_tokens * sizeof(int32_t)) == 0);
        }
        /* 28 reusable tokens: block 0 of its own earlier run's prompt, and the rest from the
         * block that run filled while generating (its greedy answer continues the golden text,
         * as this prompt does) */
        if (prefix) ASSERT_EQ(c[2].last.cached_tokens, 28);
        /* the sharing sequence reports its savings; no K pages for its 2 sharing layers */
        ASSERT_EQ(c[4].last.cache.sharing_layers, 2);
        ASSERT_TRUE(c[4].last.cache.shared_attention);
        ASSERT_EQ(c[4].last.cache.n_spans, 1); /* the plan "3-4", as data */
        ASSERT_EQ(c[4].last.cache.spans[0].a, 3);
        ASSERT_EQ(c[4].last.cache.spans[0].b, 4);
        ASSERT_EQ(c[4].last.cache.kv_bytes_saved, c[4].last.cache.kv_bytes_without_sharing / 5);
        ASSERT_EQ(c[4].last.cache.k_bytes_allocated * 5, c[0].last.cache.k_bytes_allocated * 3);
        ASSERT_TRUE(c[2].last.cache.rebalance);
        /* sharing changes the text here (checks the plan is applied per sequence) */
        ASSERT_TRUE(memcmp(alone[0].tokens, alone[4].tokens, 20 * sizeof(int32_t)) != 0);
        assert_pool_idle(e);
        engine_destroy(e);
    }
}

/* TinyStories-656K (Q8_0) read into memory: its matrices in the load-time
 * 16-row layout (repack.h) on an AVX-512 VNNI CPU, so every step (prefill
 * chunks of 8, 1-5 decode rows) runs gemm_matmul_r16. Five sequences run
 * together give the greedy tokens each gives alone, bit for bit. */
static void test_q8_0_in_memory_batched_equals_alone(void)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/tinystories-656K/TinyStories-656K-Q8_0.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.use_mmap = false;
    cfg.n_slots = 5;
    cfg.n_ctx = 256;
    cfg.prefill_chunk = 8;
    cfg.share_spans = "off";
    cfg.prefix_cache = false;
    cfg.debug_checks = true;
    struct engine *e = NULL;
    ASSERT_OK(engine_create(&cfg, &e, msg, sizeof msg));
    if (!e) return;
    const size_t len[5] = {13, 5, 29, 21, 3};
    struct collect alone[5], c[5];
    for (int k = 0; k < 5; k++) {
        submit_prompt(e, len[k], NULL, false, &alone[k]);
        wait_done(&alone[k]);
    }
    for (int k = 0; k < 5; k++) submit_prompt(e, len[k], NULL, false, &c[k]);
    for (int k = 0; k < 5; k++) {
        wait_done(&c[k]);
        ASSERT_EQ(c[k].n_tokens, 20);
        ASSERT_EQ(c[k].n_tokens, alone[k].n_tokens);
        ASSERT_TRUE(memcmp(c[k].tokens, alone[k].tokens, alone[k].n_tokens * sizeof(int32_t)) == 0);
    }
    assert_pool_idle(e);
    engine_destroy(e);
}

static void test_stop_strings(void)
{
    struct engine *e = start(1, 4);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t bos = 1;
    struct collect c;
    collect_init(&c);
    struct engine_request r = greedy(&bos, 1, 100, &c);
    r.stop[0] = "Lily";
    r.stop[1] = "zzz";
    r.n_stop = 2;
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
    wait_done(&c);
    ASSERT_EQ(c.last.finish, ENGINE_FINISH_STOP);
    c.text[c.n_text] = 0;
    ASSERT_STR_EQ(c.text, "Once upon a time, there was a little girl named ");
    engine_destroy(e);
}

static void test_cancel_and_limits(void)
{
    struct engine *e = start(1, 3);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t bos = 1;
    struct collect a, b, d, x;
    collect_init(&a);
    collect_init(&b);
    collect_init(&d);
    collect_init(&x);
    uint64_t ia, ib, id, ix;
    struct engine_request ra = greedy(&bos, 1, 200, &a), rb = greedy(&bos, 1, 5, &b), rd = greedy(&bos, 1, 5, &d),
                          rx = greedy(&bos, 1, 5, &x);
    ASSERT_OK(engine_submit(e, &ra, &ia));
    ASSERT_OK(engine_submit(e, &rb, &ib));
    ASSERT_OK(engine_submit(e, &rd, &id));
    /* one slot, queue of 3: the 4th waits only if the first was admitted already */
    int rc = engine_submit(e, &rx, &ix);
    ASSERT_TRUE(rc == 0 || rc == SA_ERR_BUSY);
    engine_cancel(e, ib); /* queued (or just admitted) */
    engine_cancel(e, ia); /* running */
    wait_done(&a);
    wait_done(&b);
    wait_done(&d);
    if (rc == 0) wait_done(&x);
    ASSERT_EQ(a.last.finish, ENGINE_FINISH_CANCELLED);
    ASSERT_EQ(b.last.finish, ENGINE_FINISH_CANCELLED);
    ASSERT_EQ(d.last.finish, ENGINE_FINISH_LENGTH);
    ASSERT_TRUE(a.n_tokens < 200);
    struct engine_metrics m;
    engine_get_metrics(e, &m);
    ASSERT_EQ(m.active_sequences, 0);
    ASSERT_EQ(m.queue_depth, 0);
    ASSERT_EQ(m.kv_bytes_used, 0);
    /* argument errors: never queued, callback never called */
    struct collect y;
    collect_init(&y);
    int32_t bad = 100000;
    struct engine_request ry = greedy(&bad, 1, 5, &y);
    ASSERT_EQ(engine_submit(e, &ry, &ix), SA_ERR_INVALID_ARG);
    int32_t *long_prompt = calloc(300, sizeof(int32_t));
    ry = greedy(long_prompt, 300, 5, &y);
    ASSERT_EQ(engine_submit(e, &ry, &ix), SA_ERR_CONTEXT_FULL);
    free(long_prompt);
    ry = greedy(&bos, 1, 5, &y);
    ry.sampling.top_p = 0;
    ASSERT_EQ(engine_submit(e, &ry, &ix), SA_ERR_RANGE);
    ASSERT_TRUE(!y.done);
    engine_destroy(e);
}

static void test_destroy_cancels_queued(void)
{
    struct engine *e = start(1, 8);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t bos = 1;
    struct collect c[4];
    uint64_t id;
    for (int k = 0; k < 4; k++) {
        collect_init(&c[k]);
        struct engine_request r = greedy(&bos, 1, 200, &c[k]);
        ASSERT_OK(engine_submit(e, &r, &id));
    }
    engine_destroy(e);
    for (int k = 0; k < 4; k++) {
        ASSERT_TRUE(c[k].done);
        ASSERT_TRUE(c[k].last.finish == ENGINE_FINISH_CANCELLED || c[k].last.finish == ENGINE_FINISH_LENGTH);
    }
}

/* The queue is bounded by prompt tokens as well as by requests. */
static struct engine *start_budget(uint32_t slots, uint64_t budget, bool prefix, uint64_t queue_tokens);

static void test_queue_token_bound(void)
{
    struct engine *e = start_budget(1, 0, false, 20);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t prompt[13] = {1};
    memcpy(prompt + 1, golden_260k, 12 * sizeof(int32_t));
    struct collect c[4];
    uint64_t id[4];
    for (int k = 0; k < 4; k++) collect_init(&c[k]);
    struct engine_request r = greedy(prompt, 13, 240, &c[0]);
    ASSERT_OK(engine_submit(e, &r, &id[0]));
    struct engine_metrics m;
    for (int spin = 0; spin < 5000; spin++) { /* until the first one runs */
        engine_get_metrics(e, &m);
        if (m.active_sequences == 1) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    r.user = &c[1];
    ASSERT_OK(engine_submit(e, &r, &id[1])); /* 13 tokens wait */
    engine_get_metrics(e, &m);
    ASSERT_EQ(m.queue_tokens, 13);
    r.user = &c[2];
    ASSERT_EQ(engine_submit(e, &r, &id[2]), SA_ERR_BUSY); /* 26 > 20 */
    r.n_prompt = 7;
    r.user = &c[3];
    ASSERT_OK(engine_submit(e, &r, &id[3])); /* 20 fits */
    engine_cancel(e, id[0]);
    engine_cancel(e, id[1]);
    engine_cancel(e, id[3]);
    wait_done(&c[0]);
    wait_done(&c[1]);
    wait_done(&c[3]);
    engine_get_metrics(e, &m);
    ASSERT_EQ(m.queue_tokens, 0);
    engine_destroy(e);
}

static struct engine *start_budget(uint32_t slots, uint64_t budget, bool prefix, uint64_t queue_tokens)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.n_ctx = 256;
    cfg.n_slots = slots;
    cfg.kv_block = 16;
    cfg.kv_budget = budget;
    cfg.prefix_cache = prefix;
    cfg.prefill_chunk = 8;
    cfg.queue_max = 8;
    cfg.queue_max_tokens = queue_tokens;
    cfg.share_spans = "off";
    cfg.debug_checks = true;
    struct engine *e = NULL;
    if (engine_create(&cfg, &e, msg, sizeof msg)) fprintf(stderr, "engine_create: %s\n", msg);
    return e;
}

/* Token events of two sequences, in the order the step thread sent them. */
struct order_log {
    pthread_mutex_t mu;
    int who[1024];
    int n;
    int first_long; /* index of the long prompt's first token, -1 before */
};
struct order_user {
    struct order_log *log;
    int who;
    struct collect c;
};

static void on_ordered(void *user, const struct engine_event *ev)
{
    struct order_user *u = user;
    if (ev->type == ENGINE_EV_TOKEN) {
        pthread_mutex_lock(&u->log->mu);
        if (u->log->n < 1024) u->log->who[u->log->n++] = u->who;
        pthread_mutex_unlock(&u->log->mu);
    }
    on_event(&u->c, ev);
}

/* A long prompt is prefilled in chunks inside the decode steps: a sequence
 * already decoding keeps getting a token every step meanwhile (a 200-token
 * prompt in chunks of 8 takes 25 steps). */
static void test_long_prompt_does_not_starve(void)
{
    struct engine *e = start_budget(2, 0, false, 0);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    struct order_log log = {.n = 0};
    pthread_mutex_init(&log.mu, NULL);
    static struct order_user dec, lng;
    dec = (struct order_user){.log = &log, .who = 0};
    lng = (struct order_user){.log = &log, .who = 1};
    collect_init(&dec.c);
    collect_init(&lng.c);
    int32_t bos = 1, prompt[200];
    for (int i = 0; i < 200; i++) prompt[i] = i ? golden_260k[i % 40] : 1;
    struct engine_request r = greedy(&bos, 1, 200, &dec.c);
    r.cb = on_ordered;
    r.user = &dec;
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
    for (int spin = 0; spin < 5000; spin++) { /* the decoder is under way */
        pthread_mutex_lock(&log.mu);
        int n = log.n;
        pthread_mutex_unlock(&log.mu);
        if (n >= 3) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&log.mu);
    int before = log.n;
    pthread_mutex_unlock(&log.mu);
    struct engine_request rl = greedy(prompt, 200, 4, &lng.c);
    rl.cb = on_ordered;
    rl.user = &lng;
    ASSERT_OK(engine_submit(e, &rl, &id));
    wait_done(&lng.c);
    wait_done(&dec.c);
    int between = 0, k = before;
    for (; k < log.n && log.who[k] == 0; k++) between++;
    fprintf(stderr, "  decoder tokens while the 200-token prompt was prefilled: %d\n", between);
    ASSERT_TRUE(k < log.n);        /* the long prompt did produce tokens */
    ASSERT_TRUE(between >= 20);     /* ~25 prefill steps, one decode token each */
    engine_destroy(e);
    pthread_mutex_destroy(&log.mu);
}

/* stories260K: 5 layers, 4 KV heads x 8 dims: a page of 16 positions is 16 x 32 x 4 = 2048 bytes */
#define PAGE_260K 2048ull

static void test_kv_budget(void)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.n_ctx = 256;
    cfg.share_spans = "off";
    /* one full context: 16 blocks x 10 pages */
    const uint64_t per_seq = 160 * PAGE_260K;
    cfg.kv_budget = per_seq - 1;
    struct engine *e = NULL;
    ASSERT_EQ(engine_create(&cfg, &e, msg, sizeof msg), SA_ERR_RANGE);
    ASSERT_CONTAINS(msg, "kv_budget");
    cfg.kv_budget = per_seq + PAGE_260K / 2;
    ASSERT_OK(engine_create(&cfg, &e, msg, sizeof msg));
    if (e) {
        struct engine_metrics m;
        engine_get_metrics(e, &m);
        ASSERT_EQ(m.kv_pages_total, 160);
        ASSERT_EQ(m.kv_bytes_capacity, per_seq);
        ASSERT_EQ(m.kv_page_bytes, PAGE_260K);
        engine_destroy(e);
    }
}

/* A budget of exactly 4 share-off sequences of 13 + 52 tokens (64 positions =
 * 4 blocks x 10 pages = 40 pages; 160 pages) runs 4 of them at once; a plan
 * sharing 4 of 5 layers (6 pages a block, r = 0.4) runs floor(4/0.6) = 6. All
 * give the tokens they give alone. */
static void test_capacity_with_sharing(void)
{
    const uint32_t n = 8;
    int32_t prompt[13] = {1};
    memcpy(prompt + 1, golden_260k, 12 * sizeof(int32_t));
    for (int share = 0; share < 2; share++) {
        struct engine *e = start_budget(n, 160 * PAGE_260K, false, 0);
        if (!e) {
            ASSERT_TRUE(e != NULL);
            return;
        }
        struct collect alone, c[8];
        collect_init(&alone);
        struct engine_request r = greedy(prompt, 13, 52, &alone);
        if (share) {
            r.share = true;
            ASSERT_OK(engine_parse_plan(e, "1-4", &r.plan, NULL, 0));
        }
        uint64_t id;
        ASSERT_OK(engine_submit(e, &r, &id));
        wait_done(&alone);
        for (uint32_t k = 0; k < n; k++) {
            collect_init(&c[k]);
            r.user = &c[k];
            ASSERT_OK(engine_submit(e, &r, &id));
        }
        for (uint32_t k = 0; k < n; k++) {
            wait_done(&c[k]);
            ASSERT_EQ(c[k].last.type, ENGINE_EV_DONE);
            ASSERT_EQ(c[k].n_tokens, 52);
            ASSERT_TRUE(c[k].n_tokens == alone.n_tokens &&
                        !memcmp(c[k].tokens, alone.tokens, alone.n_tokens * sizeof(int32_t)));
        }
        struct engine_metrics m;
        engine_get_metrics(e, &m);
        fprintf(stderr, "  share %s: %u sequences ran at once in 160 pages (page-exact %llu bytes each)\n",
                share ? "on (1-4)" : "off", m.active_sequences_peak,
                (unsigned long long)c[0].last.cache.kv_bytes_paged);
        ASSERT_EQ(m.active_sequences_peak, share ? 6 : 4);
        ASSERT_EQ(c[0].last.cache.k_pages, share ? 4 : 20);
        ASSERT_EQ(c[0].last.cache.v_pages, 20);
        ASSERT_EQ(c[0].last.cache.kv_bytes_paged, (share ? 24 : 40) * PAGE_260K);
        assert_pool_idle(e);
        engine_destroy(e);
    }
}

static void run_prompt(struct engine *e, const int32_t *prompt, size_t n, const char *spans, struct collect *c)
{
    collect_init(c);
    struct engine_request r = greedy(prompt, n, 24, c);
    if (spans) {
        r.share = true;
        ASSERT_OK(engine_parse_plan(e, spans, &r.plan, NULL, 0));
    }
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
    wait_done(c);
}

static bool same_tokens(const struct collect *a, const struct collect *b)
{
    return a->n_tokens == b->n_tokens && !memcmp(a->tokens, b->tokens, a->n_tokens * sizeof(int32_t));
}

/* A repeated prompt adopts its cached full blocks and gives the cold run's
 * tokens; a prompt diverging inside a block adopts that block partially
 * (copy-on-write); another plan never sees the prefix. */
static void test_prefix_reuse(void)
{
    struct engine *cold = start_budget(2, 0, false, 0), *e = start_budget(2, 0, true, 0);
    if (!cold || !e) {
        ASSERT_TRUE(cold && e);
        engine_destroy(cold);
        engine_destroy(e);
        return;
    }
    int32_t p1[40] = {1}, p2[40];
    memcpy(p1 + 1, golden_260k, 39 * sizeof(int32_t));
    memcpy(p2, p1, sizeof p1);
    p2[20] = 300; /* diverges inside block 1 */
    struct collect ref1, ref2, ref1s, a, b, d, f, g;
    run_prompt(cold, p1, 40, NULL, &ref1);
    run_prompt(cold, p2, 40, NULL, &ref2);
    run_prompt(cold, p1, 40, "3-4", &ref1s);
    ASSERT_EQ(ref1.last.cached_tokens, 0);

    run_prompt(e, p1, 40, NULL, &a); /* cold: caches blocks 0 and 1 */
    ASSERT_EQ(a.last.cached_tokens, 0);
    ASSERT_TRUE(same_tokens(&a, &ref1));
    run_prompt(e, p1, 40, NULL, &b); /* all 39 reusable tokens: blocks 0-1, and block 2 from the answer's blocks */
    ASSERT_EQ(b.last.cached_tokens, 39);
    ASSERT_TRUE(same_tokens(&b, &ref1));
    run_prompt(e, p2, 40, NULL, &d); /* block 0 whole, block 1's first 4 tokens */
    ASSERT_EQ(d.last.cached_tokens, 20);
    ASSERT_TRUE(same_tokens(&d, &ref2));
    run_prompt(e, p1, 40, "3-4", &f); /* other plan: nothing */
    ASSERT_EQ(f.last.cached_tokens, 0);
    ASSERT_TRUE(same_tokens(&f, &ref1s));
    run_prompt(e, p1, 40, "3-4", &g); /* its own prefix now */
    ASSERT_EQ(g.last.cached_tokens, 39);
    ASSERT_TRUE(same_tokens(&g, &ref1s));
    /* the shared pages were never written: the first plan's prefix still gives the cold tokens */
    run_prompt(e, p1, 40, NULL, &b);
    ASSERT_EQ(b.last.cached_tokens, 39);
    ASSERT_TRUE(same_tokens(&b, &ref1));
    struct engine_metrics m;
    engine_get_metrics(e, &m);
    ASSERT_EQ(m.prefix_tokens_total, 39 + 20 + 39 + 39);
    ASSERT_TRUE(m.kv_pages_cached > 0);
    assert_pool_idle(e);
    assert_pool_idle(cold);
    engine_destroy(cold);
    engine_destroy(e);
}

/* Multi-turn reuse: the blocks a sequence generated are cached too, so the next turn
 * (earlier prompt + the answer + a new message) adopts them, and gives the cold tokens. */
static void test_generated_blocks_reused(void)
{
    struct engine *cold = start_budget(2, 0, false, 0), *e = start_budget(2, 0, true, 0);
    if (!cold || !e) {
        ASSERT_TRUE(cold && e);
        engine_destroy(cold);
        engine_destroy(e);
        return;
    }
    int32_t turn1[20] = {1}, turn2[64];
    memcpy(turn1 + 1, golden_260k, 19 * sizeof(int32_t));
    struct collect a, b, ref;
    run_prompt(e, turn1, 20, NULL, &a); /* 20 prompt + 24 generated: 43 positions computed, 2 full blocks */
    ASSERT_EQ(a.n_tokens, 24);
    size_t n2 = 0;
    memcpy(turn2, turn1, sizeof turn1);
    n2 = 20;
    memcpy(turn2 + n2, a.tokens, a.n_tokens * sizeof(int32_t));
    n2 += a.n_tokens;
    turn2[n2++] = 300, turn2[n2++] = 301, turn2[n2++] = 302; /* the next message */
    run_prompt(e, turn2, n2, NULL, &b);
    ASSERT_EQ(b.last.cached_tokens, 32); /* block 1 holds 12 generated tokens (the prompt alone: 16) */
    run_prompt(cold, turn2, n2, NULL, &ref);
    ASSERT_EQ(ref.last.cached_tokens, 0);
    ASSERT_TRUE(same_tokens(&b, &ref));
    /* another plan does not see the answer's blocks either */
    struct collect c;
    run_prompt(e, turn2, n2, "3-4", &c);
    ASSERT_EQ(c.last.cached_tokens, 0);
    assert_pool_idle(e);
    assert_pool_idle(cold);
    engine_destroy(cold);
    engine_destroy(e);
}

/* Token-level controls through the engine: stop_token_ids ends like EOS (not emitted);
 * with EOS forced by logit_bias, min_tokens holds it back for that many tokens and
 * ignore_eos for ever. */
static void test_token_controls(void)
{
    struct engine *e = start(2, 8);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t bos = 1, eos = engine_info(e)->eos;
    int first = 0; /* the first position of golden[10]'s id */
    while (golden_260k[first] != golden_260k[10]) first++;
    struct collect c;
    collect_init(&c);
    struct engine_request r = greedy(&bos, 1, 40, &c);
    r.stop_ids[0] = golden_260k[10];
    r.n_stop_ids = 1;
    uint64_t id;
    ASSERT_OK(engine_submit(e, &r, &id));
    wait_done(&c);
    ASSERT_EQ(c.last.finish, ENGINE_FINISH_STOP);
    ASSERT_EQ(c.n_tokens, first);
    struct sampler_bias force_eos = {eos, 100};
    for (int mode = 0; mode < 2; mode++) {
        collect_init(&c);
        r = greedy(&bos, 1, 12, &c);
        r.sampling.bias = &force_eos;
        r.sampling.n_bias = 1;
        if (mode == 0) r.sampling.min_tokens = 5;
        else r.sampling.ignore_eos = true;
        ASSERT_OK(engine_submit(e, &r, &id));
        wait_done(&c);
        if (mode == 0) { /* 5 tokens, then the forced EOS ends it */
            ASSERT_EQ(c.last.finish, ENGINE_FINISH_STOP);
            ASSERT_EQ(c.last.completion_tokens, 6);
        } else { /* EOS is never sampled: the length ends it */
            ASSERT_EQ(c.last.finish, ENGINE_FINISH_LENGTH);
            ASSERT_EQ(c.last.completion_tokens, 12);
            for (size_t i = 0; i < c.n_tokens; i++) ASSERT_NE(c.tokens[i], eos);
        }
    }
    r.stop_ids[0] = -1;
    r.n_stop_ids = 1;
    ASSERT_EQ(engine_submit(e, &r, &id), SA_ERR_INVALID_ARG);
    engine_destroy(e);
}

/* Embeddings: a prefill-only sequence gives the mean (or last) of its rows' final hidden
 * states, L2-normalised: equal (1e-5, the engine prefills in chunks of 4, the reference in
 * one step) to the same computed from one step of the transformer, with no KV kept after. */
static void test_embeddings(void)
{
    struct engine *e = start_budget(2, 0, true, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct model *m = NULL;
    char msg[256];
    if (!e || model_load(path, NULL, &m, msg, sizeof msg)) {
        ASSERT_TRUE(e && m);
        engine_destroy(e);
        model_free(m);
        return;
    }
    int32_t p[17] = {1};
    memcpy(p + 1, golden_260k, 16 * sizeof(int32_t));
    const uint32_t dim = m->hp.dim;
    /* the reference: one forward step asking for every row's hidden state */
    struct tf_opts o = {.n_ctx = 64, .n_batch = 64, .n_threads = 1};
    struct tf_pair tp;
    ASSERT_OK(tf_pair_create(m, &o, &tp));
    static float hid[17 * 1024];
    struct tf_seg sg = {.seq = tp.seq, .tokens = p, .T = 17, .pos0 = 0, .hidden = hid};
    ASSERT_OK(tf_step(tp.ws, &sg, 1, NULL));
    for (int pooling = 0; pooling < 2; pooling++) {
        double ref[1024] = {0}, norm = 0;
        for (uint32_t t = pooling ? 16 : 0; t < 17; t++)
            for (uint32_t d = 0; d < dim; d++) ref[d] += hid[t * dim + d];
        for (uint32_t d = 0; d < dim; d++) norm += ref[d] * ref[d];
        struct engine_metrics m0, m1;
        engine_get_metrics(e, &m0);
        struct collect c;
        collect_init(&c);
        struct engine_request r = greedy(p, 17, 0, &c);
        r.task = ENGINE_TASK_EMBED;
        r.pooling = pooling ? ENGINE_POOLING_LAST : ENGINE_POOLING_MEAN;
        uint64_t id;
        ASSERT_OK(engine_submit(e, &r, &id));
        wait_done(&c);
        ASSERT_EQ(c.last.type, ENGINE_EV_DONE);
        ASSERT_EQ(c.n_embd, dim);
        ASSERT_EQ(c.n_tokens, 0);
        ASSERT_EQ(c.last.prompt_tokens, 17);
        double worst = 0, len = 0;
        for (uint32_t d = 0; d < dim; d++) {
            worst = fmax(worst, fabs(c.embd[d] - ref[d] / sqrt(norm)));
            len += (double)c.embd[d] * c.embd[d];
        }
        ASSERT_TRUE(worst <= 1e-5);
        ASSERT_NEAR(len, 1.0, 1e-5);
        engine_get_metrics(e, &m1);
        ASSERT_EQ(m1.kv_pages_cached, m0.kv_pages_cached); /* nothing kept in the prefix cache */
        ASSERT_EQ(m1.prefix_hits_total, m0.prefix_hits_total);
        assert_pool_idle(e);
    }
    tf_pair_destroy(&tp);
    model_free(m);
    engine_destroy(e);
}

/* prompt_logprobs: one PROMPT event per prompt token before any TOKEN. */
struct plp_collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t n_prompt_ev, n_tok_ev, bad_order;
    float lp[256];
    int32_t top_id[256], n_top[256], token[256];
    bool done;
    struct engine_event last;
};

static void plp_event(void *user, const struct engine_event *ev)
{
    struct plp_collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->type == ENGINE_EV_PROMPT) {
        if (c->n_tok_ev || ev->pos != c->n_prompt_ev) c->bad_order++; /* in order, before any token */
        if (ev->pos < 256) {
            c->lp[ev->pos] = ev->logprobs.logprob;
            c->n_top[ev->pos] = ev->logprobs.n_top;
            c->top_id[ev->pos] = ev->logprobs.n_top ? ev->logprobs.top[0].id : -1;
            c->token[ev->pos] = ev->token;
        }
        c->n_prompt_ev++;
    } else if (ev->type == ENGINE_EV_TOKEN) {
        c->n_tok_ev++;
    } else {
        c->last = *ev;
        c->done = true;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Two prompts scored at once, over prefill chunks of 100 shared by both (rows
 * of the two in one step, blocks of 64 rows of logits): each PROMPT event's
 * logprob equals the log-softmax of a one-pass all-logits forward's previous
 * row; the prefix cache is not used for them; max_tokens 0 (SCORE) generates
 * nothing. */
static void test_prompt_logprobs(void)
{
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = path;
    cfg.n_ctx = 256;
    cfg.n_slots = 2;
    cfg.prefill_chunk = 100;
    cfg.share_spans = "off";
    cfg.debug_checks = true;
    struct engine *e = NULL;
    struct model *m = NULL;
    if (engine_create(&cfg, &e, msg, sizeof msg) || model_load(path, NULL, &m, msg, sizeof msg)) {
        fprintf(stderr, "%s\n", msg);
        ASSERT_TRUE(e && m);
        engine_destroy(e);
        model_free(m);
        return;
    }
    enum { NA = 150, NB = 90 };
    static int32_t pa[NA], pb[NB];
    pa[0] = pb[0] = 1;
    for (int i = 1; i < NA; i++) pa[i] = golden_260k[(i - 1) % 40];
    for (int i = 1; i < NB; i++) pb[i] = golden_260k[(i * 7) % 40];
    const uint32_t V = m->hp.n_vocab;
    static double ref_a[NA], ref_b[NB];
    static int32_t arg_a[NA], arg_b[NB];
    for (int which = 0; which < 2; which++) { /* the reference: every row's logits in one pass */
        const int32_t *p = which ? pb : pa;
        const uint32_t n = which ? NB : NA;
        double *ref = which ? ref_b : ref_a;
        int32_t *arg = which ? arg_b : arg_a;
        struct tf_opts o = {.n_ctx = 256, .n_batch = NA, .n_threads = 1, .all_logits = true};
        struct tf_pair tp;
        const float *lg;
        ASSERT_OK(tf_pair_create(m, &o, &tp));
        ASSERT_OK(tf_pair_forward(&tp, p, n, 0, &lg));
        for (uint32_t i = 1; i < n; i++) {
            const float *row = lg + (size_t)(i - 1) * V;
            double mx = row[0], sum = 0;
            arg[i] = 0;
            for (uint32_t k = 1; k < V; k++)
                if (row[k] > mx) mx = row[k], arg[i] = (int32_t)k;
            for (uint32_t k = 0; k < V; k++) sum += exp(row[k] - mx);
            ref[i] = row[p[i]] - mx - log(sum);
        }
        tf_pair_destroy(&tp);
    }
    for (int round = 0; round < 2; round++) { /* round 1: the prompts are in the prefix cache */
        struct plp_collect c[2];
        uint64_t id;
        for (int k = 0; k < 2; k++) {
            memset(&c[k], 0, sizeof c[k]);
            pthread_mutex_init(&c[k].mu, NULL);
            pthread_cond_init(&c[k].cv, NULL);
        }
        struct engine_request ra = {.prompt = pa, .n_prompt = NA, .max_tokens = 3, .sampling = sampler_default_params(),
                                    .rebalance = rebalance_default_params(), .prompt_logprobs = true,
                                    .cb = plp_event, .user = &c[0]};
        ra.sampling.n_logprobs = 2;
        struct engine_request rb = ra;
        rb.prompt = pb;
        rb.n_prompt = NB;
        rb.user = &c[1];
        rb.task = ENGINE_TASK_SCORE; /* max_tokens ignored: nothing generated */
        ASSERT_OK(engine_submit(e, &ra, &id));
        ASSERT_OK(engine_submit(e, &rb, &id));
        double worst = 0;
        for (int k = 0; k < 2; k++) {
            pthread_mutex_lock(&c[k].mu);
            while (!c[k].done) pthread_cond_wait(&c[k].cv, &c[k].mu);
            pthread_mutex_unlock(&c[k].mu);
            const uint32_t n = k ? NB : NA;
            const int32_t *p = k ? pb : pa;
            const double *ref = k ? ref_b : ref_a;
            const int32_t *arg = k ? arg_b : arg_a;
            ASSERT_EQ(c[k].last.type, ENGINE_EV_DONE);
            ASSERT_EQ(c[k].n_prompt_ev, n);
            ASSERT_EQ(c[k].bad_order, 0);
            ASSERT_EQ(c[k].n_top[0], 0); /* the first token: no logprob */
            ASSERT_EQ(c[k].last.cached_tokens, 0);
            for (uint32_t i = 1; i < n; i++) {
                ASSERT_EQ(c[k].token[i], p[i]);
                ASSERT_EQ(c[k].n_top[i], 2);
                ASSERT_EQ(c[k].top_id[i], arg[i]);
                worst = fmax(worst, fabs(c[k].lp[i] - ref[i]));
            }
        }
        ASSERT_TRUE(worst < 1e-4);
        ASSERT_EQ(c[0].n_tok_ev, 3);
        ASSERT_EQ(c[0].last.completion_tokens, 3);
        ASSERT_EQ(c[1].n_tok_ev, 0);
        ASSERT_EQ(c[1].last.completion_tokens, 0);
        ASSERT_EQ(c[1].last.finish, ENGINE_FINISH_LENGTH);
        assert_pool_idle(e);
    }
    struct engine_metrics mt;
    engine_get_metrics(e, &mt);
    ASSERT_EQ(mt.prefix_hits_total, 0); /* round 1 found the blocks cached and did not take them */
    ASSERT_TRUE(mt.kv_pages_cached > 0);
    model_free(m);
    engine_destroy(e);
}

/* The prefix cache gives its pages back when admission needs them. */
static void test_prefix_eviction(void)
{
    /* room for one full context only: every new prompt evicts the previous one's blocks */
    struct engine *e = start_budget(1, 160 * PAGE_260K, true, 0);
    if (!e) {
        ASSERT_TRUE(e != NULL);
        return;
    }
    int32_t p[40] = {1};
    memcpy(p + 1, golden_260k, 39 * sizeof(int32_t));
    struct collect c;
    for (int k = 0; k < 4; k++) {
        p[1] = 300 + k; /* a different prompt each time */
        collect_init(&c);
        struct engine_request r = greedy(p, 40, 0 /* up to the context: 216 tokens */, &c);
        uint64_t id;
        ASSERT_OK(engine_submit(e, &r, &id));
        wait_done(&c);
        ASSERT_EQ(c.last.type, ENGINE_EV_DONE);
    }
    assert_pool_idle(e);
    engine_destroy(e);
}

/* engine_layer_similarity: the start-up calibration's L x L matrix, whatever plan is configured
 * ("off" here): L = n_layer, diagonal 1, symmetric, in [0, 1], and equal (1e-5) to the matrix
 * calib_auto_plan computes on its own load of the model; NULL and 0 for no engine. */
static void test_layer_similarity(void)
{
    struct engine *e = start(1, 4);
    ASSERT_TRUE(e != NULL);
    uint32_t L = 99;
    const float *sim = engine_layer_similarity(e, &L);
    ASSERT_TRUE(sim != NULL);
    ASSERT_EQ(L, engine_info(e)->n_layer);
    ASSERT_TRUE(engine_layer_similarity(e, NULL) == sim); /* the same buffer for the engine's life */
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct model_load_opts o = {.use_mmap = true};
    struct model *m = NULL;
    ASSERT_OK(model_load(path, &o, &m, msg, sizeof msg));
    float ref[64 * 64];
    ASSERT_TRUE(L <= 64);
    struct share_plan plan;
    ASSERT_OK(calib_auto_plan(m, NULL, 1, CALIB_DEFAULT_THRESHOLD, &plan, ref, msg, sizeof msg));
    for (uint32_t a = 0; a < L; a++) {
        ASSERT_NEAR(sim[a * L + a], 1.0f, 1e-5);
        for (uint32_t b = 0; b < L; b++) {
            ASSERT_NEAR(sim[a * L + b], ref[a * L + b], 1e-5);
            ASSERT_NEAR(sim[a * L + b], sim[b * L + a], 1e-5);
            ASSERT_TRUE(sim[a * L + b] >= -1e-6f && sim[a * L + b] <= 1.0f + 1e-6f);
        }
    }
    model_free(m);
    engine_destroy(e);
    L = 7;
    ASSERT_TRUE(engine_layer_similarity(NULL, &L) == NULL);
    ASSERT_EQ(L, 0);
}

int main(void)
{
    TEST_RUN(test_golden_through_engine);
    TEST_RUN(test_concurrent_plans_equal_alone);
    TEST_RUN(test_q8_0_in_memory_batched_equals_alone);
    TEST_RUN(test_stop_strings);
    TEST_RUN(test_cancel_and_limits);
    TEST_RUN(test_destroy_cancels_queued);
    TEST_RUN(test_queue_token_bound);
    TEST_RUN(test_long_prompt_does_not_starve);
    TEST_RUN(test_kv_budget);
    TEST_RUN(test_capacity_with_sharing);
    TEST_RUN(test_prefix_reuse);
    TEST_RUN(test_prefix_eviction);
    TEST_RUN(test_generated_blocks_reused);
    TEST_RUN(test_token_controls);
    TEST_RUN(test_embeddings);
    TEST_RUN(test_layer_similarity);
    TEST_RUN(test_prompt_logprobs);
    TEST_DONE();
}
