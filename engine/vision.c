/* vision.c - the phiDNN job queue run by the engine's step thread; see vision.h. */
#include "vision.h"

#include "errors.h"
#include "log.h"
#include "phidnn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct vjob {
    struct vjob *next;
    uint64_t id;
    struct phidnn_job job;
    float *images, *probs, *recreated, *corrupted; /* owned */
    void (*cb)(void *user, const struct engine_vision_result *res);
    void *user;
    double t_submit, compute_ms;
};

struct vision {
    struct phidnn *model;
    uint32_t queue_max, max_images;
    void (*wake)(void *);
    void *wake_ctx;
    pthread_mutex_t mu;
    struct vjob *head, *tail; /* under mu */
    uint64_t next_id;         /* under mu */
    atomic_uint depth;        /* jobs queued + the one running */
    /* step thread only: the job being computed, one chunk per vision_run_one */
    struct vjob *cur;
    struct phidnn_run *run;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void vjob_free(struct vjob *j)
{
    if (!j) return;
    free(j->images);
    free(j->probs);
    free(j->recreated);
    free(j->corrupted);
    free(j);
}

int vision_create(const char *path, uint32_t queue_max, uint32_t max_images, void (*wake)(void *), void *wake_ctx,
                  struct vision **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct vision *v = calloc(1, sizeof *v);
    if (!v) return SA_ERR_NOMEM;
    int rc = phidnn_load(path, &v->model, msg, msg_len);
    if (rc) {
        free(v);
        return rc;
    }
    v->queue_max = queue_max ? queue_max : 1;
    v->max_images = max_images ? max_images : 1;
    v->wake = wake;
    v->wake_ctx = wake_ctx;
    v->next_id = 1;
    pthread_mutex_init(&v->mu, NULL);
    atomic_init(&v->depth, 0);
    *out = v;
    return 0;
}

void vision_destroy(struct vision *v)
{
    if (!v) return;
    phidnn_run_end(v->run);
    pthread_mutex_lock(&v->mu);
    struct vjob *j = v->head;
    v->head = v->tail = NULL;
    if (v->cur) { /* interrupted mid-job: cancelled like the queued ones */
        v->cur->next = j;
        j = v->cur;
        v->cur = NULL;
    }
    pthread_mutex_unlock(&v->mu);
    while (j) {
        struct vjob *n = j->next;
        struct engine_vision_result res = {.id = j->id, .error = SA_ERR_CANCELLED};
        j->cb(j->user, &res);
        vjob_free(j);
        j = n;
    }
    pthread_mutex_destroy(&v->mu);
    phidnn_free(v->model);
    free(v);
}

const struct phidnn_info *vision_info(const struct vision *v) { return v ? phidnn_get_info(v->model) : NULL; }

bool vision_pending(struct vision *v) { return v && atomic_load(&v->depth) > 0; }
uint32_t vision_queue_depth(struct vision *v) { return v ? atomic_load(&v->depth) : 0; }

int vision_submit(struct vision *v, const struct engine_vision_request *req, uint64_t *id)
{
    if (!v) return SA_ERR_NOT_FOUND;
    const struct phidnn_info *in = phidnn_get_info(v->model);
    if (!req || !req->cb || !req->images) return SA_ERR_INVALID_ARG;
    if ((unsigned)req->mode >= PHIDNN_MODE_COUNT || !in->has_mode[req->mode]) return SA_ERR_INVALID_ARG;
    if (req->samples < 1 || req->samples > PHIDNN_MAX_SAMPLES) return SA_ERR_RANGE;
    if (req->n_images < 1 || req->n_images > v->max_images) return SA_ERR_RANGE;
    const size_t chw = (size_t)in->channels * in->height * in->width, n = req->n_images;
    for (size_t i = 0; i < n * chw; i++)
        if (!(req->images[i] >= 0.0f && req->images[i] <= 1.0f)) return SA_ERR_RANGE;
    if (atomic_load(&v->depth) >= v->queue_max) return SA_ERR_BUSY;
    struct vjob *j = calloc(1, sizeof *j);
    if (!j) return SA_ERR_NOMEM;
    j->images = malloc(sizeof(float) * n * chw);
    j->probs = malloc(sizeof(float) * n * in->n_classes);
    if (req->want_recreation) {
        j->recreated = malloc(sizeof(float) * n * chw);
        j->corrupted = malloc(sizeof(float) * n * chw);
    }
    if (!j->images || !j->probs || (req->want_recreation && (!j->recreated || !j->corrupted))) {
        vjob_free(j);
        return SA_ERR_NOMEM;
    }
    memcpy(j->images, req->images, sizeof(float) * n * chw);
    j->job = (struct phidnn_job){.mode = req->mode, .seed = req->seed, .samples = req->samples,
                                 .n_images = req->n_images, .images = j->images, .probs = j->probs,
                                 .recreated = j->recreated, .corrupted = j->corrupted,
                                 .random_partition = req->random_partition};
    j->cb = req->cb;
    j->user = req->user;
    j->t_submit = now_ms();
    pthread_mutex_lock(&v->mu);
    if (atomic_load(&v->depth) >= v->queue_max) { /* re-checked under the lock */
        pthread_mutex_unlock(&v->mu);
        vjob_free(j);
        return SA_ERR_BUSY;
    }
    j->id = v->next_id++;
    if (v->tail)
        v->tail->next = j;
    else
        v->head = j;
    v->tail = j;
    atomic_fetch_add(&v->depth, 1);
    pthread_mutex_unlock(&v->mu);
    if (id) *id = j->id;
    if (v->wake) v->wake(v->wake_ctx);
    return 0;
}

static void finish_job(struct vision *v, struct vjob *j, int rc)
{
    if (rc) SA_LOGE("vision job %llu failed: %s", (unsigned long long)j->id, sa_err_str(rc));
    const struct phidnn_info *in = phidnn_get_info(v->model);
    struct engine_vision_result res = {.id = j->id, .error = rc, .n_images = j->job.n_images,
                                       .n_classes = in->n_classes, .probs = rc ? NULL : j->probs,
                                       .recreated = rc ? NULL : j->recreated, .corrupted = rc ? NULL : j->corrupted,
                                       .queued_ms = now_ms() - j->t_submit - j->compute_ms,
                                       .compute_ms = j->compute_ms};
    atomic_fetch_sub(&v->depth, 1); /* before the callback: a client may resubmit from it */
    j->cb(j->user, &res);
    vjob_free(j);
}

void vision_run_one(struct vision *v)
{
    if (!v) return;
    if (!v->cur) {
        pthread_mutex_lock(&v->mu);
        struct vjob *j = v->head;
        if (j) {
            v->head = j->next;
            if (!v->head) v->tail = NULL;
            v->cur = j;
        }
        pthread_mutex_unlock(&v->mu);
        if (!j) return;
        const int rc = phidnn_run_begin(v->model, &j->job, &v->run);
        if (rc) {
            v->cur = NULL;
            finish_job(v, j, rc);
            return;
        }
    }
    /* one chunk (PHIDNN_CHUNK images through R and C) per call: the decoders wait at most that */
    const double t0 = now_ms();
    const bool done = phidnn_run_step(v->run);
    v->cur->compute_ms += now_ms() - t0;
    if (!done) return;
    struct vjob *j = v->cur;
    phidnn_run_end(v->run);
    v->run = NULL;
    v->cur = NULL;
    finish_job(v, j, 0);
}
