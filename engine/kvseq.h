/*
 * kvseq.h - one sequence's view of the paged KV cache (kvpool.h): its page
 * tables, its reservation, copy-on-write of shared pages, and adopting and
 * exporting prefix blocks (prefix.h).
 *
 * Per layer l the sequence has a V table and a K table of max_blocks entries;
 * entry b holds the page of positions b*block .. b*block+block-1 (KV_NO_PAGE:
 * none). A layer that shares attention under the sequence's plan (share.h)
 * never takes a K page. Pages are taken as positions are written
 * (kv_seq_prepare): from the sequence's reservation when the pool is shared
 * (reserved = true: the engine reserves at admission, so a write can only
 * fail when the reservation is used up), else straight from the pool. A page
 * with more than one reference (a read-only prefix page) is copied before the
 * sequence first writes into it.
 *
 * A block's pages are listed layer by layer: K (computing layers only), then V;
 * kv_seq_block_pages exports that list, kv_seq_adopt_block takes one (adding a
 * reference to each page) as the sequence's next block.
 *
 * A caller-embedded value (init/cleanup). Not thread-safe: one owner (the
 * engine's step thread, or a standalone context's caller). The pool must
 * outlive it.
 */
#ifndef SA_KVSEQ_H
#define SA_KVSEQ_H

#include "share.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_pool;

struct kv_seq {
    struct kv_pool *pool;
    uint32_t n_layer, block, max_blocks, n_blocks;
    bool reserved;         /* pages come from reservations (a shared pool) */
    uint32_t reserve_left; /* pages this sequence may still take (reserved only) */
    uint32_t *kpt, *vpt;   /* [n_layer][max_blocks] page ids */
    void **kptr, **vptr;   /* their addresses (F32 or F16 elements: the caller knows) */
};

/* Tables for max_positions positions in blocks of `block`; holds no page yet. */
int kv_seq_init(struct kv_seq *s, struct kv_pool *pool, uint32_t n_layer, uint32_t max_positions, uint32_t block,
                bool reserved);
void kv_seq_cleanup(struct kv_seq *s); /* releases every page; accepts a zeroed value */

/* Drop every page reference (the sequence then holds no cache). */
void kv_seq_release(struct kv_seq *s);

/* Make positions [pos0, end) writable under plan: pages for new blocks,
 * private copies of shared ones. SA_ERR_NOMEM when the reservation or the
 * pool has no page left (what was taken stays listed and is released with
 * the sequence). */
int kv_seq_prepare(struct kv_seq *s, const struct share_plan *plan, uint32_t pos0, uint32_t end);

void kv_seq_set_reservation(struct kv_seq *s, uint32_t pages);
uint32_t kv_seq_reservation_left(const struct kv_seq *s);

/* Block b's page ids (b < n_blocks) into pages; returns the count. */
uint32_t kv_seq_block_pages(const struct kv_seq *s, uint32_t b, uint32_t *pages);
/* Append a block of pages held elsewhere (a reference on each), listed for plan. */
int kv_seq_adopt_block(struct kv_seq *s, const struct share_plan *plan, const uint32_t *pages);

/* K and V pages held (shared prefix pages included). */
void kv_seq_count_pages(const struct kv_seq *s, uint32_t *k, uint32_t *v);

/* Layer l's page addresses, for attention (attention.h) and for storing rows. */
static inline void *const *kv_seq_k_pages(const struct kv_seq *s, uint32_t l)
{
    return s->kptr + (size_t)l * s->max_blocks;
}
static inline void *const *kv_seq_v_pages(const struct kv_seq *s, uint32_t l)
{
    return s->vptr + (size_t)l * s->max_blocks;
}

#endif
