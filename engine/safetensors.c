/*
 * safetensors.c - validated .safetensors reader (format and rules in
 * safetensors.h). The JSON header is parsed with jansson into a tensor
 * table; every number from the file is range-checked before arithmetic.
 */
#define _DEFAULT_SOURCE
#include "safetensors.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define fail(msg, msg_len, ...) sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, __VA_ARGS__)

struct safetensors {
    struct safetensors_tensor *tensors; /* [n], sorted by offset */
    size_t n;
    void *map_addr; /* non-NULL when we own an mmap */
    size_t map_len;
};

static const struct {
    const char *name;
    uint32_t size;
} dtypes[SAFETENSORS_DTYPE_COUNT] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_I8] = {"I8", 1},           [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1}, [SAFETENSORS_I16] = {"I16", 2},
    [SAFETENSORS_U16] = {"U16", 2},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_I32] = {"I32", 4},
    [SAFETENSORS_U32] = {"U32", 4},         [SAFETENSORS_F32] = {"F32", 4},
    [SAFETENSORS_I64] = {"I64", 8},         [SAFETENSORS_U64] = {"U64", 8},
    [SAFETENSORS_F64] = {"F64", 8},
};

const char *safetensors_dtype_name(enum safetensors_dtype t)
{
    return (unsigned)t < SAFETENSORS_DTYPE_COUNT ? dtypes[t].name : "?";
}

uint32_t safetensors_dtype_size(enum safetensors_dtype t)
{
    return (unsigned)t < SAFETENSORS_DTYPE_COUNT ? dtypes[t].size : 0;
}

/* Printable, bounded rendering of a name from the file for messages. */
static const char *show(char dst[100], const char *s)
{
    size_t k = 0;
    for (size_t i = 0; s[i] && k < 90; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\') dst[k++] = (char)c;
        else k += (size_t)snprintf(dst + k, 100 - k, "\\x%02X", c);
    }
    if (k >= 90) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = 0;
    return dst;
}

/* A JSON integer in [0, 2^63): the offsets and dimensions. */
static bool json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

static int parse_tensor(const char *name, json_t *obj, struct safetensors_tensor *t, char *msg, size_t msg_len)
{
    char nb[100];
    show(nb, name);
    if (!json_is_object(obj)) return fail(msg, msg_len, "safetensors tensor '%s': not a JSON object", nb);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets")) {
            char kb[100];
            return fail(msg, msg_len, "safetensors tensor '%s': unknown field '%s'", nb, show(kb, key));
        }
    }
    json_t *dt = json_object_get(obj, "dtype");
    if (!json_is_string(dt)) return fail(msg, msg_len, "safetensors tensor '%s': dtype: missing or not a string", nb);
    int found = -1;
    for (int i = 0; i < SAFETENSORS_DTYPE_COUNT; i++)
        if (strcmp(json_string_value(dt), dtypes[i].name) == 0) found = i;
    if (found < 0) {
        char db[100];
        return fail(msg, msg_len, "safetensors tensor '%s': dtype: unknown dtype '%s'", nb,
                    show(db, json_string_value(dt)));
    }
    t->dtype = (enum safetensors_dtype)found;

    json_t *shape = json_object_get(obj, "shape");
    if (!json_is_array(shape)) return fail(msg, msg_len, "safetensors tensor '%s': shape: missing or not an array", nb);
    size_t nd = json_array_size(shape);
    if (nd > SAFETENSORS_MAX_DIMS)
        return fail(msg, msg_len, "safetensors tensor '%s': shape: %zu dimensions (at most %u)", nb, nd,
                    SAFETENSORS_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t n_el = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(json_array_get(shape, i), &d))
            return fail(msg, msg_len, "safetensors tensor '%s': shape[%zu]: not a non-negative integer", nb, i);
        t->shape[i] = d;
        if (d && n_el > UINT64_MAX / d)
            return fail(msg, msg_len, "safetensors tensor '%s': shape: element count overflows", nb);
        n_el *= d;
    }
    t->n_elements = n_el;
    uint64_t es = dtypes[t->dtype].size;
    if (n_el > UINT64_MAX / es)
        return fail(msg, msg_len, "safetensors tensor '%s': shape: byte count overflows", nb);
    uint64_t need = n_el * es;

    json_t *offs = json_object_get(obj, "data_offsets");
    uint64_t b, e;
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return fail(msg, msg_len, "safetensors tensor '%s': data_offsets: missing or not [begin, end]", nb);
    if (!json_u64(json_array_get(offs, 0), &b) || !json_u64(json_array_get(offs, 1), &e))
        return fail(msg, msg_len, "safetensors tensor '%s': data_offsets: not non-negative integers", nb);
    if (e < b)
        return fail(msg, msg_len, "safetensors tensor '%s': data_offsets: end %llu < begin %llu", nb,
                    (unsigned long long)e, (unsigned long long)b);
    if (e - b != need) {
        char sb[160];
        size_t k = 0;
        sb[0] = 0;
        for (uint32_t i = 0; i < t->n_dims && k < 120; i++)
            k += (size_t)snprintf(sb + k, sizeof sb - k, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
        return fail(msg, msg_len, "safetensors tensor '%s': data_offsets [%llu, %llu]: shape [%s] %s needs %llu bytes",
                    nb, (unsigned long long)b, (unsigned long long)e, sb, dtypes[t->dtype].name,
                    (unsigned long long)need);
    }
    t->offset = b;
    t->n_bytes = e - b;
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const struct safetensors_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    /* equal begins: only zero-size tensors can share one; order by size then name */
    if (x->n_bytes != y->n_bytes) return x->n_bytes < y->n_bytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int parse(struct safetensors *st, const unsigned char *d, size_t len, char *msg, size_t msg_len)
{
    if (len < 8) return fail(msg, msg_len, "safetensors header length: file is %zu bytes, shorter than 8", len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | d[i];
    if (n > len - 8)
        return fail(msg, msg_len, "safetensors header length: %llu exceeds the %zu bytes after it",
                    (unsigned long long)n, len - 8);
    if (n > SAFETENSORS_MAX_HEADER)
        return fail(msg, msg_len, "safetensors header length: %llu exceeds the limit %u", (unsigned long long)n,
                    SAFETENSORS_MAX_HEADER);
    if (n < 2 || d[8] != '{') return fail(msg, msg_len, "safetensors header: does not start with '{'");
    const unsigned char *data = d + 8 + n;
    uint64_t data_len = len - 8 - n;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)d + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char eb[100];
        return fail(msg, msg_len, "safetensors header: invalid JSON at byte %d: %s", jerr.position,
                    show(eb, jerr.text));
    }
    int rc = 0;
    if (!json_is_object(root)) {
        rc = fail(msg, msg_len, "safetensors header: not a JSON object");
        goto out;
    }
    size_t n_obj = json_object_size(root);
    if (n_obj > SAFETENSORS_MAX_TENSORS + 1) {
        rc = fail(msg, msg_len, "safetensors header: %zu entries (at most %u tensors)", n_obj, SAFETENSORS_MAX_TENSORS);
        goto out;
    }
    st->tensors = calloc(n_obj ? n_obj : 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = sa_errf(SA_ERR_NOMEM, msg, msg_len, "safetensors header: out of memory");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                rc = fail(msg, msg_len, "safetensors __metadata__: not a JSON object");
                goto out;
            }
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    char kb[100];
                    rc = fail(msg, msg_len, "safetensors __metadata__.%s: not a string", show(kb, mk));
                    goto out;
                }
            }
            continue;
        }
        struct safetensors_tensor *t = &st->tensors[st->n];
        t->name = strdup(key);
        if (!t->name) {
            rc = sa_errf(SA_ERR_NOMEM, msg, msg_len, "safetensors header: out of memory");
            goto out;
        }
        st->n++;
        if ((rc = parse_tensor(key, val, t, msg, msg_len))) goto out;
    }
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < st->n; i++) {
        struct safetensors_tensor *t = &st->tensors[i];
        char nb[100];
        if (t->offset != pos) {
            rc = fail(msg, msg_len, "safetensors tensor '%s': data_offsets begin %llu, expected %llu (%s)",
                      show(nb, t->name), (unsigned long long)t->offset, (unsigned long long)pos,
                      t->offset < pos ? "overlaps the previous tensor" : "gap after the previous tensor");
            goto out;
        }
        if (t->n_bytes > data_len - pos) {
            rc = fail(msg, msg_len, "safetensors tensor '%s': data_offsets end %llu exceeds the data section (%llu bytes)",
                      show(nb, t->name), (unsigned long long)(t->offset + t->n_bytes), (unsigned long long)data_len);
            goto out;
        }
        pos += t->n_bytes;
        t->data = data + t->offset;
    }
    if (pos != data_len)
        rc = fail(msg, msg_len, "safetensors data_offsets: tensors cover %llu bytes, the data section has %llu",
                  (unsigned long long)pos, (unsigned long long)data_len);
out:
    json_decref(root);
    return rc;
}

int safetensors_open_memory(const void *data, size_t len, struct safetensors **out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!out) return SA_ERR_INVALID_ARG;
    *out = NULL;
    if (!data && len) return SA_ERR_INVALID_ARG;
    struct safetensors *st = calloc(1, sizeof *st);
    if (!st) return SA_ERR_NOMEM;
    int rc = parse(st, data ? data : (const void *)"", len, msg, msg_len);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int safetensors_open_file(const char *path, struct safetensors **out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!out || !path) return SA_ERR_INVALID_ARG;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sa_errf(e == ENOENT ? SA_ERR_NOT_FOUND : SA_ERR_IO, msg, msg_len, "%s: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sa_errf(SA_ERR_IO, msg, msg_len, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *p = NULL;
    if (len) {
        p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sa_errf(SA_ERR_IO, msg, msg_len, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    struct safetensors *st;
    int rc = safetensors_open_memory(p, len, &st, msg, msg_len);
    if (rc) {
        if (p) munmap(p, len);
        return rc;
    }
    st->map_addr = p;
    st->map_len = len;
    *out = st;
    return 0;
}

void safetensors_close(struct safetensors *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    if (st->map_addr) munmap(st->map_addr, st->map_len);
    free(st);
}

size_t safetensors_n_tensors(const struct safetensors *st) { return st->n; }

const struct safetensors_tensor *safetensors_tensor(const struct safetensors *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}
