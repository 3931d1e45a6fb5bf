#include "kvseq.h"

#include "errors.h"
#include "kvpool.h"

#include <stdlib.h>
#include <string.h>

int kv_seq_init(struct kv_seq *s, struct kv_pool *pool, uint32_t n_layer, uint32_t max_positions, uint32_t block,
                bool reserved)
{
    memset(s, 0, sizeof *s);
    if (!pool || !n_layer || !block) return SA_ERR_INVALID_ARG;
    s->pool = pool;
    s->n_layer = n_layer;
    s->block = block;
    s->max_blocks = (max_positions + block - 1) / block;
    s->reserved = reserved;
    size_t n = (size_t)n_layer * s->max_blocks;
    s->kpt = malloc(n * sizeof *s->kpt);
    s->vpt = malloc(n * sizeof *s->vpt);
    s->kptr = calloc(n, sizeof *s->kptr);
    s->vptr = calloc(n, sizeof *s->vptr);
    if (!s->kpt || !s->vpt || !s->kptr || !s->vptr) {
        kv_seq_cleanup(s);
        return SA_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) s->kpt[i] = s->vpt[i] = KV_NO_PAGE;
    return 0;
}

void kv_seq_cleanup(struct kv_seq *s)
{
    if (s->kpt && s->vpt) kv_seq_release(s);
    free(s->kpt);
    free(s->vpt);
    free(s->kptr);
    free(s->vptr);
    memset(s, 0, sizeof *s);
}

void kv_seq_release(struct kv_seq *s)
{
    for (uint32_t l = 0; l < s->n_layer; l++)
        for (uint32_t b = 0; b < s->n_blocks; b++) {
            size_t i = (size_t)l * s->max_blocks + b;
            if (s->kpt[i] != KV_NO_PAGE) kv_pool_unref(s->pool, s->kpt[i]);
            if (s->vpt[i] != KV_NO_PAGE) kv_pool_unref(s->pool, s->vpt[i]);
            s->kpt[i] = s->vpt[i] = KV_NO_PAGE;
            s->kptr[i] = s->vptr[i] = NULL;
        }
    s->n_blocks = 0;
}

void kv_seq_set_reservation(struct kv_seq *s, uint32_t pages) { s->reserve_left = pages; }
uint32_t kv_seq_reservation_left(const struct kv_seq *s) { return s->reserve_left; }

/* A fresh page for table entry i: from this sequence's reservation when the pool is shared. */
static int take_page(struct kv_seq *s, uint32_t *pt, void **ptr, size_t i)
{
    if (s->reserved && !s->reserve_left) return SA_ERR_NOMEM;
    uint32_t id = kv_pool_alloc(s->pool, s->reserved);
    if (id == KV_NO_PAGE) return SA_ERR_NOMEM;
    if (s->reserved) s->reserve_left--;
    pt[i] = id;
    ptr[i] = kv_pool_page(s->pool, id);
    return 0;
}

/* Before a write into table entry i: a page shared with others is copied first. */
static int own_page(struct kv_seq *s, uint32_t *pt, void **ptr, size_t i)
{
    if (pt[i] == KV_NO_PAGE || kv_pool_refcount(s->pool, pt[i]) == 1) return 0;
    uint32_t old = pt[i];
    int rc = take_page(s, pt, ptr, i);
    if (rc) return rc;
    memcpy(ptr[i], kv_pool_page(s->pool, old), kv_pool_page_bytes(s->pool));
    kv_pool_unref(s->pool, old);
    return 0;
}

int kv_seq_prepare(struct kv_seq *s, const struct share_plan *plan, uint32_t pos0, uint32_t end)
{
    if (end > s->max_blocks * s->block) return SA_ERR_CONTEXT_FULL;
    for (uint32_t b = pos0 / s->block; b < (end + s->block - 1) / s->block; b++) {
        bool fresh = b >= s->n_blocks;
        if (fresh) s->n_blocks = b + 1; /* its entries stay KV_NO_PAGE until taken: a failure releases cleanly */
        int (*get)(struct kv_seq *, uint32_t *, void **, size_t) = fresh ? take_page : own_page;
        for (uint32_t l = 0; l < s->n_layer; l++) {
            size_t i = (size_t)l * s->max_blocks + b;
            int rc = get(s, s->vpt, s->vptr, i);
            if (!rc && !share_plan_is_sharing(plan, l)) rc = get(s, s->kpt, s->kptr, i);
            if (rc) return rc;
        }
    }
    return 0;
}

uint32_t kv_seq_block_pages(const struct kv_seq *s, uint32_t b, uint32_t *pages)
{
    uint32_t n = 0;
    if (b >= s->n_blocks) return 0;
    for (uint32_t l = 0; l < s->n_layer; l++) {
        size_t i = (size_t)l * s->max_blocks + b;
        if (s->kpt[i] != KV_NO_PAGE) pages[n++] = s->kpt[i];
        pages[n++] = s->vpt[i];
    }
    return n;
}

int kv_seq_adopt_block(struct kv_seq *s, const struct share_plan *plan, const uint32_t *pages)
{
    if (s->n_blocks >= s->max_blocks) return SA_ERR_CONTEXT_FULL;
    uint32_t b = s->n_blocks, n = 0;
    for (uint32_t l = 0; l < s->n_layer; l++) {
        size_t i = (size_t)l * s->max_blocks + b;
        if (!share_plan_is_sharing(plan, l)) {
            s->kpt[i] = pages[n++];
            s->kptr[i] = kv_pool_page(s->pool, s->kpt[i]);
            kv_pool_ref(s->pool, s->kpt[i]);
        }
        s->vpt[i] = pages[n++];
        s->vptr[i] = kv_pool_page(s->pool, s->vpt[i]);
        kv_pool_ref(s->pool, s->vpt[i]);
    }
    s->n_blocks = b + 1;
    return 0;
}

void kv_seq_count_pages(const struct kv_seq *s, uint32_t *k, uint32_t *v)
{
    *k = *v = 0;
    for (uint32_t l = 0; l < s->n_layer; l++)
        for (uint32_t b = 0; b < s->n_blocks; b++) {
            size_t i = (size_t)l * s->max_blocks + b;
            *k += s->kpt[i] != KV_NO_PAGE;
            *v += s->vpt[i] != KV_NO_PAGE;
        }
}
