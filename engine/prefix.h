/*
 * prefix.h - reuse of cached prompt prefixes across requests.
 *
 * When a sequence ends, the full blocks of what it computed (block = the KV
 * page size in tokens), its prompt and then the tokens it generated, are kept
 * as a chain of entries (so the next turn of a chat, which repeats the answer
 * after the earlier messages, reuses it): entry b holds the pages of
 * block b (K of the computing layers, V of every layer, in the order of
 * tf_block_pages) and points to the entry of block b-1. Each entry holds one
 * reference on each of its pages (kvpool.h), so the pages outlive the
 * sequence; a later request that starts with the same tokens adopts them
 * read-only instead of recomputing (the transformer copies a shared page
 * before writing into it, which happens only in the block where the new
 * prompt diverges or ends).
 *
 * Entries are keyed by the sequence's attention configuration as well as its
 * tokens: a prefix cached with sharing on has no K for the sharing layers and
 * different V (the residual stream differs), and the re-balancer changes
 * every layer after the first, so a prefix is only ever reused under the same
 * plan and re-balancer settings.
 *
 * Memory: cached pages count as used pool pages. Admission evicts least
 * recently used entries (leaves first, so a chain is shortened from its end)
 * when it needs their pages. Owned by the engine's step thread.
 */
#ifndef SA_PREFIX_H
#define SA_PREFIX_H

#include "rebalance.h"
#include "share.h"

#include <stdbool.h>
#include <stdint.h>

struct kv_pool;
struct prefix_cache;

#define PREFIX_NONE UINT32_MAX

int prefix_create(struct kv_pool *pool, uint32_t block, struct prefix_cache **out);
void prefix_destroy(struct prefix_cache *pc); /* drops every entry's references; accepts NULL */

/* The key of an attention configuration (plan NULL or empty = no sharing). */
uint64_t prefix_config_key(const struct share_plan *plan, const struct rebalance_params *rb);

/* Longest cached prefix of tokens[0..limit): the chain of entries that match
 * block by block (ids in chain[0..*n_chain)), of which the last may match
 * only its first tokens (a partial block, when the prompt diverges or ends
 * inside it). chain must hold limit / block + 1 ids. Returns the tokens
 * matched (0: none) and marks the chain as recently used. */
uint32_t prefix_lookup(struct prefix_cache *pc, uint64_t key, const int32_t *tokens, uint32_t limit,
                       uint32_t *chain, uint32_t *n_chain);
/* The pages of entry id (n_pages of them). */
const uint32_t *prefix_pages(const struct prefix_cache *pc, uint32_t id, uint32_t *n_pages);

/* Record block b of a sequence (tokens[0..block), its n_pages pages) after
 * the entry `parent` (PREFIX_NONE for block 0). Takes a reference on each
 * page if the block is new; returns the block's entry id (new or existing),
 * or PREFIX_NONE if out of memory. */
uint32_t prefix_insert(struct prefix_cache *pc, uint64_t key, uint32_t parent, const int32_t *tokens,
                       const uint32_t *pages, uint32_t n_pages);

/* Evict least recently used leaf entries, never those in keep[0..n_keep),
 * until the pool has `want` free unreserved pages or nothing is left to
 * evict. Returns true if the pool then has them. */
bool prefix_evict(struct prefix_cache *pc, uint32_t want, const uint32_t *keep, uint32_t n_keep);

struct prefix_stats {
    uint32_t entries;
    uint64_t pages;        /* page references the entries hold */
    uint64_t pages_only_cached; /* of which pages no sequence uses (freed on eviction) */
};
void prefix_get_stats(const struct prefix_cache *pc, struct prefix_stats *out);

#endif
