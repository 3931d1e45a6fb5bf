/*
 * test_gguf.c - the GGUF reader against hand-crafted in-memory files
 * (RELIABILITY.md A1-A6) and the real files in the shared directory.
 *
 * Every crafted file is copied into a malloc'd buffer of exactly its size
 * before gguf_open_memory(), so an ASan build catches any read past the end.
 */
#include "engine/errors.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "tests/test.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- writer */

struct wb {
    uint8_t *p;
    size_t len, cap;
};

static void wb_bytes(struct wb *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort(); /* test harness only */
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void wb_u8(struct wb *b, uint8_t v) { wb_bytes(b, &v, 1); }
static void wb_u32(struct wb *b, uint32_t v) { wb_bytes(b, &v, 4); }
static void wb_u64(struct wb *b, uint64_t v) { wb_bytes(b, &v, 8); }
static void wb_f32(struct wb *b, float v) { wb_bytes(b, &v, 4); }
static void wb_str(struct wb *b, const char *s)
{
    wb_u64(b, strlen(s));
    wb_bytes(b, s, strlen(s));
}
static void wb_free(struct wb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void wb_header(struct wb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    wb_bytes(b, "GGUF", 4);
    wb_u32(b, version);
    wb_u64(b, n_tensors);
    wb_u64(b, n_kv);
}
static void kv_head(struct wb *b, const char *key, uint32_t type)
{
    wb_str(b, key);
    wb_u32(b, type);
}
static void kv_u32(struct wb *b, const char *key, uint32_t v)
{
    kv_head(b, key, GGUF_TYPE_UINT32);
    wb_u32(b, v);
}
static void kv_i32(struct wb *b, const char *key, int32_t v)
{
    kv_head(b, key, GGUF_TYPE_INT32);
    wb_bytes(b, &v, 4);
}
static void kv_str(struct wb *b, const char *key, const char *v)
{
    kv_head(b, key, GGUF_TYPE_STRING);
    wb_str(b, v);
}
static void kv_arr_head(struct wb *b, const char *key, uint32_t elem_type, uint64_t n)
{
    kv_head(b, key, GGUF_TYPE_ARRAY);
    wb_u32(b, elem_type);
    wb_u64(b, n);
}
/* Tensor info with explicit dims (n_dims values are written, whatever they are). */
static void tinfo(struct wb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset)
{
    wb_str(b, name);
    wb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) wb_u64(b, ne[d]);
    wb_u32(b, type);
    wb_u64(b, offset);
}
static void wb_pad(struct wb *b, size_t align)
{
    while (b->len % align) wb_u8(b, 0);
}
/* n data bytes with a recognisable pattern. */
static void wb_data(struct wb *b, size_t n)
{
    for (size_t i = 0; i < n; i++) wb_u8(b, (uint8_t)(i * 7 + 1));
}

/* ---------------------------------------------------------------- helpers */

/* Exact-size copy (ASan sees any over-read) kept alive with the gguf. */
struct opened {
    uint8_t *mem;
    struct gguf *g;
    int rc;
    char msg[512];
};

static void open_wb(const struct wb *b, struct opened *o)
{
    o->mem = malloc(b->len ? b->len : 1);
    if (!o->mem) abort();
    if (b->len) memcpy(o->mem, b->p, b->len);
    o->g = NULL;
    strcpy(o->msg, "(unset)");
    o->rc = gguf_open_memory(o->mem, b->len, &o->g, o->msg, sizeof o->msg);
}

static void close_opened(struct opened *o)
{
    gguf_close(o->g);
    free(o->mem);
    o->g = NULL;
    o->mem = NULL;
}

/* Open b, require SA_ERR_BAD_MODEL, a NULL handle and a message containing
 * needle. Frees b. */
static void expect_bad_(struct wb *b, const char *needle, const char *what, int line)
{
    struct opened o;
    open_wb(b, &o);
    if (o.rc != SA_ERR_BAD_MODEL)
        TEST_FAIL_("[line %d] %s: rc %d (%s), expected SA_ERR_BAD_MODEL; msg \"%s\"", line, what, o.rc,
                   sa_err_name(o.rc), o.msg);
    if (o.g) TEST_FAIL_("[line %d] %s: handle not NULL on error", line, what);
    if (!strstr(o.msg, needle))
        TEST_FAIL_("[line %d] %s: message \"%s\" does not contain \"%s\"", line, what, o.msg, needle);
    close_opened(&o);
    wb_free(b);
}
#define EXPECT_BAD(b, needle, what) expect_bad_((b), (needle), (what), __LINE__)

/* A file with one tensor and one KV, built from the pieces given; used by
 * most tensor rejection tests. data_bytes of data follow the 32-padding. */
static void one_tensor(struct wb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data_bytes)
{
    memset(b, 0, sizeof *b);
    wb_header(b, 3, 1, 1);
    kv_str(b, "general.architecture", "llama");
    tinfo(b, name, n_dims, ne, type, offset);
    wb_pad(b, 32);
    wb_data(b, data_bytes);
}

/* The valid "everything" file: one KV of most types, two arrays, one
 * F32 [8, 2] tensor and one Q8_0 [32] tensor. */
static void build_valid(struct wb *b)
{
    memset(b, 0, sizeof *b);
    wb_header(b, 3, 2, 13);
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "t.u32", 4000000000u);
    kv_head(b, "t.i64", GGUF_TYPE_INT64);
    wb_u64(b, (uint64_t)INT64_C(-5000000000));
    kv_head(b, "t.f32", GGUF_TYPE_FLOAT32);
    wb_f32(b, 1.5f);
    kv_head(b, "t.bool", GGUF_TYPE_BOOL);
    wb_u8(b, 1);
    kv_str(b, "t.str", "hello");
    kv_i32(b, "t.neg", -7);
    kv_head(b, "t.u8", GGUF_TYPE_UINT8);
    wb_u8(b, 200);
    kv_head(b, "t.f64", GGUF_TYPE_FLOAT64);
    double d = 0.25;
    wb_bytes(b, &d, 8);
    kv_head(b, "t.u64big", GGUF_TYPE_UINT64);
    wb_u64(b, UINT64_MAX);
    kv_arr_head(b, "t.arr_i32", GGUF_TYPE_INT32, 3);
    for (int32_t v = -1; v <= 1; v++) wb_bytes(b, &v, 4);
    kv_arr_head(b, "t.arr_str", GGUF_TYPE_STRING, 3);
    wb_str(b, "a");
    wb_str(b, "");
    wb_str(b, "xyz");
    kv_arr_head(b, "t.arr_f32", GGUF_TYPE_FLOAT32, 2);
    wb_f32(b, 0.5f);
    wb_f32(b, -2.0f);
    uint64_t ne[2] = {8, 2}, ne_q[1] = {32};
    tinfo(b, "w", 2, ne, QUANT_F32, 0);
    tinfo(b, "q", 1, ne_q, QUANT_Q8_0, 64);
    wb_pad(b, 32);
    wb_data(b, 64 + 34);
}

/* ---------------------------------------------------------------- valid files */

static void test_valid_minimal(void)
{
    struct wb b;
    build_valid(&b);
    struct opened o;
    open_wb(&b, &o);
    ASSERT_EQ(o.rc, 0);
    if (!o.g) {
        fprintf(stderr, "  open failed: %s\n", o.msg);
        close_opened(&o);
        wb_free(&b);
        return;
    }
    struct gguf *g = o.g;
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_n_kv(g), 13);
    ASSERT_EQ(gguf_n_tensors(g), 2);
    ASSERT_EQ(gguf_alignment(g), 32);
    ASSERT_EQ(gguf_file_size(g), b.len);
    ASSERT_EQ(gguf_data_offset(g) % 32, 0);
    ASSERT_EQ(gguf_data_offset(g) + 64 + 34, b.len);
    ASSERT_TRUE(gguf_base(g) == o.mem);

    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f = 0;
    bool bl = false;
    struct gguf_str s = {0};
    char cbuf[8];

    ASSERT_OK(gguf_get_u32(g, "t.u32", &u32));
    ASSERT_EQ(u32, 4000000000u);
    ASSERT_OK(gguf_get_i64(g, "t.i64", &i64));
    ASSERT_EQ(i64, INT64_C(-5000000000));
    ASSERT_OK(gguf_get_i64(g, "t.u32", &i64)); /* widening is fine */
    ASSERT_EQ(i64, 4000000000LL);
    ASSERT_OK(gguf_get_u32(g, "t.u8", &u32));
    ASSERT_EQ(u32, 200);
    ASSERT_OK(gguf_get_i64(g, "t.neg", &i64));
    ASSERT_EQ(i64, -7);
    ASSERT_OK(gguf_get_f32(g, "t.f32", &f));
    ASSERT_EQ(f == 1.5f, 1);
    ASSERT_OK(gguf_get_bool(g, "t.bool", &bl));
    ASSERT_TRUE(bl);
    ASSERT_OK(gguf_get_str(g, "t.str", &s));
    ASSERT_EQ(s.len, 5);
    ASSERT_TRUE(s.data && memcmp(s.data, "hello", 5) == 0);
    ASSERT_OK(gguf_get_cstr(g, "t.str", cbuf, sizeof cbuf));
    ASSERT_STR_EQ(cbuf, "hello");
    ASSERT_OK(gguf_get_cstr(g, "t.str", cbuf, 3)); /* truncates */
    ASSERT_STR_EQ(cbuf, "he");
    cbuf[0] = 'Z';
    ASSERT_EQ(gguf_get_cstr(g, "t.str", cbuf, 0), SA_ERR_INVALID_ARG); /* nothing written */
    ASSERT_EQ(cbuf[0], 'Z');
    ASSERT_OK(gguf_get_cstr(g, "general.architecture", cbuf, sizeof cbuf));
    ASSERT_STR_EQ(cbuf, "llama");

    /* range */
    ASSERT_EQ(gguf_get_u32(g, "t.neg", &u32), SA_ERR_RANGE);
    ASSERT_EQ(gguf_get_u32(g, "t.i64", &u32), SA_ERR_RANGE);
    ASSERT_EQ(gguf_get_i64(g, "t.u64big", &i64), SA_ERR_RANGE);
    /* wrong type */
    ASSERT_EQ(gguf_get_u32(g, "t.str", &u32), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_u32(g, "t.f32", &u32), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_u32(g, "t.bool", &u32), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_u32(g, "t.arr_i32", &u32), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_i64(g, "t.f64", &i64), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_f32(g, "t.u32", &f), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_f32(g, "t.str", &f), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_bool(g, "t.u8", &bl), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_str(g, "t.u32", &s), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_str(g, "t.arr_str", &s), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_cstr(g, "t.u32", cbuf, sizeof cbuf), SA_ERR_TYPE);
    /* missing */
    ASSERT_EQ(gguf_find_key(g, "nope"), -1);
    ASSERT_EQ(gguf_find_key(g, "t.st"), -1); /* prefix of a key is not the key */
    ASSERT_EQ(gguf_find_key(g, "t.str.x"), -1);
    ASSERT_EQ(gguf_get_u32(g, "nope", &u32), SA_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_i64(g, "nope", &i64), SA_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_f32(g, "nope", &f), SA_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_bool(g, "nope", &bl), SA_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_str(g, "nope", &s), SA_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_cstr(g, "nope", cbuf, sizeof cbuf), SA_ERR_NOT_FOUND);

    /* arrays */
    const void *data = NULL;
    uint64_t n = 0;
    ASSERT_OK(gguf_get_arr(g, "t.arr_i32", GGUF_TYPE_INT32, &data, &n));
    ASSERT_EQ(n, 3);
    if (data && n == 3) {
        ASSERT_EQ(gguf_arr_i32(data, 0), -1);
        ASSERT_EQ(gguf_arr_i32(data, 1), 0);
        ASSERT_EQ(gguf_arr_i32(data, 2), 1);
        ASSERT_EQ(gguf_arr_u32(data, 0), UINT32_MAX);
    }
    ASSERT_OK(gguf_get_arr(g, "t.arr_f32", GGUF_TYPE_FLOAT32, &data, &n));
    ASSERT_EQ(n, 2);
    if (data && n == 2) {
        ASSERT_EQ(gguf_arr_f32(data, 0) == 0.5f, 1);
        ASSERT_EQ(gguf_arr_f32(data, 1) == -2.0f, 1);
    }
    ASSERT_EQ(gguf_get_arr(g, "t.arr_i32", GGUF_TYPE_UINT32, &data, &n), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_arr(g, "t.arr_i32", GGUF_TYPE_FLOAT32, &data, &n), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_arr(g, "t.u32", GGUF_TYPE_UINT32, &data, &n), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_arr(g, "nope", GGUF_TYPE_UINT32, &data, &n), SA_ERR_NOT_FOUND);
    ASSERT_OK(gguf_get_arr(g, "t.arr_str", GGUF_TYPE_STRING, &data, &n));
    ASSERT_EQ(n, 3);
    ASSERT_OK(gguf_get_arr_str(g, "t.arr_str", 0, &s));
    ASSERT_TRUE(s.len == 1 && s.data[0] == 'a');
    ASSERT_OK(gguf_get_arr_str(g, "t.arr_str", 1, &s));
    ASSERT_EQ(s.len, 0);
    ASSERT_OK(gguf_get_arr_str(g, "t.arr_str", 2, &s));
    ASSERT_TRUE(s.len == 3 && memcmp(s.data, "xyz", 3) == 0);
    ASSERT_EQ(gguf_get_arr_str(g, "t.arr_str", 3, &s), SA_ERR_RANGE);
    ASSERT_EQ(gguf_get_arr_str(g, "t.arr_i32", 0, &s), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_arr_str(g, "t.str", 0, &s), SA_ERR_TYPE);
    ASSERT_EQ(gguf_get_arr_str(g, "nope", 0, &s), SA_ERR_NOT_FOUND);

    /* per-entry introspection and raw bytes */
    int64_t ki = gguf_find_key(g, "t.arr_str");
    ASSERT_EQ(ki, 11);
    if (ki >= 0) {
        struct gguf_str k = gguf_kv_key(g, (uint64_t)ki);
        ASSERT_TRUE(k.len == 9 && memcmp(k.data, "t.arr_str", 9) == 0);
        ASSERT_EQ(gguf_kv_type(g, (uint64_t)ki), GGUF_TYPE_ARRAY);
        ASSERT_EQ(gguf_kv_arr_type(g, (uint64_t)ki), GGUF_TYPE_STRING);
        ASSERT_EQ(gguf_kv_arr_n(g, (uint64_t)ki), 3);
        const uint8_t *raw = NULL;
        size_t raw_len = 0;
        gguf_kv_raw(g, (uint64_t)ki, &raw, &raw_len);
        /* key(8+9) type(4) elem(4) n(8) "a"(9) ""(8) "xyz"(11) */
        ASSERT_EQ(raw_len, 8 + 9 + 4 + 4 + 8 + 9 + 8 + 11);
        ASSERT_TRUE(raw && raw_len >= 17 && memcmp(raw + 8, "t.arr_str", 9) == 0);
    }
    int64_t ku = gguf_find_key(g, "t.u32");
    ASSERT_EQ(ku, 1);
    if (ku >= 0) {
        ASSERT_EQ(gguf_kv_type(g, (uint64_t)ku), GGUF_TYPE_UINT32);
        ASSERT_EQ(gguf_kv_arr_type(g, (uint64_t)ku), GGUF_TYPE_COUNT);
        ASSERT_EQ(gguf_kv_arr_n(g, (uint64_t)ku), 0);
        const uint8_t *raw = NULL;
        size_t raw_len = 0;
        gguf_kv_raw(g, (uint64_t)ku, &raw, &raw_len);
        ASSERT_EQ(raw_len, 8 + 5 + 4 + 4);
        uint32_t v = 0;
        if (raw && raw_len == 21) memcpy(&v, raw + 17, 4);
        ASSERT_EQ(v, 4000000000u);
    }
    ASSERT_STR_EQ(gguf_type_name(GGUF_TYPE_FLOAT32), "float32");
    ASSERT_STR_EQ(gguf_type_name((enum gguf_type)99), "invalid");

    /* tensors */
    const struct gguf_tensor *t = gguf_find_tensor(g, "w");
    ASSERT_TRUE(t != NULL);
    ASSERT_TRUE(gguf_find_tensor(g, "ww") == NULL);
    ASSERT_TRUE(gguf_find_tensor(g, "") == NULL);
    if (t) {
        ASSERT_TRUE(t == gguf_tensor(g, 0));
        ASSERT_EQ(t->n_dims, 2);
        ASSERT_EQ(t->ne[0], 8);
        ASSERT_EQ(t->ne[1], 2);
        ASSERT_EQ(t->ne[2], 1);
        ASSERT_EQ(t->ne[3], 1);
        ASSERT_EQ(t->type, QUANT_F32);
        ASSERT_EQ(t->offset, 0);
        ASSERT_EQ(t->n_elements, 16);
        ASSERT_EQ(t->n_bytes, 64);
        ASSERT_TRUE((const uint8_t *)t->data == o.mem + gguf_data_offset(g));
        ASSERT_EQ(((const uint8_t *)t->data)[1], 8); /* wb_data pattern: i*7+1 */
    }
    const struct gguf_tensor *q = gguf_find_tensor(g, "q");
    ASSERT_TRUE(q != NULL);
    if (q) {
        ASSERT_EQ(q->n_dims, 1);
        ASSERT_EQ(q->type, QUANT_Q8_0);
        ASSERT_EQ(q->n_bytes, 34);
        ASSERT_EQ(q->offset, 64);
        ASSERT_TRUE((const uint8_t *)q->data == o.mem + gguf_data_offset(g) + 64);
    }
    close_opened(&o);
    wb_free(&b);
}

static void test_zero_tensor_no_padding(void)
{
    /* A vocab-only file (like the tokenizer vectors) ends right after the KVs. */
    struct wb b = {0};
    wb_header(&b, 3, 0, 2);
    kv_str(&b, "general.architecture", "llama");
    kv_arr_head(&b, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 2);
    wb_str(&b, "a");
    wb_str(&b, "bc");
    ASSERT_TRUE(b.len % 32 != 0);
    struct opened o;
    open_wb(&b, &o);
    ASSERT_EQ(o.rc, 0);
    if (o.g) {
        ASSERT_EQ(gguf_n_tensors(o.g), 0);
        ASSERT_EQ(gguf_n_kv(o.g), 2);
        ASSERT_TRUE(gguf_find_tensor(o.g, "a") == NULL);
    }
    close_opened(&o);

    /* header only: no KV, no tensor */
    struct wb h = {0};
    wb_header(&h, 2, 0, 0);
    open_wb(&h, &o);
    ASSERT_EQ(o.rc, 0);
    if (o.g) ASSERT_EQ(gguf_version(o.g), 2);
    close_opened(&o);
    wb_free(&h);
    wb_free(&b);
}

static void test_alignment_64_and_v2(void)
{
    struct wb b = {0};
    wb_header(&b, 2, 2, 2);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "general.alignment", 64);
    uint64_t ne[1] = {8};
    tinfo(&b, "a", 1, ne, QUANT_F32, 0);
    tinfo(&b, "b", 1, ne, QUANT_F32, 64);
    wb_pad(&b, 64);
    wb_data(&b, 64 + 32);
    struct opened o;
    open_wb(&b, &o);
    ASSERT_EQ(o.rc, 0);
    if (o.g) {
        ASSERT_EQ(gguf_alignment(o.g), 64);
        ASSERT_EQ(gguf_version(o.g), 2);
        ASSERT_EQ(gguf_data_offset(o.g) % 64, 0);
        const struct gguf_tensor *t = gguf_find_tensor(o.g, "b");
        ASSERT_TRUE(t && (const uint8_t *)t->data == o.mem + gguf_data_offset(o.g) + 64);
    }
    close_opened(&o);
    wb_free(&b);

    /* offset 32 is misaligned once the alignment is 64 */
    wb_header(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "a", 1, ne, QUANT_F32, 0);
    tinfo(&b, "b", 1, ne, QUANT_F32, 32);
    wb_pad(&b, 64);
    wb_data(&b, 128);
    EXPECT_BAD(&b, "'b'", "offset 32 with alignment 64");
}

/* ---------------------------------------------------------------- header / KV rejections */

static void test_reject_header(void)
{
    struct wb b = {0};
    wb_bytes(&b, "GGUG", 4);
    wb_u32(&b, 3);
    wb_u64(&b, 0);
    wb_u64(&b, 0);
    EXPECT_BAD(&b, "magic", "bad magic");

    wb_header(&b, 1, 0, 0);
    EXPECT_BAD(&b, "version", "version 1");
    wb_header(&b, 4, 0, 0);
    EXPECT_BAD(&b, "version", "version 4");

    wb_header(&b, 3, UINT64_C(1) << 40, 0);
    EXPECT_BAD(&b, "n_tensors", "n_tensors 2^40");
    wb_header(&b, 3, 1000, 0); /* under the cap but cannot fit */
    EXPECT_BAD(&b, "n_tensors", "n_tensors 1000 in 24 bytes");
    wb_header(&b, 3, 0, UINT64_C(1) << 40);
    EXPECT_BAD(&b, "n_kv", "n_kv 2^40");
    wb_header(&b, 3, 0, UINT64_MAX);
    EXPECT_BAD(&b, "n_kv", "n_kv 2^64-1");
    wb_header(&b, 3, 0, 60000);
    kv_u32(&b, "a", 1);
    EXPECT_BAD(&b, "n_kv", "n_kv 60000 in a tiny file");

    for (size_t n = 0; n < 24; n++) { /* shorter than a header */
        wb_header(&b, 3, 0, 0);
        b.len = n;
        EXPECT_BAD(&b, n < 4 ? "magic" : n < 8 ? "version" : n < 16 ? "n_tensors" : "n_kv", "short header");
    }
}

static void test_reject_strings_arrays(void)
{
    struct wb b = {0};
    /* key length 2^63 */
    wb_header(&b, 3, 0, 1);
    wb_u64(&b, UINT64_C(1) << 63);
    wb_bytes(&b, "abcd", 4);
    EXPECT_BAD(&b, "key", "key length 2^63");
    /* value string length 2^63 */
    wb_header(&b, 3, 0, 1);
    kv_head(&b, "general.name", GGUF_TYPE_STRING);
    wb_u64(&b, UINT64_C(1) << 63);
    wb_bytes(&b, "abcd", 4);
    EXPECT_BAD(&b, "general.name", "string length 2^63");
    /* string length just past the end (under the 1 MiB cap) */
    wb_header(&b, 3, 0, 1);
    kv_head(&b, "general.name", GGUF_TYPE_STRING);
    wb_u64(&b, 5);
    wb_bytes(&b, "abcd", 4);
    EXPECT_BAD(&b, "general.name", "string 1 byte beyond EOF");
    /* empty key */
    wb_header(&b, 3, 0, 1);
    kv_u32(&b, "", 1);
    EXPECT_BAD(&b, "key", "empty key");

    /* array length 2^63: the smallest such file (49 bytes; gguf-py's 43-byte
     * reproducer used another layout) must be refused at once. */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "a", GGUF_TYPE_UINT8, UINT64_C(1) << 63);
    ASSERT_EQ(b.len, 49);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT_BAD(&b, "'a'", "array length 2^63");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (ms > 10.0) TEST_FAIL_("array length 2^63 took %.2f ms (> 10 ms)", ms);

    /* same with string elements, under the element cap but no room */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 1000);
    wb_str(&b, "x");
    EXPECT_BAD(&b, "tokenizer.ggml.tokens", "1000 strings in a tiny file");
    /* f32 array one element short */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, 3);
    wb_f32(&b, 1);
    wb_f32(&b, 2);
    EXPECT_BAD(&b, "tokenizer.ggml.scores", "array 1 element short");
    /* element cap 2^24 */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "big", GGUF_TYPE_UINT8, (UINT64_C(1) << 24) + 1);
    EXPECT_BAD(&b, "big", "array over the 2^24 cap");
    /* string element length beyond EOF */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 2);
    wb_str(&b, "ok");
    wb_u64(&b, UINT64_C(1) << 63);
    wb_u64(&b, 0);
    EXPECT_BAD(&b, "tokenizer.ggml.tokens", "string element 2^63");

    /* nested array */
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "nest", GGUF_TYPE_ARRAY, 1);
    wb_u32(&b, GGUF_TYPE_UINT8);
    wb_u64(&b, 1);
    wb_u8(&b, 0);
    EXPECT_BAD(&b, "nest", "nested array");
    /* invalid value type 13, and as an array element type */
    wb_header(&b, 3, 0, 1);
    kv_head(&b, "bad.type", 13);
    wb_u64(&b, 0);
    EXPECT_BAD(&b, "bad.type", "kv type 13");
    wb_header(&b, 3, 0, 1);
    kv_head(&b, "bad.type", 0xFFFFFFFFu);
    wb_u64(&b, 0);
    EXPECT_BAD(&b, "bad.type", "kv type 2^32-1");
    wb_header(&b, 3, 0, 1);
    kv_arr_head(&b, "bad.elem", 13, 1);
    wb_u64(&b, 0);
    EXPECT_BAD(&b, "bad.elem", "array elem type 13");
    /* scalar truncated */
    wb_header(&b, 3, 0, 1);
    kv_head(&b, "t.u64", GGUF_TYPE_UINT64);
    wb_u32(&b, 1);
    EXPECT_BAD(&b, "t.u64", "truncated u64 value");

    /* duplicate key */
    wb_header(&b, 3, 0, 3);
    kv_u32(&b, "llama.block_count", 1);
    kv_u32(&b, "other", 1);
    kv_u32(&b, "llama.block_count", 2);
    EXPECT_BAD(&b, "llama.block_count", "duplicate key");
}

static void test_reject_alignment(void)
{
    struct wb b = {0};
    wb_header(&b, 3, 0, 1);
    kv_i32(&b, "general.alignment", 32);
    EXPECT_BAD(&b, "general.alignment", "alignment as INT32");
    const uint32_t bad[] = {0, 3, 48, UINT32_C(1) << 31, UINT32_C(1) << 21};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wb_header(&b, 3, 0, 1);
        kv_u32(&b, "general.alignment", bad[i]);
        EXPECT_BAD(&b, "general.alignment", "bad alignment value");
    }
    wb_header(&b, 3, 0, 1);
    kv_str(&b, "general.alignment", "32");
    EXPECT_BAD(&b, "general.alignment", "alignment as string");
}

/* ---------------------------------------------------------------- tensor rejections */

static void test_reject_tensor_shape(void)
{
    struct wb b;
    uint64_t ne[5] = {8, 1, 1, 1, 1};
    one_tensor(&b, "blk.0.attn_q.weight", 0, ne, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "n_dims", "n_dims 0");
    one_tensor(&b, "blk.0.attn_q.weight", 5, ne, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "n_dims", "n_dims 5");
    one_tensor(&b, "blk.0.attn_q.weight", 0, ne, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "blk.0.attn_q.weight", "n_dims 0 names the tensor");

    uint64_t big[2] = {(UINT64_C(1) << 42) + 1, 1};
    one_tensor(&b, "t", 2, big, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "ne[0]", "ne0 2^42+1");
    uint64_t big1[2] = {32, (UINT64_C(1) << 42) + 1};
    one_tensor(&b, "t", 2, big1, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "ne[1]", "ne1 2^42+1");
    uint64_t imax[2] = {(uint64_t)INT64_MAX, 2};
    one_tensor(&b, "t", 2, imax, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "ne[0]", "ne (INT64_MAX, 2)");
    uint64_t neg[2] = {8, UINT64_MAX}; /* -1 as int64 */
    one_tensor(&b, "t", 2, neg, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "ne[1]", "ne1 -1");
    uint64_t zero[2] = {8, 0};
    one_tensor(&b, "t", 2, zero, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "ne[1]", "ne1 0");
    uint64_t wrap[1] = {UINT64_C(5124095576030431008)};
    one_tensor(&b, "t", 1, wrap, QUANT_Q4_0, 0, 32);
    EXPECT_BAD(&b, "ne[0]", "ne0 5124095576030431008 Q4_0");
    /* every dim at the 2^31 cap: 2^124 elements must not wrap */
    uint64_t cap4[4] = {UINT64_C(1) << 31, UINT64_C(1) << 31, UINT64_C(1) << 31, UINT64_C(1) << 31};
    one_tensor(&b, "t", 4, cap4, QUANT_Q4_0, 0, 32);
    EXPECT_BAD(&b, "'t'", "2^31 in all four dims");
    /* dims within caps but far beyond the file */
    uint64_t large[2] = {UINT64_C(1) << 31, UINT64_C(1) << 20};
    one_tensor(&b, "huge", 2, large, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "huge", "2^51 elements in a tiny file");

    /* types */
    const uint32_t bad_types[] = {0xFFFFFFFFu, 999, 15, 3, 6, 31};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        one_tensor(&b, "blk.0.ffn_up.weight", 1, ne, bad_types[i], 0, 64);
        EXPECT_BAD(&b, "type", "unsupported tensor type");
        one_tensor(&b, "blk.0.ffn_up.weight", 1, ne, bad_types[i], 0, 64);
        EXPECT_BAD(&b, "blk.0.ffn_up.weight", "unsupported tensor type names the tensor");
    }
    uint64_t ne48[1] = {48};
    one_tensor(&b, "t", 1, ne48, QUANT_Q8_0, 0, 128);
    EXPECT_BAD(&b, "ne[0]", "Q8_0 with ne0 48");
    uint64_t ne16[2] = {16, 2};
    one_tensor(&b, "t", 2, ne16, QUANT_Q4_0, 0, 128);
    EXPECT_BAD(&b, "ne[0]", "Q4_0 with ne0 16");
    uint64_t ne128[2] = {128, 4}; /* 2 x 144 bytes of data would fit: the row length alone is wrong */
    one_tensor(&b, "blk.0.attn_q.weight", 2, ne128, QUANT_Q4_K, 0, 512);
    EXPECT_BAD(&b, "blk.0.attn_q.weight", "Q4_K with ne0 128 names the tensor");
    one_tensor(&b, "t", 2, ne128, QUANT_Q6_K, 0, 512);
    EXPECT_BAD(&b, "block size 256", "Q6_K with ne0 128");
    /* the same shapes at whole super-blocks are accepted, with the K-quant byte sizes */
    static const struct { uint32_t type; uint64_t bytes; } kq[] = {
        {QUANT_Q2_K, 84}, {QUANT_Q3_K, 110}, {QUANT_Q4_K, 144}, {QUANT_Q5_K, 176},
        {QUANT_Q6_K, 210}, {QUANT_IQ4_XS, 136}, {QUANT_IQ4_NL, 8 * 18}};
    for (size_t i = 0; i < sizeof kq / sizeof kq[0]; i++) {
        uint64_t ne256[2] = {256, 3};
        one_tensor(&b, "w", 2, ne256, kq[i].type, 0, 3 * kq[i].bytes);
        struct opened o;
        open_wb(&b, &o);
        if (o.rc != 0) TEST_FAIL_("type %u [256, 3]: %s", kq[i].type, o.msg);
        else ASSERT_EQ(gguf_tensor(o.g, 0)->n_bytes, 3 * kq[i].bytes);
        close_opened(&o);
        wb_free(&b);
        one_tensor(&b, "w", 2, ne256, kq[i].type, 0, 3 * kq[i].bytes - 1); /* one byte short */
        EXPECT_BAD(&b, "'w'", "K-quant tensor one byte short");
    }
    uint64_t ne16x[1] = {16};
    one_tensor(&b, "t", 1, ne16x, QUANT_IQ4_NL, 0, 64);
    EXPECT_BAD(&b, "block size 32", "IQ4_NL with ne0 16");

    /* names */
    one_tensor(&b, "", 1, ne, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "name", "empty tensor name");
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    one_tensor(&b, longname, 1, ne, QUANT_F32, 0, 32);
    EXPECT_BAD(&b, "name", "tensor name of 299 bytes");
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 1, 0);
    wb_u64(&b, 3);
    wb_bytes(&b, "a\0b", 3);
    wb_u32(&b, 1);
    wb_u64(&b, 8);
    wb_u32(&b, QUANT_F32);
    wb_u64(&b, 0);
    wb_pad(&b, 32);
    wb_data(&b, 32);
    EXPECT_BAD(&b, "name", "NUL in tensor name");
}

static void test_reject_tensor_data(void)
{
    struct wb b;
    uint64_t ne[1] = {16}; /* 64 bytes of F32 */
    const char *nm = "blk.3.ffn_down.weight";

    /* offset = data size */
    one_tensor(&b, nm, 1, ne, QUANT_F32, 64, 64);
    EXPECT_BAD(&b, nm, "offset == data size");
    one_tensor(&b, nm, 1, ne, QUANT_F32, 64, 64);
    EXPECT_BAD(&b, "offset", "offset == data size names the offset");
    /* offset + bytes = data size + 1 */
    one_tensor(&b, nm, 1, ne, QUANT_F32, 0, 63);
    EXPECT_BAD(&b, nm, "offset+bytes == size+1");
    one_tensor(&b, nm, 1, ne, QUANT_F32, 32, 95);
    EXPECT_BAD(&b, nm, "offset 32, offset+bytes == size+1");
    /* offset + bytes overflows u64 */
    one_tensor(&b, nm, 1, ne, QUANT_F32, UINT64_MAX - 31, 64);
    EXPECT_BAD(&b, nm, "offset near 2^64");
    /* misaligned */
    one_tensor(&b, nm, 1, ne, QUANT_F32, 4, 128);
    EXPECT_BAD(&b, nm, "misaligned offset");
    one_tensor(&b, nm, 1, ne, QUANT_F32, 4, 128);
    EXPECT_BAD(&b, "align", "misaligned offset message");
    /* data section start past EOF: tensor info ends, no padding, no data */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 1, 0);
    tinfo(&b, nm, 1, ne, QUANT_F32, 0);
    ASSERT_TRUE(b.len % 32 != 0);
    EXPECT_BAD(&b, "data", "no data section");

    /* exactly fitting data is fine (boundary of the checks above) */
    one_tensor(&b, nm, 1, ne, QUANT_F32, 32, 96);
    struct opened o;
    open_wb(&b, &o);
    ASSERT_EQ(o.rc, 0);
    close_opened(&o);
    wb_free(&b);

    /* overlapping tensors: a [0,64), b [32,96) */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 2, 0);
    tinfo(&b, "blk.0.attn_q.weight", 1, ne, QUANT_F32, 0);
    tinfo(&b, "blk.0.attn_k.weight", 1, ne, QUANT_F32, 32);
    wb_pad(&b, 32);
    wb_data(&b, 96);
    EXPECT_BAD(&b, "blk.0.attn_k.weight", "overlapping tensors");
    /* overlap listed in reverse index order */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 2, 0);
    tinfo(&b, "blk.0.attn_k.weight", 1, ne, QUANT_F32, 32);
    tinfo(&b, "blk.0.attn_q.weight", 1, ne, QUANT_F32, 0);
    wb_pad(&b, 32);
    wb_data(&b, 96);
    EXPECT_BAD(&b, "overlaps", "overlapping tensors, reverse order");
    /* same offset */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 2, 0);
    tinfo(&b, "x", 1, ne, QUANT_F32, 0);
    tinfo(&b, "y", 1, ne, QUANT_F32, 0);
    wb_pad(&b, 32);
    wb_data(&b, 64);
    EXPECT_BAD(&b, "overlaps", "two tensors at the same offset");

    /* duplicate tensor name (disjoint data) */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 2, 0);
    tinfo(&b, "output.weight", 1, ne, QUANT_F32, 0);
    tinfo(&b, "output.weight", 1, ne, QUANT_F32, 64);
    wb_pad(&b, 32);
    wb_data(&b, 128);
    EXPECT_BAD(&b, "output.weight", "duplicate tensor name");
}

/* ---------------------------------------------------------------- truncation */

/* Every prefix of a valid file must either open (only where the prefix is a
 * valid file itself) or fail with SA_ERR_BAD_MODEL and a message. */
static void truncate_all(const struct wb *full, size_t expect_ok, const char *what)
{
    size_t ok = 0;
    for (size_t n = 0; n <= full->len; n++) {
        struct wb p = {.p = full->p, .len = n, .cap = full->cap};
        struct opened o;
        open_wb(&p, &o);
        if (o.rc == 0) {
            ok++;
            if (!o.g) TEST_FAIL_("%s: prefix %zu: rc 0 but no handle", what, n);
        } else {
            if (o.rc != SA_ERR_BAD_MODEL)
                TEST_FAIL_("%s: prefix %zu: rc %d (%s)", what, n, o.rc, sa_err_name(o.rc));
            if (o.g) TEST_FAIL_("%s: prefix %zu: handle on error", what, n);
            if (!o.msg[0] || !strcmp(o.msg, "(unset)")) TEST_FAIL_("%s: prefix %zu: no message", what, n);
        }
        close_opened(&o);
    }
    if (ok != expect_ok) TEST_FAIL_("%s: %zu prefixes opened, expected %zu", what, ok, expect_ok);
}

static void test_truncated_everywhere(void)
{
    struct wb b;
    build_valid(&b);
    truncate_all(&b, 1, "2-tensor file"); /* only the whole file */
    wb_free(&b);

    /* zero-tensor file: valid exactly when the prefix ends after the last KV */
    memset(&b, 0, sizeof b);
    wb_header(&b, 3, 0, 3);
    kv_str(&b, "general.architecture", "llama");
    kv_arr_head(&b, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 3);
    wb_str(&b, "<s>");
    wb_str(&b, "");
    wb_str(&b, "abc");
    kv_arr_head(&b, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, 3);
    for (int i = 0; i < 3; i++) wb_f32(&b, (float)i);
    truncate_all(&b, 1, "vocab-only file");
    wb_free(&b);
}

/* ---------------------------------------------------------------- files */

static void test_open_file_errors(void)
{
    struct gguf *g = (struct gguf *)(uintptr_t)1;
    char msg[256] = "";
    ASSERT_EQ(gguf_open_file("/nonexistent/x.gguf", &g, msg, sizeof msg), SA_ERR_NOT_FOUND);
    ASSERT_TRUE(g == NULL);
    ASSERT_CONTAINS(msg, "/nonexistent/x.gguf");
    g = (struct gguf *)(uintptr_t)1;
    ASSERT_EQ(gguf_open_file("/tmp", &g, msg, sizeof msg), SA_ERR_IO);
    ASSERT_TRUE(g == NULL);

    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    if (fd < 0) return;
    ASSERT_EQ(write(fd, "GGUF\3\0\0\0", 8), 8);
    close(fd);
    g = (struct gguf *)(uintptr_t)1;
    ASSERT_EQ(gguf_open_file(path, &g, msg, sizeof msg), SA_ERR_BAD_MODEL);
    ASSERT_TRUE(g == NULL);
    ASSERT_TRUE(msg[0] != 0);

    /* a crafted file through the mmap path */
    struct wb b;
    build_valid(&b);
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    if (f) {
        ASSERT_EQ(fwrite(b.p, 1, b.len, f), b.len);
        fclose(f);
        ASSERT_EQ(gguf_open_file(path, &g, msg, sizeof msg), 0);
        if (g) {
            ASSERT_EQ(gguf_file_size(g), b.len);
            ASSERT_EQ(gguf_n_tensors(g), 2);
            gguf_close(g);
        }
    }
    wb_free(&b);
    unlink(path);
    gguf_close(NULL);
}

static void test_real_stories260k(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", test_shared_dir());
    struct gguf *g = NULL;
    char msg[512] = "";
    int rc = gguf_open_file(path, &g, msg, sizeof msg);
    ASSERT_EQ(rc, 0);
    if (!g) {
        fprintf(stderr, "  %s: %s\n", path, msg);
        return;
    }
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_n_tensors(g), 48);
    ASSERT_EQ(gguf_n_kv(g), 19);
    ASSERT_EQ(gguf_data_offset(g), 14176);
    ASSERT_EQ(gguf_alignment(g), 32);
    ASSERT_EQ(gguf_file_size(g), 1185376);
    uint32_t v = 0;
    ASSERT_OK(gguf_get_u32(g, "llama.block_count", &v));
    ASSERT_EQ(v, 5);
    ASSERT_OK(gguf_get_u32(g, "llama.embedding_length", &v));
    ASSERT_EQ(v, 64);
    ASSERT_OK(gguf_get_u32(g, "tokenizer.ggml.seperator_token_id", &v));
    ASSERT_EQ(v, UINT32_MAX);
    float eps = 0;
    ASSERT_OK(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    ASSERT_NEAR(eps, 1e-5, 1e-9);
    char model[16];
    ASSERT_OK(gguf_get_cstr(g, "tokenizer.ggml.model", model, sizeof model));
    ASSERT_STR_EQ(model, "llama");
    const void *data = NULL;
    uint64_t n = 0;
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &data, &n));
    ASSERT_EQ(n, 512);
    ASSERT_OK(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &data, &n));
    ASSERT_EQ(n, 512);
    if (n == 512) {
        ASSERT_EQ(gguf_arr_i32(data, 0), 2);
        ASSERT_EQ(gguf_arr_i32(data, 3), 6);
    }
    struct gguf_str s = {0};
    ASSERT_OK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s));
    ASSERT_TRUE(s.len == 6 && memcmp(s.data, "<0x00>", 6) == 0);
    const struct gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    ASSERT_TRUE(t != NULL);
    if (t) {
        ASSERT_EQ(t->ne[0], 64);
        ASSERT_EQ(t->ne[1], 512);
        ASSERT_EQ(t->type, QUANT_F32);
        ASSERT_EQ(t->n_bytes, 131072);
        ASSERT_TRUE((const uint8_t *)t->data == gguf_base(g) + 14176);
    }
    t = gguf_find_tensor(g, "blk.4.ffn_norm.weight");
    ASSERT_TRUE(t != NULL);
    if (t) {
        ASSERT_EQ(t->offset + t->n_bytes + gguf_data_offset(g), gguf_file_size(g));
        float w0;
        memcpy(&w0, t->data, 4);
        ASSERT_TRUE(isfinite(w0));
    }
    ASSERT_TRUE(gguf_find_tensor(g, "blk.5.ffn_norm.weight") == NULL);
    /* every tensor is inside the file and aligned */
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *x = gguf_tensor(g, i);
        ASSERT_EQ(x->offset % 32, 0);
        ASSERT_TRUE(gguf_data_offset(g) + x->offset + x->n_bytes <= gguf_file_size(g));
    }
    gguf_close(g);
}

static void test_real_tokenizer_files(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer-vectors/ggml-vocab-llama-spm.gguf", test_shared_dir());
    struct gguf *g = NULL;
    char msg[512] = "";
    ASSERT_EQ(gguf_open_file(path, &g, msg, sizeof msg), 0);
    if (!g) {
        fprintf(stderr, "  %s: %s\n", path, msg);
        return;
    }
    ASSERT_EQ(gguf_n_tensors(g), 0);
    ASSERT_EQ(gguf_n_kv(g), 22);
    int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens");
    ASSERT_TRUE(k >= 0);
    if (k >= 0) {
        ASSERT_EQ(gguf_kv_arr_type(g, (uint64_t)k), GGUF_TYPE_STRING);
        ASSERT_EQ(gguf_kv_arr_n(g, (uint64_t)k), 32000);
    }
    bool add_bos = false;
    ASSERT_OK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos));
    ASSERT_TRUE(add_bos);
    struct gguf_str s = {0};
    ASSERT_OK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 31999, &s));
    ASSERT_TRUE(s.len > 0);
    gguf_close(g);

    /* the other vocab files open too */
    const char *others[] = {"deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "mpt"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        snprintf(path, sizeof path, "%s/tokenizer-vectors/ggml-vocab-%s.gguf", test_shared_dir(), others[i]);
        int rc = gguf_open_file(path, &g, msg, sizeof msg);
        if (rc) TEST_FAIL_("%s: %s", path, msg);
        if (g) {
            ASSERT_EQ(gguf_n_tensors(g), 0);
            ASSERT_TRUE(gguf_find_key(g, "tokenizer.ggml.tokens") >= 0);
        }
        gguf_close(g);
    }
}

int main(void)
{
    TEST_RUN(test_valid_minimal);
    TEST_RUN(test_zero_tensor_no_padding);
    TEST_RUN(test_alignment_64_and_v2);
    TEST_RUN(test_reject_header);
    TEST_RUN(test_reject_strings_arrays);
    TEST_RUN(test_reject_alignment);
    TEST_RUN(test_reject_tensor_shape);
    TEST_RUN(test_reject_tensor_data);
    TEST_RUN(test_truncated_everywhere);
    TEST_RUN(test_open_file_errors);
    TEST_RUN(test_real_stories260k);
    TEST_RUN(test_real_tokenizer_files);
    TEST_DONE();
}
