/*
 * test_kvpool.c - the paged KV pool and the prefix cache's bookkeeping:
 * reservations, reference counts, the consistency check catching broken
 * books, prefix chains keyed by plan, partial matches and LRU eviction.
 */
#include "../test.h"

#include "engine/errors.h"
#include "engine/kvpool.h"
#include "engine/prefix.h"

static void test_reserve_alloc_free(void)
{
    struct kv_pool *p;
    ASSERT_EQ(kv_pool_create(100, 4, false, &p), SA_ERR_INVALID_ARG); /* not a multiple of 64 */
    ASSERT_OK(kv_pool_create(128, 4, true, &p));
    struct kv_pool_stats st;
    ASSERT_TRUE(kv_pool_reserve(p, 3));
    ASSERT_TRUE(!kv_pool_reserve(p, 2)); /* 1 unreserved left */
    uint32_t a = kv_pool_alloc(p, false);  /* the unreserved one */
    ASSERT_NE(a, KV_NO_PAGE);
    ASSERT_EQ(kv_pool_alloc(p, false), KV_NO_PAGE); /* the rest is reserved */
    uint32_t b = kv_pool_alloc(p, true), c = kv_pool_alloc(p, true);
    ASSERT_TRUE(b != KV_NO_PAGE && c != KV_NO_PAGE && b != c && a != b);
    kv_pool_stats(p, &st);
    ASSERT_EQ(st.used, 3);
    ASSERT_EQ(st.reserved, 1);
    ASSERT_OK(kv_pool_check(p));
    /* pages are disjoint and writable */
    float *pa = kv_pool_page(p, a), *pb = kv_pool_page(p, b);
    ASSERT_TRUE(pa + 32 <= pb || pb + 32 <= pa);
    pa[31] = 1.0f;
    pb[0] = 2.0f;
    ASSERT_NEAR(pa[31], 1.0, 0);
    /* a shared page returns to the free list with its last reference */
    kv_pool_ref(p, a);
    ASSERT_EQ(kv_pool_refcount(p, a), 2);
    kv_pool_unref(p, a);
    kv_pool_stats(p, &st);
    ASSERT_EQ(st.used, 3);
    kv_pool_unref(p, a);
    kv_pool_stats(p, &st);
    ASSERT_EQ(st.used, 2);
    kv_pool_unreserve(p, 1);
    kv_pool_unref(p, b);
    kv_pool_unref(p, c);
    kv_pool_stats(p, &st);
    ASSERT_EQ(st.used, 0);
    ASSERT_EQ(st.reserved, 0);
    ASSERT_OK(kv_pool_check(p));
    kv_pool_destroy(p);
}

static void test_prefix_chains(void)
{
    struct kv_pool *p;
    ASSERT_OK(kv_pool_create(64, 16, false, &p));
    struct prefix_cache *pc;
    ASSERT_OK(prefix_create(p, 4, &pc));
    struct share_plan off, on;
    share_plan_init(&off, 4);
    ASSERT_OK(share_plan_parse(&on, "2-3", 4, NULL, 0));
    struct rebalance_params rb = rebalance_default_params();
    uint64_t koff = prefix_config_key(&off, &rb), kon = prefix_config_key(&on, &rb);
    ASSERT_TRUE(koff != kon);
    ASSERT_EQ(prefix_config_key(NULL, &rb), koff);
    rb.on = true;
    ASSERT_TRUE(prefix_config_key(&off, &rb) != koff);
    /* a sequence of two blocks, 2 pages a block */
    const int32_t toks[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint32_t pg[4];
    for (int i = 0; i < 4; i++) pg[i] = kv_pool_alloc(p, false);
    uint32_t e0 = prefix_insert(pc, koff, PREFIX_NONE, toks, pg, 2);
    uint32_t e1 = prefix_insert(pc, koff, e0, toks + 4, pg + 2, 2);
    ASSERT_TRUE(e0 != PREFIX_NONE && e1 != PREFIX_NONE);
    ASSERT_EQ(prefix_insert(pc, koff, PREFIX_NONE, toks, pg, 2), e0); /* already there */
    ASSERT_EQ(kv_pool_refcount(p, pg[0]), 2);
    for (int i = 0; i < 4; i++) kv_pool_unref(p, pg[i]); /* the sequence ends */
    ASSERT_EQ(kv_pool_refcount(p, pg[3]), 1);
    uint32_t chain[4], n;
    ASSERT_EQ(prefix_lookup(pc, koff, toks, 9, chain, &n), 8);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(chain[1], e1);
    ASSERT_EQ(prefix_lookup(pc, koff, toks, 7, chain, &n), 7); /* ends inside block 1 */
    ASSERT_EQ(n, 2);
    const int32_t other[8] = {1, 2, 3, 4, 5, 6, 0, 0};
    ASSERT_EQ(prefix_lookup(pc, koff, other, 8, chain, &n), 6); /* diverges inside block 1 */
    ASSERT_EQ(prefix_lookup(pc, kon, toks, 9, chain, &n), 0); /* other plan */
    ASSERT_EQ(n, 0);
    const int32_t miss[4] = {9, 9, 9, 9};
    ASSERT_EQ(prefix_lookup(pc, koff, miss, 4, chain, &n), 0);
    /* eviction frees leaves first and never a kept entry */
    struct prefix_stats ps;
    prefix_get_stats(pc, &ps);
    ASSERT_EQ(ps.entries, 2);
    ASSERT_EQ(ps.pages_only_cached, 4);
    ASSERT_TRUE(kv_pool_reserve(p, 12));
    ASSERT_TRUE(!prefix_evict(pc, 4, &e1, 1)); /* e1 kept, e0 is not a leaf */
    ASSERT_TRUE(prefix_evict(pc, 4, NULL, 0));
    prefix_get_stats(pc, &ps);
    ASSERT_EQ(ps.entries, 0);
    struct kv_pool_stats st;
    kv_pool_stats(p, &st);
    ASSERT_EQ(st.used, 0);
    kv_pool_unreserve(p, 12);
    ASSERT_OK(kv_pool_check(p));
    prefix_destroy(pc);
    kv_pool_destroy(p);
}

int main(void)
{
    TEST_RUN(test_reserve_alloc_free);
    TEST_RUN(test_prefix_chains);
    TEST_DONE();
}
