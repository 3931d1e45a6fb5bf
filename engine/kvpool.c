#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "kvpool.h"

#include "errors.h"

#include <stdlib.h>
#include <sys/mman.h>

struct kv_pool {
    char *arena;
    size_t page_bytes, arena_bytes;
    uint32_t n_pages, n_free, n_reserved;
    uint64_t n_refs;  /* sum of refs[] */
    uint64_t version; /* bumped by every change of a reference */
    uint32_t *free_list; /* stack of free page ids */
    uint32_t *refs;      /* [n_pages] 0 = free */
};

int kv_pool_create(size_t page_bytes, uint32_t n_pages, bool prefault, struct kv_pool **out)
{
    *out = NULL;
    if (!page_bytes || page_bytes % 64 || !n_pages || (size_t)n_pages > SIZE_MAX / page_bytes) return SA_ERR_INVALID_ARG;
    struct kv_pool *p = calloc(1, sizeof *p);
    if (!p) return SA_ERR_NOMEM;
    p->page_bytes = page_bytes;
    p->n_pages = n_pages;
    p->arena_bytes = page_bytes * n_pages;
    p->arena = mmap(NULL, p->arena_bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | (prefault ? MAP_POPULATE : MAP_NORESERVE), -1, 0);
    if (p->arena == MAP_FAILED) p->arena = NULL;
    p->free_list = malloc((size_t)n_pages * sizeof *p->free_list);
    p->refs = calloc(n_pages, sizeof *p->refs);
    if (!p->arena || !p->free_list || !p->refs) {
        kv_pool_destroy(p);
        return SA_ERR_NOMEM;
    }
    /* low ids on top, so a small workload touches the start of the arena */
    for (uint32_t i = 0; i < n_pages; i++) p->free_list[i] = n_pages - 1 - i;
    p->n_free = n_pages;
    *out = p;
    return 0;
}

void kv_pool_destroy(struct kv_pool *p)
{
    if (!p) return;
    if (p->arena) munmap(p->arena, p->arena_bytes);
    free(p->free_list);
    free(p->refs);
    free(p);
}

bool kv_pool_reserve(struct kv_pool *p, uint32_t n)
{
    if (n > p->n_free - p->n_reserved) return false;
    p->n_reserved += n;
    return true;
}

void kv_pool_unreserve(struct kv_pool *p, uint32_t n)
{
    p->n_reserved -= n <= p->n_reserved ? n : p->n_reserved;
}

uint32_t kv_pool_alloc(struct kv_pool *p, bool from_reservation)
{
    if (from_reservation) {
        if (!p->n_reserved) return KV_NO_PAGE;
        p->n_reserved--;
    } else if (p->n_free <= p->n_reserved) {
        return KV_NO_PAGE;
    }
    uint32_t id = p->free_list[--p->n_free];
    p->refs[id] = 1;
    p->n_refs++;
    p->version++;
    return id;
}

void kv_pool_ref(struct kv_pool *p, uint32_t page)
{
    p->refs[page]++;
    p->n_refs++;
    p->version++;
}

void kv_pool_unref(struct kv_pool *p, uint32_t page)
{
    if (!p->refs[page]) return;
    p->n_refs--;
    p->version++;
    if (--p->refs[page] == 0) p->free_list[p->n_free++] = page;
}

uint64_t kv_pool_version(const struct kv_pool *p) { return p->version; }

uint32_t kv_pool_refcount(const struct kv_pool *p, uint32_t page) { return p->refs[page]; }

float *kv_pool_page(const struct kv_pool *p, uint32_t page)
{
    return (float *)(p->arena + (size_t)page * p->page_bytes);
}

size_t kv_pool_page_bytes(const struct kv_pool *p) { return p->page_bytes; }

void kv_pool_stats(const struct kv_pool *p, struct kv_pool_stats *out)
{
    out->total = p->n_pages;
    out->free = p->n_free;
    out->used = p->n_pages - p->n_free;
    out->reserved = p->n_reserved;
    out->refs = p->n_refs;
}

int kv_pool_check(const struct kv_pool *p)
{
    if (p->n_free > p->n_pages || p->n_reserved > p->n_free) return SA_ERR_INTERNAL;
    uint32_t referenced = 0;
    uint64_t refs = 0;
    for (uint32_t i = 0; i < p->n_pages; i++) {
        referenced += p->refs[i] != 0;
        refs += p->refs[i];
    }
    if (referenced + p->n_free != p->n_pages || refs != p->n_refs) return SA_ERR_INTERNAL;
    uint8_t *seen = calloc(p->n_pages, 1);
    if (!seen) return SA_ERR_NOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < p->n_free && !rc; i++) {
        uint32_t id = p->free_list[i];
        if (id >= p->n_pages || p->refs[id] || seen[id]) rc = SA_ERR_INTERNAL; /* listed twice or in use */
        else seen[id] = 1;
    }
    free(seen);
    return rc;
}
