/*
 * gguf.c - validating GGUF reader. See gguf.h for the format and contract.
 *
 * Parsing walks a cursor over the mapped bytes. Every read first checks that
 * the bytes exist; every size computation goes through add_ovf()/mul_ovf().
 * The first failure records a message naming the field and unwinds.
 */
#define _DEFAULT_SOURCE
#include "gguf.h"

#include "errors.h"
#include "quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct gguf_kv {
    struct gguf_str key;
    enum gguf_type type;
    enum gguf_type arr_type; /* GGUF_TYPE_COUNT unless an array */
    uint64_t arr_n;
    const uint8_t *value;   /* first byte of the value (after the type tag(s)) */
    const uint8_t *raw;     /* first byte of the entry (the key length) */
    size_t raw_len;
    uint64_t *str_offsets;  /* string arrays: offset of each element from value */
};

struct gguf {
    const uint8_t *base;
    size_t size;
    void *map_addr; /* non-NULL when we own an mmap */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    char **tensor_names; /* NUL-terminated copies for lookup */
};

struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    char *msg;
    size_t msg_len;
    bool failed;
};

static bool add_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static bool mul_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

__attribute__((format(printf, 2, 3))) static int fail(struct cursor *c, const char *fmt, ...)
{
    if (!c->failed && c->msg && c->msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, c->msg_len, fmt, ap);
        va_end(ap);
    }
    c->failed = true;
    return SA_ERR_BAD_MODEL;
}

static size_t remaining(const struct cursor *c) { return c->size - c->pos; }

static int read_bytes(struct cursor *c, void *dst, size_t n, const char *field)
{
    if (remaining(c) < n)
        return fail(c, "%s: truncated at byte %zu (need %zu bytes, %zu left)", field, c->pos, n,
                    remaining(c));
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static int read_u32(struct cursor *c, uint32_t *v, const char *field) { return read_bytes(c, v, 4, field); }
static int read_u64(struct cursor *c, uint64_t *v, const char *field) { return read_bytes(c, v, 8, field); }

/* Printable, bounded rendering of a file string for messages. */
static const char *show(struct gguf_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.data[i];
        buf[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    buf[n] = 0;
    return buf;
}

static int read_str(struct cursor *c, struct gguf_str *s, const char *field)
{
    uint64_t len = 0;
    if (read_u64(c, &len, field)) return SA_ERR_BAD_MODEL;
    if (len > GGUF_MAX_STRING)
        return fail(c, "%s: string length %llu exceeds the %u-byte limit", field,
                    (unsigned long long)len, GGUF_MAX_STRING);
    if (len > remaining(c))
        return fail(c, "%s: string length %llu exceeds the %zu bytes left in the file", field,
                    (unsigned long long)len, remaining(c));
    s->data = (const char *)(c->base + c->pos);
    s->len = len;
    c->pos += (size_t)len;
    return 0;
}

static uint32_t scalar_size(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(enum gguf_type t)
{
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "invalid";
}

static int parse_kv(struct cursor *c, struct gguf_kv *kv, uint64_t idx)
{
    char field[96], keybuf[64];
    kv->raw = c->base + c->pos;
    kv->arr_type = GGUF_TYPE_COUNT;
    snprintf(field, sizeof field, "metadata entry %llu key", (unsigned long long)idx);
    if (read_str(c, &kv->key, field)) return SA_ERR_BAD_MODEL;
    if (kv->key.len == 0) return fail(c, "metadata entry %llu: empty key", (unsigned long long)idx);
    if (memchr(kv->key.data, 0, (size_t)kv->key.len))
        return fail(c, "metadata entry %llu: key contains a NUL byte", (unsigned long long)idx);
    show(kv->key, keybuf, sizeof keybuf);
    uint32_t type = 0;
    snprintf(field, sizeof field, "metadata '%s' type", keybuf);
    if (read_u32(c, &type, field)) return SA_ERR_BAD_MODEL;
    if (type >= GGUF_TYPE_COUNT) return fail(c, "metadata '%s': invalid value type %u", keybuf, type);
    kv->type = (enum gguf_type)type;
    snprintf(field, sizeof field, "metadata '%s' value", keybuf);
    if (kv->type == GGUF_TYPE_STRING) {
        struct gguf_str s;
        kv->value = c->base + c->pos;
        if (read_str(c, &s, field)) return SA_ERR_BAD_MODEL;
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        uint32_t et = 0;
        uint64_t n = 0;
        if (read_u32(c, &et, field) || read_u64(c, &n, field)) return SA_ERR_BAD_MODEL;
        if (et >= GGUF_TYPE_COUNT)
            return fail(c, "metadata '%s': invalid array element type %u", keybuf, et);
        if (et == GGUF_TYPE_ARRAY)
            return fail(c, "metadata '%s': nested arrays are not supported", keybuf);
        if (n > GGUF_MAX_ARRAY)
            return fail(c, "metadata '%s': array length %llu exceeds the limit %u", keybuf,
                        (unsigned long long)n, GGUF_MAX_ARRAY);
        kv->arr_type = (enum gguf_type)et;
        kv->arr_n = n;
        kv->value = c->base + c->pos;
        if (et == GGUF_TYPE_STRING) {
            /* each string needs at least its 8-byte length */
            uint64_t min_bytes;
            if (mul_ovf(n, 8, &min_bytes) || min_bytes > remaining(c))
                return fail(c, "metadata '%s': array of %llu strings exceeds the %zu bytes left", keybuf,
                            (unsigned long long)n, remaining(c));
            kv->str_offsets = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
            if (!kv->str_offsets) return fail(c, "metadata '%s': out of memory", keybuf);
            for (uint64_t i = 0; i < n; i++) {
                struct gguf_str s;
                kv->str_offsets[i] = (uint64_t)(c->base + c->pos - kv->value);
                if (read_str(c, &s, field)) return SA_ERR_BAD_MODEL;
            }
        } else {
            uint64_t bytes;
            if (mul_ovf(n, scalar_size(kv->arr_type), &bytes) || bytes > remaining(c))
                return fail(c, "metadata '%s': array of %llu %s exceeds the %zu bytes left", keybuf,
                            (unsigned long long)n, gguf_type_name(kv->arr_type), remaining(c));
            c->pos += (size_t)bytes;
        }
    } else {
        uint32_t sz = scalar_size(kv->type);
        if (sz > remaining(c)) return fail(c, "%s: truncated at byte %zu", field, c->pos);
        kv->value = c->base + c->pos;
        c->pos += sz;
    }
    kv->raw_len = (size_t)(c->base + c->pos - kv->raw);
    return 0;
}

static bool str_eq(struct gguf_str s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.data, z, n) == 0;
}

static int parse_tensor(struct cursor *c, struct gguf_tensor *t, uint64_t idx)
{
    char field[96], nb[64];
    snprintf(field, sizeof field, "tensor %llu name", (unsigned long long)idx);
    if (read_str(c, &t->name, field)) return SA_ERR_BAD_MODEL;
    if (t->name.len == 0 || t->name.len > 255)
        return fail(c, "tensor %llu: name length %llu not in 1..255", (unsigned long long)idx,
                    (unsigned long long)t->name.len);
    if (memchr(t->name.data, 0, (size_t)t->name.len))
        return fail(c, "tensor %llu: name contains a NUL byte", (unsigned long long)idx);
    show(t->name, nb, sizeof nb);
    snprintf(field, sizeof field, "tensor '%s' n_dims", nb);
    if (read_u32(c, &t->n_dims, field)) return SA_ERR_BAD_MODEL;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c, "tensor '%s': n_dims %u not in 1..%d", nb, t->n_dims, GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) {
            snprintf(field, sizeof field, "tensor '%s' ne[%u]", nb, d);
            if (read_u64(c, &ne, field)) return SA_ERR_BAD_MODEL;
            if (ne < 1 || ne > (uint64_t)GGUF_MAX_NE)
                return fail(c, "tensor '%s': ne[%u] = %llu not in 1..2^31", nb, d, (unsigned long long)ne);
        }
        t->ne[d] = (int64_t)ne;
        if (mul_ovf(nel, ne, &nel) || nel > (uint64_t)INT64_MAX)
            return fail(c, "tensor '%s': element count overflows", nb);
    }
    t->n_elements = nel;
    snprintf(field, sizeof field, "tensor '%s' type", nb);
    if (read_u32(c, &t->type, field)) return SA_ERR_BAD_MODEL;
    if (!quant_type_supported(t->type))
        return fail(c, "tensor '%s': type %u (%s) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q2_K..Q6_K, "
                    "IQ4_NL, IQ4_XS are)", nb,
                    t->type, quant_type_name(t->type));
    uint32_t bs = quant_block_size((enum quant_type)t->type);
    if ((uint64_t)t->ne[0] % bs)
        return fail(c, "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %u", nb,
                    (long long)t->ne[0], quant_type_name(t->type), bs);
    /* divide before multiply (RELIABILITY.md A2) */
    uint64_t bytes = (uint64_t)t->ne[0] / bs;
    if (mul_ovf(bytes, quant_block_bytes((enum quant_type)t->type), &bytes) ||
        mul_ovf(bytes, (uint64_t)t->ne[1], &bytes) || mul_ovf(bytes, (uint64_t)t->ne[2], &bytes) ||
        mul_ovf(bytes, (uint64_t)t->ne[3], &bytes))
        return fail(c, "tensor '%s': byte size overflows", nb);
    t->n_bytes = bytes;
    snprintf(field, sizeof field, "tensor '%s' offset", nb);
    if (read_u64(c, &t->offset, field)) return SA_ERR_BAD_MODEL;
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_gstr(const void *a, const void *b)
{
    const struct gguf_str *x = *(const struct gguf_str *const *)a;
    const struct gguf_str *y = *(const struct gguf_str *const *)b;
    size_t n = x->len < y->len ? (size_t)x->len : (size_t)y->len;
    int r = memcmp(x->data, y->data, n);
    if (r) return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Duplicate detection by sorting: O(n log n), so a 65536-entry file stays fast. */
static int find_duplicate(struct gguf_str **v, uint64_t n, struct cursor *c, const char *what)
{
    qsort(v, (size_t)n, sizeof *v, cmp_gstr);
    for (uint64_t i = 1; i < n; i++)
        if (cmp_gstr(&v[i - 1], &v[i]) == 0) {
            char kb[64];
            return fail(c, "%s '%s': duplicate", what, show(*v[i], kb, sizeof kb));
        }
    return 0;
}

static int check_duplicate_keys(struct gguf *g, struct cursor *c)
{
    if (g->n_kv < 2) return 0;
    struct gguf_str **v = malloc((size_t)g->n_kv * sizeof *v);
    if (!v) return fail(c, "n_kv: out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++) v[i] = &g->kv[i].key;
    int rc = find_duplicate(v, g->n_kv, c, "metadata key");
    free(v);
    return rc;
}

static int check_duplicate_tensors(struct gguf *g, struct cursor *c)
{
    if (g->n_tensors < 2) return 0;
    struct gguf_str **v = malloc((size_t)g->n_tensors * sizeof *v);
    if (!v) return fail(c, "n_tensors: out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) v[i] = &g->tensors[i].name;
    int rc = find_duplicate(v, g->n_tensors, c, "tensor name");
    free(v);
    return rc;
}

static int parse(struct gguf *g, struct cursor *c)
{
    uint32_t magic = 0;
    if (read_bytes(c, &magic, 4, "magic")) return SA_ERR_BAD_MODEL;
    if (memcmp(&magic, "GGUF", 4) != 0) return fail(c, "magic: not a GGUF file");
    if (read_u32(c, &g->version, "version")) return SA_ERR_BAD_MODEL;
    if (g->version != 2 && g->version != 3)
        return fail(c, "version: %u is not supported (2 and 3 are)", g->version);
    if (read_u64(c, &g->n_tensors, "n_tensors") || read_u64(c, &g->n_kv, "n_kv")) return SA_ERR_BAD_MODEL;
    if (g->n_tensors > GGUF_MAX_TENSORS)
        return fail(c, "n_tensors: %llu exceeds the limit %u", (unsigned long long)g->n_tensors,
                    GGUF_MAX_TENSORS);
    if (g->n_kv > GGUF_MAX_KV)
        return fail(c, "n_kv: %llu exceeds the limit %u", (unsigned long long)g->n_kv, GGUF_MAX_KV);
    /* every KV needs >= 12 bytes, every tensor info >= 24 */
    if (g->n_kv * 12 > remaining(c))
        return fail(c, "n_kv: %llu entries cannot fit in the %zu bytes left", (unsigned long long)g->n_kv,
                    remaining(c));
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    if (!g->kv) return fail(c, "n_kv: out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (parse_kv(c, &g->kv[i], i)) return SA_ERR_BAD_MODEL;
    }
    if (check_duplicate_keys(g, c)) return SA_ERR_BAD_MODEL;
    g->alignment = 32;
    int64_t ai = gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != GGUF_TYPE_UINT32)
            return fail(c, "general.alignment: must be uint32, not %s", gguf_type_name(g->kv[ai].type));
        uint32_t a;
        memcpy(&a, g->kv[ai].value, 4);
        if (a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
            return fail(c, "general.alignment: %u is not a power of two in 1..%u", a, GGUF_MAX_ALIGNMENT);
        g->alignment = a;
    }
    if (g->n_tensors * 24 > remaining(c))
        return fail(c, "n_tensors: %llu tensors cannot fit in the %zu bytes left",
                    (unsigned long long)g->n_tensors, remaining(c));
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    g->tensor_names = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensor_names);
    if (!g->tensors || !g->tensor_names) return fail(c, "n_tensors: out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        if (parse_tensor(c, t, i)) return SA_ERR_BAD_MODEL;
        g->tensor_names[i] = strndup(t->name.data, (size_t)t->name.len);
        if (!g->tensor_names[i]) return fail(c, "tensor names: out of memory");
    }
    if (check_duplicate_tensors(g, c)) return SA_ERR_BAD_MODEL;
    uint64_t data = c->pos;
    uint64_t pad = (g->alignment - data % g->alignment) % g->alignment;
    data += pad;
    g->data_offset = data;
    if (g->n_tensors == 0) return 0; /* vocab-only files may end before the padding */
    if (data > c->size)
        return fail(c, "tensor data: section start %llu is past the end of the file (%zu bytes)",
                    (unsigned long long)data, c->size);
    uint64_t data_size = c->size - data;
    /* bounds, alignment, overlap */
    struct gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return fail(c, "tensor data: out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    int rc = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        const char *nm = g->tensor_names[i];
        uint64_t end;
        if (t->offset % g->alignment)
            rc = fail(c, "tensor '%s': offset %llu is not a multiple of the alignment %u", nm,
                      (unsigned long long)t->offset, g->alignment);
        else if (add_ovf(t->offset, t->n_bytes, &end) || end > data_size)
            rc = fail(c, "tensor '%s': offset %llu + size %llu exceeds the %llu bytes of tensor data", nm,
                      (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
                      (unsigned long long)data_size);
        else
            t->data = c->base + data + t->offset;
    }
    if (!rc) {
        qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_offset);
        for (uint64_t i = 1; i < g->n_tensors && !rc; i++)
            if (order[i - 1]->offset + order[i - 1]->n_bytes > order[i]->offset) {
                char a[64], b[64];
                rc = fail(c, "tensor '%s': data overlaps tensor '%s'", show(order[i]->name, a, sizeof a),
                          show(order[i - 1]->name, b, sizeof b));
            }
    }
    free(order);
    return rc;
}

static int open_common(struct gguf *g, char *msg, size_t msg_len)
{
    struct cursor c = {.base = g->base, .size = g->size, .msg = msg, .msg_len = msg_len};
    if (msg && msg_len) msg[0] = 0;
    return parse(g, &c);
}

int gguf_open_memory(const void *data, size_t size, struct gguf **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct gguf *g = calloc(1, sizeof *g);
    if (!g) return SA_ERR_NOMEM;
    g->base = data;
    g->size = size;
    int rc = open_common(g, msg, msg_len);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open_file(const char *path, struct gguf **out, char *msg, size_t msg_len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (msg) snprintf(msg, msg_len, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? SA_ERR_NOT_FOUND : SA_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (msg) snprintf(msg, msg_len, "%s: not a regular file", path);
        close(fd);
        return SA_ERR_IO;
    }
    if (st.st_size < 24) {
        if (msg) snprintf(msg, msg_len, "header: file is %lld bytes, shorter than a GGUF header", (long long)st.st_size);
        close(fd);
        return SA_ERR_BAD_MODEL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        if (msg) snprintf(msg, msg_len, "%s: mmap: %s", path, strerror(errno));
        return SA_ERR_IO;
    }
    struct gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(p, (size_t)st.st_size);
        return SA_ERR_NOMEM;
    }
    g->base = p;
    g->size = (size_t)st.st_size;
    g->map_addr = p;
    int rc = open_common(g, msg, msg_len);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void gguf_close(struct gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_offsets);
    free(g->kv);
    if (g->tensor_names)
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensor_names[i]);
    free(g->tensor_names);
    free(g->tensors);
    if (g->map_addr) munmap(g->map_addr, g->size);
    free(g);
}

uint32_t gguf_version(const struct gguf *g) { return g->version; }
size_t gguf_file_size(const struct gguf *g) { return g->size; }
uint32_t gguf_alignment(const struct gguf *g) { return g->alignment; }
uint64_t gguf_data_offset(const struct gguf *g) { return g->data_offset; }
const uint8_t *gguf_base(const struct gguf *g) { return g->base; }
uint64_t gguf_n_kv(const struct gguf *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const struct gguf *g) { return g->n_tensors; }

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kv[i].key, key)) return (int64_t)i;
    return -1;
}

struct gguf_str gguf_kv_key(const struct gguf *g, uint64_t idx) { return g->kv[idx].key; }
enum gguf_type gguf_kv_type(const struct gguf *g, uint64_t idx) { return g->kv[idx].type; }
enum gguf_type gguf_kv_arr_type(const struct gguf *g, uint64_t idx) { return g->kv[idx].arr_type; }
uint64_t gguf_kv_arr_n(const struct gguf *g, uint64_t idx) { return g->kv[idx].arr_n; }

void gguf_kv_raw(const struct gguf *g, uint64_t idx, const uint8_t **ptr, size_t *len)
{
    *ptr = g->kv[idx].raw;
    *len = g->kv[idx].raw_len;
}

static const struct gguf_kv *lookup(const struct gguf *g, const char *key)
{
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* Read any integer-typed value as int64 (uint64 above INT64_MAX is a range error). */
static int kv_int(const struct gguf_kv *kv, int64_t *out)
{
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *out = *p; return 0;
    case GGUF_TYPE_INT8: *out = (int8_t)*p; return 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return SA_ERR_RANGE;
        *out = (int64_t)v;
        return 0;
    }
    default: return SA_ERR_TYPE;
    }
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    return kv_int(kv, out);
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out)
{
    int64_t v;
    int rc = gguf_get_i64(g, key, &v);
    if (rc) return rc;
    if (v < 0 || v > (int64_t)UINT32_MAX) return SA_ERR_RANGE;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->value, 4);
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->value, 8);
        *out = (float)d;
    } else {
        return SA_ERR_TYPE;
    }
    return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    if (kv->type != GGUF_TYPE_BOOL) return SA_ERR_TYPE;
    *out = kv->value[0] != 0;
    return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    if (kv->type != GGUF_TYPE_STRING) return SA_ERR_TYPE;
    memcpy(&out->len, kv->value, 8);
    out->data = (const char *)kv->value + 8;
    return 0;
}

int gguf_get_cstr(const struct gguf *g, const char *key, char *buf, size_t cap)
{
    struct gguf_str s;
    int rc = gguf_get_str(g, key, &s);
    if (rc) return rc;
    if (cap == 0) return SA_ERR_INVALID_ARG; /* cap - 1 below would wrap */
    if (memchr(s.data, 0, (size_t)s.len)) return SA_ERR_INVALID_ARG; /* "llama\0x" must not compare as "llama" */
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.data, n);
    buf[n] = 0;
    return 0;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type elem_type, const void **data,
                 uint64_t *n)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != elem_type) return SA_ERR_TYPE;
    *data = kv->value;
    *n = kv->arr_n;
    return 0;
}

int gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i, struct gguf_str *out)
{
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return SA_ERR_NOT_FOUND;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING) return SA_ERR_TYPE;
    if (i >= kv->arr_n) return SA_ERR_RANGE;
    const uint8_t *p = kv->value + kv->str_offsets[i];
    memcpy(&out->len, p, 8);
    out->data = (const char *)p + 8;
    return 0;
}

float gguf_arr_f32(const void *data, uint64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)data + i * 4, 4);
    return v;
}

int32_t gguf_arr_i32(const void *data, uint64_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)data + i * 4, 4);
    return v;
}

uint32_t gguf_arr_u32(const void *data, uint64_t i)
{
    uint32_t v;
    memcpy(&v, (const uint8_t *)data + i * 4, 4);
    return v;
}

const struct gguf_tensor *gguf_tensor(const struct gguf *g, uint64_t idx) { return &g->tensors[idx]; }

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensor_names[i], name) == 0) return &g->tensors[i];
    return NULL;
}
