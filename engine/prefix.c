#include "prefix.h"

#include "kvpool.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    bool live;
    uint64_t key, hash; /* hash of (key, parent, tokens) for a cheap first comparison */
    uint32_t parent, n_children, n_pages;
    uint64_t last_use;
    int32_t *tokens;    /* [block] */
    uint32_t *pages;    /* [n_pages] */
};

struct prefix_cache {
    struct kv_pool *pool;
    uint32_t block;
    struct entry *e;
    uint32_t n, cap;    /* slots used (live or not) / allocated */
    uint64_t clock;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t entry_hash(uint64_t key, uint32_t parent, const int32_t *tokens, uint32_t block)
{
    uint64_t h = fnv(14695981039346656037ull, &key, sizeof key);
    h = fnv(h, &parent, sizeof parent);
    return fnv(h, tokens, (size_t)block * sizeof *tokens);
}

uint64_t prefix_config_key(const struct share_plan *plan, const struct rebalance_params *rb)
{
    uint64_t h = 14695981039346656037ull;
    uint32_t n = plan ? plan->n_spans : 0;
    h = fnv(h, &n, sizeof n);
    for (uint32_t i = 0; i < n; i++) {
        uint16_t se[2] = {plan->spans[i].a, plan->spans[i].b};
        h = fnv(h, se, sizeof se);
    }
    uint8_t on = rb && rb->on;
    h = fnv(h, &on, 1);
    if (on) {
        uint8_t renorm = rb->renormalize;
        h = fnv(h, &rb->alpha, sizeof rb->alpha);
        h = fnv(h, &rb->tau, sizeof rb->tau);
        h = fnv(h, &renorm, 1);
    }
    return h;
}

int prefix_create(struct kv_pool *pool, uint32_t block, struct prefix_cache **out)
{
    struct prefix_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return -1;
    pc->pool = pool;
    pc->block = block;
    *out = pc;
    return 0;
}

static void drop(struct prefix_cache *pc, uint32_t id)
{
    struct entry *en = &pc->e[id];
    for (uint32_t i = 0; i < en->n_pages; i++) kv_pool_unref(pc->pool, en->pages[i]);
    if (en->parent != PREFIX_NONE) pc->e[en->parent].n_children--;
    free(en->tokens);
    free(en->pages);
    memset(en, 0, sizeof *en);
}

void prefix_destroy(struct prefix_cache *pc)
{
    if (!pc) return;
    for (uint32_t i = 0; i < pc->n; i++)
        if (pc->e[i].live) drop(pc, i);
    free(pc->e);
    free(pc);
}

static uint32_t find(const struct prefix_cache *pc, uint64_t key, uint32_t parent, const int32_t *tokens)
{
    uint64_t h = entry_hash(key, parent, tokens, pc->block);
    for (uint32_t i = 0; i < pc->n; i++) {
        const struct entry *en = &pc->e[i];
        if (en->live && en->hash == h && en->key == key && en->parent == parent &&
            !memcmp(en->tokens, tokens, pc->block * sizeof *tokens))
            return i;
    }
    return PREFIX_NONE;
}

uint32_t prefix_lookup(struct prefix_cache *pc, uint64_t key, const int32_t *tokens, uint32_t limit,
                       uint32_t *chain, uint32_t *n_chain)
{
    const uint32_t B = pc->block;
    uint32_t parent = PREFIX_NONE, n = 0, matched = 0;
    while (matched + B <= limit) {
        uint32_t id = find(pc, key, parent, tokens + matched);
        if (id == PREFIX_NONE) break;
        chain[n++] = parent = id;
        matched += B;
    }
    /* a partial block: the child of the chain's end sharing the most leading tokens */
    uint32_t best = PREFIX_NONE, best_len = 0, room = limit - matched < B ? limit - matched : B;
    for (uint32_t i = 0; i < pc->n && room; i++) {
        const struct entry *en = &pc->e[i];
        if (!en->live || en->key != key || en->parent != parent) continue;
        uint32_t k = 0;
        while (k < room && en->tokens[k] == tokens[matched + k]) k++;
        if (k > best_len) {
            best_len = k;
            best = i;
        }
    }
    if (best != PREFIX_NONE) {
        chain[n++] = best;
        matched += best_len;
    }
    pc->clock++;
    for (uint32_t i = 0; i < n; i++) pc->e[chain[i]].last_use = pc->clock;
    *n_chain = n;
    return matched;
}

const uint32_t *prefix_pages(const struct prefix_cache *pc, uint32_t id, uint32_t *n_pages)
{
    *n_pages = pc->e[id].n_pages;
    return pc->e[id].pages;
}

uint32_t prefix_insert(struct prefix_cache *pc, uint64_t key, uint32_t parent, const int32_t *tokens,
                       const uint32_t *pages, uint32_t n_pages)
{
    uint32_t id = find(pc, key, parent, tokens);
    pc->clock++;
    if (id != PREFIX_NONE) {
        pc->e[id].last_use = pc->clock;
        return id;
    }
    for (id = 0; id < pc->n && pc->e[id].live; id++) {}
    if (id == pc->n) {
        if (pc->n == pc->cap) {
            uint32_t cap = pc->cap ? pc->cap * 2 : 64;
            struct entry *e = realloc(pc->e, cap * sizeof *e);
            if (!e) return PREFIX_NONE;
            memset(e + pc->cap, 0, (cap - pc->cap) * sizeof *e);
            pc->e = e;
            pc->cap = cap;
        }
        pc->n++;
    }
    struct entry *en = &pc->e[id];
    en->tokens = malloc(pc->block * sizeof *en->tokens);
    en->pages = malloc(n_pages * sizeof *en->pages);
    if (!en->tokens || !en->pages) {
        free(en->tokens);
        free(en->pages);
        en->tokens = NULL;
        en->pages = NULL;
        return PREFIX_NONE;
    }
    memcpy(en->tokens, tokens, pc->block * sizeof *tokens);
    memcpy(en->pages, pages, n_pages * sizeof *pages);
    for (uint32_t i = 0; i < n_pages; i++) kv_pool_ref(pc->pool, pages[i]);
    en->n_pages = n_pages;
    en->key = key;
    en->parent = parent;
    en->hash = entry_hash(key, parent, tokens, pc->block);
    en->n_children = 0;
    en->last_use = pc->clock;
    en->live = true;
    if (parent != PREFIX_NONE) pc->e[parent].n_children++;
    return id;
}

static bool has_room(const struct prefix_cache *pc, uint32_t want)
{
    struct kv_pool_stats st;
    kv_pool_stats(pc->pool, &st);
    return st.free - st.reserved >= want;
}

bool prefix_evict(struct prefix_cache *pc, uint32_t want, const uint32_t *keep, uint32_t n_keep)
{
    while (!has_room(pc, want)) {
        uint32_t victim = PREFIX_NONE;
        for (uint32_t i = 0; i < pc->n; i++) {
            const struct entry *en = &pc->e[i];
            if (!en->live || en->n_children) continue;
            bool kept = false;
            for (uint32_t k = 0; k < n_keep && !kept; k++) kept = keep[k] == i;
            if (!kept && (victim == PREFIX_NONE || en->last_use < pc->e[victim].last_use)) victim = i;
        }
        if (victim == PREFIX_NONE) return false;
        drop(pc, victim);
    }
    return true;
}

void prefix_get_stats(const struct prefix_cache *pc, struct prefix_stats *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < pc->n; i++) {
        const struct entry *en = &pc->e[i];
        if (!en->live) continue;
        out->entries++;
        out->pages += en->n_pages;
        for (uint32_t k = 0; k < en->n_pages; k++) out->pages_only_cached += kv_pool_refcount(pc->pool, en->pages[k]) == 1;
    }
}
