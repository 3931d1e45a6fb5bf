/*
 * kvpool.h - the paged KV cache: a fixed arena of equal pages under a byte
 * budget.
 *
 * A page holds `block` consecutive token positions of ONE layer's K or V
 * (block x n_head_kv x head_dim floats). A sequence owns a page table per
 * layer and kind (kvseq.h); a Shared Attention layer takes no K
 * pages at all. Pages are reference-counted: a page is written only by the
 * sequence that allocated it (refcount 1 while it is being filled); read-only
 * prefix pages (prefix.h) may be referenced by several sequences and the
 * prefix cache at once, and return to the free list when the last reference
 * goes.
 *
 * Reservations make admission safe: an admitted request reserves every page
 * it can ever need (prompt + max_tokens) up front, and later allocations draw
 * on that reservation, so a running sequence never fails for lack of cache.
 *
 * The arena is one anonymous mapping. With prefault (the server's pool) it is
 * made resident at creation, so the process's memory is weights + budget
 * from the start and serving never stalls on page faults; without it (a
 * standalone context) untouched pages cost nothing. Not thread-safe: the
 * engine's step thread owns the pool.
 */
#ifndef SA_KVPOOL_H
#define SA_KVPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_NO_PAGE UINT32_MAX

struct kv_pool;

/* n_pages pages of page_bytes each (page_bytes a multiple of 64). */
int kv_pool_create(size_t page_bytes, uint32_t n_pages, bool prefault, struct kv_pool **out);
void kv_pool_destroy(struct kv_pool *p); /* accepts NULL */

/* Set aside n free pages for later kv_pool_alloc(.., true). False (nothing
 * reserved) if fewer than n pages are free and unreserved. */
bool kv_pool_reserve(struct kv_pool *p, uint32_t n);
/* Give back n reserved pages that will not be allocated after all. */
void kv_pool_unreserve(struct kv_pool *p, uint32_t n);

/* A free page with refcount 1, or KV_NO_PAGE. With from_reservation the page
 * comes out of an earlier kv_pool_reserve (and cannot fail while one is
 * left); without, it must be free and unreserved. */
uint32_t kv_pool_alloc(struct kv_pool *p, bool from_reservation);
void kv_pool_ref(struct kv_pool *p, uint32_t page);
void kv_pool_unref(struct kv_pool *p, uint32_t page); /* frees at refcount 0 */
uint32_t kv_pool_refcount(const struct kv_pool *p, uint32_t page);

/* Changes whenever a page is taken, referenced or released: figures derived
 * from the references need recomputing only when it moved. */
uint64_t kv_pool_version(const struct kv_pool *p);

float *kv_pool_page(const struct kv_pool *p, uint32_t page);
size_t kv_pool_page_bytes(const struct kv_pool *p);

struct kv_pool_stats {
    uint32_t total, used, free, reserved; /* used + free == total; reserved <= free */
    uint64_t refs;                        /* references held on all pages */
};
void kv_pool_stats(const struct kv_pool *p, struct kv_pool_stats *out);

/* Consistency check (debug builds and tests): the free list and the
 * refcounts agree, no page is both free and referenced, used + free == total,
 * the reference total matches and reservations fit in the free pages. 0 or SA_ERR_INTERNAL. */
int kv_pool_check(const struct kv_pool *p);

#endif
