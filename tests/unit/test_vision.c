/*
 * test_vision.c - the phiDNN operators against independent naive loops (double
 * accumulation, direct indexing, no im2col, no BLAS), the noise source against
 * the Python generator's first values, and the whole forward pass of the
 * committed model against the golden logits and recreations that
 * tests/tools/phidnn/export.py computed with torch. Run from the repository root.
 *
 * Images come from the Debian package dataset-fashion-mnist (make deps), by the
 * indices stored in tests/fixtures/phidnn-golden.gguf; no image data is committed.
 */
#include "engine/engine.h"
#include "engine/errors.h"
#include "engine/gguf.h"
#include "engine/phidnn.h"
#include "engine/vision_ops.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MODEL_PATH "config/models/phidnn-fmnist.gguf"
#define GOLDEN_PATH "tests/fixtures/phidnn-golden.gguf"
#define TEST_IMAGES "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define OP_TOL 1e-4
#define FWD_TOL 1e-4

static double max_op_delta; /* over every operator test, printed at the end */

static void fill(float *x, size_t n, struct vops_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)vops_rng_uniform(r);
}

static double check_close(const float *a, const double *ref, size_t n, const char *what)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - ref[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    fprintf(stderr, "  %-26s max |delta| = %.3g\n", what, m);
    if (!(m <= OP_TOL)) TEST_FAIL_("%s: max |delta| %.3g > %g", what, m, OP_TOL);
    if (m > max_op_delta) max_op_delta = m;
    return m;
}

/* ---------------------------------------------------------------- operators */

static void conv_case(int cin, int cout, int nb, int h, int w, int stride)
{
    struct vops_rng r;
    vops_rng_seed(&r, (uint64_t)(cin * 1000 + h * 10 + stride));
    const int ho = vops_conv_out(h, stride), wo = vops_conv_out(w, stride);
    float *x = malloc(sizeof(float) * cin * nb * h * w), *wt = malloc(sizeof(float) * cout * cin * 9),
          *b = malloc(sizeof(float) * cout), *col = malloc(sizeof(float) * cin * 9 * nb * ho * wo),
          *y = malloc(sizeof(float) * cout * nb * ho * wo);
    double *ref = malloc(sizeof(double) * cout * nb * ho * wo);
    fill(x, (size_t)cin * nb * h * w, &r, -1, 1);
    fill(wt, (size_t)cout * cin * 9, &r, -0.5f, 0.5f);
    fill(b, (size_t)cout, &r, -0.2f, 0.2f);
    vops_conv3(x, cin, nb, h, w, stride, wt, b, cout, col, y);
    /* direct convolution: out[co][b][oi][oj] = b[co] + sum x[ci][b][oi*s+di-1][oj*s+dj-1] w[co][ci][di][dj] */
    for (int co = 0; co < cout; co++)
        for (int bi = 0; bi < nb; bi++)
            for (int oi = 0; oi < ho; oi++)
                for (int oj = 0; oj < wo; oj++) {
                    double acc = b[co];
                    for (int ci = 0; ci < cin; ci++)
                        for (int di = 0; di < 3; di++)
                            for (int dj = 0; dj < 3; dj++) {
                                const int i = oi * stride + di - 1, j = oj * stride + dj - 1;
                                if (i < 0 || i >= h || j < 0 || j >= w) continue;
                                acc += (double)x[((ci * nb + bi) * h + i) * w + j] * wt[(co * cin + ci) * 9 + di * 3 + dj];
                            }
                    ref[((co * nb + bi) * ho + oi) * wo + oj] = acc;
                }
    char what[64];
    snprintf(what, sizeof what, "conv3 s%d %dx%d c%d->%d b%d", stride, h, w, cin, cout, nb);
    check_close(y, ref, (size_t)cout * nb * ho * wo, what);
    free(x);
    free(wt);
    free(b);
    free(col);
    free(y);
    free(ref);
}

static void test_conv(void)
{
    conv_case(3, 5, 2, 7, 6, 1);
    conv_case(3, 5, 2, 7, 6, 2);
    conv_case(2, 16, 3, 28, 28, 1);
    conv_case(16, 32, 2, 28, 28, 2);
    conv_case(1, 4, 1, 4, 4, 2);
}

static void test_pointwise_and_planes(void)
{
    struct vops_rng r;
    vops_rng_seed(&r, 7);
    enum { P = 6, H = 8, W = 6 };
    float x[P * H * W], y[P * H * W * 4];
    double ref[P * H * W * 4];
    fill(x, P * H * W, &r, -6, 6);
    memcpy(y, x, sizeof x);
    vops_relu(y, P * H * W);
    for (int i = 0; i < P * H * W; i++) ref[i] = x[i] > 0 ? x[i] : 0;
    check_close(y, ref, P * H * W, "relu");
    memcpy(y, x, sizeof x);
    vops_sigmoid(y, P * H * W);
    for (int i = 0; i < P * H * W; i++) ref[i] = 1.0 / (1.0 + exp(-(double)x[i]));
    check_close(y, ref, P * H * W, "sigmoid");
    vops_maxpool2(x, P, H, W, y);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++) {
                double m = -INFINITY;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) m = fmax(m, x[(p * H + 2 * i + a) * W + 2 * j + b]);
                ref[(p * (H / 2) + i) * (W / 2) + j] = m;
            }
    check_close(y, ref, P * H * W / 4, "maxpool2");
    vops_upsample(x, P, H, W, 2, y);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++) ref[(p * 2 * H + i) * 2 * W + j] = x[(p * H + i / 2) * W + j / 2];
    check_close(y, ref, P * H * W * 4, "upsample x2");
    vops_area_down(x, P, H, W, 2, y);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++) {
                double s = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) s += x[(p * H + 2 * i + a) * W + 2 * j + b];
                ref[(p * (H / 2) + i) * (W / 2) + j] = s / 4;
            }
    check_close(y, ref, P * H * W / 4, "area down x2");
    /* softmax rows of 12 */
    memcpy(y, x, sizeof x);
    vops_softmax(y, P * H * W / 12, 12);
    for (int rr = 0; rr < P * H * W / 12; rr++) {
        double s = 0;
        for (int i = 0; i < 12; i++) s += exp((double)x[rr * 12 + i]);
        for (int i = 0; i < 12; i++) ref[rr * 12 + i] = exp((double)x[rr * 12 + i]) / s;
    }
    check_close(y, ref, P * H * W, "softmax");
    /* CBHW -> rows: c=3, nb=2, hw=8 */
    vops_cbhw_to_rows(x, 3, 2, 8, y);
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 8; i++) ref[(b * 3 + c) * 8 + i] = x[(c * 2 + b) * 8 + i];
    check_close(y, ref, 48, "cbhw_to_rows");
    /* grid masks partition the plane */
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            float s = 0;
            for (int k = 0; k < 4; k++) s += vops_grid_mask(k, i, j);
            ASSERT_EQ((int)s, 1);
        }
    ASSERT_EQ((int)vops_grid_mask(0, 0, 0), 1);
    ASSERT_EQ((int)vops_grid_mask(3, 1, 1), 1);
}

static void test_dense(void)
{
    struct vops_rng r;
    vops_rng_seed(&r, 11);
    enum { NB = 5, IN = 37, OUT = 9 };
    float x[NB * IN], w[OUT * IN], b[OUT], y[NB * OUT];
    double ref[NB * OUT];
    fill(x, NB * IN, &r, -1, 1);
    fill(w, OUT * IN, &r, -1, 1);
    fill(b, OUT, &r, -1, 1);
    vops_dense(x, NB, IN, w, b, OUT, y);
    for (int i = 0; i < NB; i++)
        for (int o = 0; o < OUT; o++) {
            double s = b[o];
            for (int k = 0; k < IN; k++) s += (double)x[i * IN + k] * w[o * IN + k];
            ref[i * OUT + o] = s;
        }
    check_close(y, ref, NB * OUT, "dense");
}

/* ---------------------------------------------------------------- golden */

static struct gguf *golden(void)
{
    struct gguf *g = NULL;
    char msg[256] = "";
    int rc = gguf_open_file(GOLDEN_PATH, &g, msg, sizeof msg);
    if (rc) TEST_FAIL_("%s: %s", GOLDEN_PATH, msg);
    return g;
}

static void test_rng_matches_python(void)
{
    struct gguf *g = golden();
    if (!g) return;
    uint32_t seed = 0;
    ASSERT_OK(gguf_get_u32(g, "golden.seed", &seed));
    const void *d;
    uint64_t n = 0;
    ASSERT_OK(gguf_get_arr(g, "golden.rng.u64", GGUF_TYPE_UINT64, &d, &n));
    ASSERT_EQ(n, 8);
    struct vops_rng r;
    vops_rng_seed(&r, seed);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t want;
        memcpy(&want, (const uint8_t *)d + 8 * i, 8);
        const uint64_t got = vops_rng_next(&r);
        if (got != want) TEST_FAIL_("u64 %llu: %llx != python %llx", (unsigned long long)i, (unsigned long long)got,
                                    (unsigned long long)want);
    }
    ASSERT_OK(gguf_get_arr(g, "golden.rng.index4", GGUF_TYPE_UINT32, &d, &n));
    ASSERT_EQ(n, 16);
    vops_rng_seed(&r, seed);
    for (uint64_t i = 0; i < n; i++) ASSERT_EQ(vops_rng_index(&r, 4), gguf_arr_u32(d, i));
    ASSERT_OK(gguf_get_arr(g, "golden.rng.normal", GGUF_TYPE_FLOAT32, &d, &n));
    ASSERT_EQ(n, 8);
    vops_rng_seed(&r, seed);
    for (uint64_t i = 0; i < n; i++) {
        const float want = gguf_arr_f32(d, i), got = vops_rng_normal(&r);
        if (memcmp(&got, &want, sizeof got) != 0) TEST_FAIL_("normal %llu: %.9g != python %.9g", (unsigned long long)i,
                                                             got, want);
    }
    gguf_close(g);
}

/* Test-set images by index, scaled to [0, 1]; NULL (and a failure) without the dataset. */
static float *load_images(const uint32_t *idx, size_t n)
{
    FILE *f = popen("gzip -dc " TEST_IMAGES " 2>/dev/null", "r");
    if (!f) return NULL;
    uint8_t *all = malloc(16 + 10000 * 784);
    const size_t got = all ? fread(all, 1, 16 + 10000 * 784, f) : 0;
    pclose(f);
    if (got != 16 + 10000 * 784) {
        TEST_FAIL_("cannot read %s (make deps installs dataset-fashion-mnist)", TEST_IMAGES);
        free(all);
        return NULL;
    }
    float *x = malloc(sizeof(float) * 784 * n);
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < 784; p++) x[i * 784 + p] = (float)all[16 + (size_t)idx[i] * 784 + p] / 255.0f;
    free(all);
    return x;
}

static double max_delta(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static void test_forward_matches_torch(void)
{
    struct gguf *g = golden();
    struct phidnn *p = NULL;
    char msg[256] = "";
    int rc = phidnn_load(MODEL_PATH, &p, msg, sizeof msg);
    if (rc) TEST_FAIL_("%s: %s", MODEL_PATH, msg);
    if (!g || !p) goto out;
    const struct phidnn_info *in = phidnn_get_info(p);
    ASSERT_EQ(in->n_classes, 10);
    ASSERT_STR_EQ(in->name, "phidnn-fmnist");
    const void *d;
    uint64_t n = 0;
    uint32_t seed = 0;
    ASSERT_OK(gguf_get_arr(g, "golden.images", GGUF_TYPE_UINT32, &d, &n));
    ASSERT_OK(gguf_get_u32(g, "golden.seed", &seed));
    uint32_t idx[16];
    if (n < 1 || n > 16) {
        TEST_FAIL_("golden.images: %llu", (unsigned long long)n);
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) idx[i] = gguf_arr_u32(d, i);
    float *x = load_images(idx, n);
    if (!x) goto out;
    float logits[16 * 10], probs[16 * 10], *rec = malloc(sizeof(float) * 784 * n);
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
        struct phidnn_job job = {.mode = (enum phidnn_mode)m, .seed = seed, .samples = 1, .n_images = (uint32_t)n,
                                 .images = x, .probs = probs, .logits = logits, .recreated = rec};
        ASSERT_OK(phidnn_forward(p, &job));
        char name[64];
        snprintf(name, sizeof name, "golden.%s.logits", phidnn_mode_name((enum phidnn_mode)m));
        const struct gguf_tensor *tl = gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "golden.%s.recreation", phidnn_mode_name((enum phidnn_mode)m));
        const struct gguf_tensor *tr = gguf_find_tensor(g, name);
        ASSERT_TRUE(tl && tl->n_elements == n * 10);
        ASSERT_TRUE(tr && tr->n_elements == n * 784);
        if (!tl || !tr || tl->n_elements != n * 10 || tr->n_elements != n * 784) continue;
        const double dl = max_delta(logits, tl->data, n * 10), dr = max_delta(rec, tr->data, n * 784);
        fprintf(stderr, "  forward %-8s logits max |delta| = %.3g, recreation max |delta| = %.3g\n",
                phidnn_mode_name((enum phidnn_mode)m), dl, dr);
        if (!(dl <= FWD_TOL)) TEST_FAIL_("%s logits: max |delta| %.3g > %g", phidnn_mode_name((enum phidnn_mode)m), dl, FWD_TOL);
        if (!(dr <= FWD_TOL)) TEST_FAIL_("%s recreation: max |delta| %.3g > %g", phidnn_mode_name((enum phidnn_mode)m), dr, FWD_TOL);
        /* probabilities are a distribution */
        for (uint64_t i = 0; i < n; i++) {
            double s = 0;
            for (int c = 0; c < 10; c++) s += probs[i * 10 + c];
            ASSERT_NEAR(s, 1.0, 1e-5);
        }
    }
    /* sr with 3 samples: mean probabilities over three noise draws */
    struct phidnn_job job = {.mode = PHIDNN_MODE_SR, .seed = seed, .samples = 3, .n_images = (uint32_t)n,
                             .images = x, .probs = probs};
    ASSERT_OK(phidnn_forward(p, &job));
    const struct gguf_tensor *tp = gguf_find_tensor(g, "golden.sr.s3.probs");
    ASSERT_TRUE(tp && tp->n_elements == n * 10);
    if (tp && tp->n_elements == n * 10) {
        const double dp = max_delta(probs, tp->data, n * 10);
        fprintf(stderr, "  forward sr samples=3 probs max |delta| = %.3g\n", dp);
        if (!(dp <= FWD_TOL)) TEST_FAIL_("sr s3 probs: max |delta| %.3g", dp);
    }
    /* inpaint with seeded random partitions (x_hat = sum_k M_k . R([x . (1 - M_k), M_k]), M_k drawn) */
    {
        struct phidnn_job rj = {.mode = PHIDNN_MODE_INPAINT, .seed = seed, .samples = 1, .n_images = (uint32_t)n,
                                .images = x, .probs = probs, .logits = logits, .recreated = rec,
                                .random_partition = true};
        ASSERT_OK(phidnn_forward(p, &rj));
        const struct gguf_tensor *tl = gguf_find_tensor(g, "golden.inpaint_random.logits"),
                                 *tr = gguf_find_tensor(g, "golden.inpaint_random.recreation"),
                                 *t2 = gguf_find_tensor(g, "golden.inpaint_random.s2.probs");
        ASSERT_TRUE(tl && tr && t2 && tl->n_elements == n * 10 && tr->n_elements == n * 784 && t2->n_elements == n * 10);
        if (tl && tr && t2 && tl->n_elements == n * 10 && tr->n_elements == n * 784 && t2->n_elements == n * 10) {
            const double dl = max_delta(logits, tl->data, n * 10), dr = max_delta(rec, tr->data, n * 784);
            fprintf(stderr, "  forward inpaint, random partition: logits max |delta| = %.3g, recreation %.3g\n", dl, dr);
            if (!(dl <= FWD_TOL && dr <= FWD_TOL)) TEST_FAIL_("inpaint random: %.3g %.3g", dl, dr);
            rj.samples = 2;
            rj.logits = rj.recreated = NULL;
            ASSERT_OK(phidnn_forward(p, &rj));
            const double dp = max_delta(probs, t2->data, n * 10);
            fprintf(stderr, "  forward inpaint, random partition, samples=2: probs max |delta| = %.3g\n", dp);
            if (!(dp <= FWD_TOL)) TEST_FAIL_("inpaint random s2: %.3g", dp);
        }
    }
    /* another seed gives other noise, hence other probabilities */
    float probs2[16 * 10];
    job.seed = seed + 1;
    job.probs = probs2;
    ASSERT_OK(phidnn_forward(p, &job));
    ASSERT_TRUE(max_delta(probs, probs2, n * 10) > 0);
    free(rec);
    free(x);
out:
    phidnn_free(p);
    gguf_close(g);
}

static void test_forward_args(void)
{
    struct phidnn *p = NULL;
    char msg[256];
    if (phidnn_load(MODEL_PATH, &p, msg, sizeof msg)) {
        TEST_FAIL_("%s", msg);
        return;
    }
    float x[784] = {0}, probs[10];
    struct phidnn_job job = {.mode = PHIDNN_MODE_SR, .seed = 1, .samples = 0, .n_images = 1, .images = x, .probs = probs};
    ASSERT_EQ(phidnn_forward(p, &job), SA_ERR_INVALID_ARG);
    job.samples = PHIDNN_MAX_SAMPLES + 1;
    ASSERT_EQ(phidnn_forward(p, &job), SA_ERR_INVALID_ARG);
    job.samples = 1;
    job.n_images = 0;
    ASSERT_EQ(phidnn_forward(p, &job), SA_ERR_INVALID_ARG);
    job.n_images = 1;
    job.mode = PHIDNN_MODE_COUNT;
    ASSERT_EQ(phidnn_forward(p, &job), SA_ERR_INVALID_ARG);
    /* a batch larger than one chunk gives the same answer per image as one at a time */
    enum { N = PHIDNN_CHUNK + 3 };
    float *xs = malloc(sizeof(float) * 784 * N), *pb = malloc(sizeof(float) * 10 * N);
    struct vops_rng r;
    vops_rng_seed(&r, 5);
    fill(xs, (size_t)784 * N, &r, 0, 1);
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
        if (m == PHIDNN_MODE_SR) continue; /* its noise depends on the position in the stream */
        struct phidnn_job big = {.mode = (enum phidnn_mode)m, .seed = 1, .samples = 2, .n_images = N, .images = xs,
                                 .probs = pb};
        ASSERT_OK(phidnn_forward(p, &big));
        struct phidnn_job one = {.mode = (enum phidnn_mode)m, .seed = 1, .samples = 1, .n_images = 1,
                                 .images = xs + 784 * (N - 1), .probs = probs};
        ASSERT_OK(phidnn_forward(p, &one));
        ASSERT_TRUE(max_delta(probs, pb + 10 * (N - 1), 10) < 1e-5);
    }
    free(xs);
    free(pb);
    phidnn_free(p);
}

/* ---------------------------------------------------------------- the engine's vision queue */

struct vis_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, errors[16];
    float probs[16][PHIDNN_CHUNK * 10];
    double compute_ms;
    int lm_tokens, lm_tokens_at_vis_done; /* under mu */
};
struct lm_wait {
    struct vis_wait *w;
    atomic_bool done;
};

static void on_lm(void *user, const struct engine_event *ev)
{
    struct lm_wait *lw = user;
    pthread_mutex_lock(&lw->w->mu);
    if (ev->type == ENGINE_EV_TOKEN) lw->w->lm_tokens++;
    pthread_mutex_unlock(&lw->w->mu);
    if (ev->type != ENGINE_EV_TOKEN) atomic_store(&lw->done, true);
}
struct vis_slot {
    struct vis_wait *w;
    int i;
};

static void on_vis(void *user, const struct engine_vision_result *res)
{
    struct vis_slot *sl = user;
    struct vis_wait *w = sl->w;
    pthread_mutex_lock(&w->mu);
    w->errors[sl->i] = res->error;
    if (!res->error) memcpy(w->probs[sl->i], res->probs, sizeof(float) * res->n_images * res->n_classes);
    w->compute_ms += res->compute_ms;
    w->lm_tokens_at_vis_done = w->lm_tokens;
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_done(struct vis_wait *w, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&w->mu);
    while (w->done < n)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0) break;
    pthread_mutex_unlock(&w->mu);
}

/* Jobs through engine_vision_submit run on the step thread and give what phidnn_forward gives
 * directly; a full queue is SA_ERR_BUSY (the callback never runs for it); bad arguments are
 * refused at submit. */
static void test_engine_vision_queue(void)
{
    char llm[1024];
    snprintf(llm, sizeof llm, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct engine_config cfg = engine_default_config();
    cfg.model_path = llm;
    cfg.vision_model_path = MODEL_PATH;
    cfg.vision_queue_max = 2;
    cfg.vision_max_images = PHIDNN_CHUNK;
    cfg.share_spans = "off";
    struct engine *e = NULL;
    char msg[512] = "";
    int rc = engine_create(&cfg, &e, msg, sizeof msg);
    if (rc) {
        TEST_FAIL_("engine_create: %s", msg);
        return;
    }
    const struct phidnn_info *in = engine_vision_info(e);
    ASSERT_TRUE(in && in->n_classes == 10);
    struct phidnn *p = NULL;
    ASSERT_OK(phidnn_load(MODEL_PATH, &p, msg, sizeof msg));
    enum { N = PHIDNN_CHUNK };
    float *x = malloc(sizeof(float) * 784 * N), *ref = malloc(sizeof(float) * 10 * N);
    struct vops_rng r;
    vops_rng_seed(&r, 99);
    fill(x, (size_t)784 * N, &r, 0, 1);
    struct vis_wait *w = calloc(1, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    struct vis_slot slots[16];
    w->lm_tokens = 0;
    /* one job, compared with the direct forward pass */
    slots[0] = (struct vis_slot){w, 0};
    struct engine_vision_request vr = {.mode = PHIDNN_MODE_SR, .seed = 77, .samples = 4, .n_images = N, .images = x,
                                       .cb = on_vis, .user = &slots[0]};
    uint64_t id;
    ASSERT_OK(engine_vision_submit(e, &vr, &id));
    wait_done(w, 1);
    ASSERT_EQ(w->done, 1);
    ASSERT_EQ(w->errors[0], 0);
    struct phidnn_job job = {.mode = PHIDNN_MODE_SR, .seed = 77, .samples = 4, .n_images = N, .images = x, .probs = ref};
    ASSERT_OK(phidnn_forward(p, &job));
    ASSERT_TRUE(max_delta(w->probs[0], ref, (size_t)N * 10) == 0.0); /* the same code on the same data */
    /* a burst: at most vision_queue_max in flight, the rest BUSY */
    int accepted = 1, busy = 0;
    for (int i = 1; i < 12; i++) {
        slots[i] = (struct vis_slot){w, i};
        vr.user = &slots[i];
        rc = engine_vision_submit(e, &vr, &id);
        if (rc == 0) accepted++;
        else if (rc == SA_ERR_BUSY) busy++;
        else TEST_FAIL_("submit %d: %d", i, rc);
    }
    fprintf(stderr, "  burst of 11 jobs (%d images x 4 samples) into a queue of 2: %d accepted, %d busy\n", N,
            accepted - 1, busy);
    ASSERT_TRUE(busy > 0);
    wait_done(w, accepted);
    ASSERT_EQ(w->done, accepted);
    for (int i = 0; i < accepted; i++) ASSERT_EQ(w->errors[i], 0);
    fprintf(stderr, "  %d jobs of %d images: %.1f ms compute each on the step thread\n", accepted, N,
            w->compute_ms / accepted);
    /* interleaving: a job of 8 chunks and a completion submitted together; the completion's
     * tokens arrive while the job runs (one chunk between two steps), not after it */
    {
        struct lm_wait lw = {.w = w};
        int32_t *ids = NULL;
        size_t n_ids = 0;
        ASSERT_OK(engine_tokenize(e, "Once upon a time", 16, true, false, &ids, &n_ids));
        struct engine_request lr = {.prompt = ids, .n_prompt = n_ids, .max_tokens = 32, .cb = on_lm, .user = &lw};
        lr.sampling = sampler_default_params();
        lr.sampling.temperature = 0;
        const int before = w->done;
        slots[12] = (struct vis_slot){w, 12};
        struct engine_vision_request big = {.mode = PHIDNN_MODE_SR, .seed = 5, .samples = 8, .n_images = N,
                                            .images = x, .cb = on_vis, .user = &slots[12]};
        ASSERT_OK(engine_vision_submit(e, &big, &id));
        ASSERT_OK(engine_submit(e, &lr, &id));
        wait_done(w, before + 1);
        pthread_mutex_lock(&w->mu);
        const int tokens_before_job = w->lm_tokens_at_vis_done;
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < 3000 && !atomic_load(&lw.done); i++) nanosleep(&(struct timespec){0, 1000000}, NULL);
        ASSERT_TRUE(atomic_load(&lw.done));
        fprintf(stderr, "  a job of %d images x 8 samples (8 chunks) and a 32-token completion: %d tokens arrived "
                        "before the job finished\n", N, tokens_before_job);
        ASSERT_TRUE(tokens_before_job >= 3);
        free(ids);
    }
    /* refused at submit */
    vr.samples = 9;
    ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_RANGE);
    vr.samples = 1;
    vr.n_images = N + 1;
    ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_RANGE);
    vr.n_images = 1;
    x[3] = NAN;
    ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_RANGE);
    x[3] = 1.5f;
    ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_RANGE);
    x[3] = 0.5f;
    vr.mode = PHIDNN_MODE_COUNT;
    ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_INVALID_ARG);
    ASSERT_EQ(w->done, accepted + 1); /* + the interleaving job; no callback for a refused job */
    engine_destroy(e);
    /* an engine without a vision model */
    cfg.vision_model_path = NULL;
    ASSERT_OK(engine_create(&cfg, &e, msg, sizeof msg));
    if (e) {
        ASSERT_TRUE(engine_vision_info(e) == NULL);
        vr.mode = PHIDNN_MODE_OFF;
        ASSERT_EQ(engine_vision_submit(e, &vr, &id), SA_ERR_NOT_FOUND);
        engine_destroy(e);
    }
    /* a bad vision model fails engine_create with the field named */
    cfg.vision_model_path = "tests/fuzz/corpus/gguf/does-not-exist.gguf";
    ASSERT_TRUE(engine_create(&cfg, &e, msg, sizeof msg) != 0);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    free(x);
    free(ref);
    phidnn_free(p);
}

static void test_mode_names(void)
{
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
        const char *s = phidnn_mode_name((enum phidnn_mode)m);
        ASSERT_EQ(phidnn_mode_parse(s, strlen(s)), m);
    }
    ASSERT_EQ(phidnn_mode_parse("srx", 3), -1);
    ASSERT_EQ(phidnn_mode_parse("s", 1), -1);
    ASSERT_TRUE(phidnn_mode_name(PHIDNN_MODE_COUNT) == NULL);
}

int main(void)
{
    TEST_RUN(test_conv);
    TEST_RUN(test_pointwise_and_planes);
    TEST_RUN(test_dense);
    TEST_RUN(test_rng_matches_python);
    TEST_RUN(test_forward_matches_torch);
    TEST_RUN(test_forward_args);
    TEST_RUN(test_mode_names);
    TEST_RUN(test_engine_vision_queue);
    fprintf(stderr, "operator parity: max |delta| over all operator tests = %.3g (tolerance %g)\n", max_op_delta, OP_TOL);
    TEST_DONE();
}
