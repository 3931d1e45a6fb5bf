/*
 * gguf.h - GGUF v2/v3 reader over a read-only memory map.
 *
 * File format (all integers little-endian):
 *
 *   u32  magic "GGUF"            u32 version (2 or 3)
 *   u64  n_tensors               u64 n_kv
 *   n_kv x { str key; u32 type; value }
 *   n_tensors x { str name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type; u64 offset }
 *   padding to general.alignment (u32 key, default 32)
 *   tensor data; tensor i starts at data_start + offset_i (aligned)
 *
 *   str   = u64 len, len bytes (no terminator)
 *   value = scalar of the type, a str, or an array: u32 elem_type, u64 n, n elems
 *
 * Every count, length, offset, dimension and type is validated against the
 * bytes left in the file with overflow-checked arithmetic before it is used
 * (RELIABILITY.md A1-A6). A bad file makes gguf_open_* return SA_ERR_BAD_MODEL
 * with one message naming the field, e.g.
 *   "tensor 'blk.0.attn_q.weight': offset+size 1234 exceeds file size 1000".
 * Nothing here aborts on file bytes.
 *
 * Ownership: struct gguf owns the mapping (open_file) or borrows the caller's
 * buffer (open_memory, which must outlive it). All strings and data pointers
 * returned point into that memory and are NOT NUL-terminated unless said so.
 * A struct gguf is immutable after open and may be read from any thread.
 */
#ifndef SA_GGUF_H
#define SA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* Hard caps (RELIABILITY.md A1). */
#define GGUF_MAX_TENSORS 65536u
#define GGUF_MAX_KV 65536u
#define GGUF_MAX_STRING (1u << 20)
#define GGUF_MAX_ARRAY (1u << 24)
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NE (INT64_C(1) << 31)
#define GGUF_MAX_ALIGNMENT (1u << 20)

struct gguf_str {
    const char *data; /* into the file, not NUL-terminated */
    uint64_t len;
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused = 1 */
    uint32_t type;             /* enum quant_type (ggml numbering), validated supported */
    uint64_t offset;           /* relative to the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const void *data; /* into the file */
};

struct gguf;

/* Open and validate a file. On error *out is NULL, msg (if non-NULL) holds a
 * one-line reason naming the field, and a negative SA_ERR_* is returned. */
int gguf_open_file(const char *path, struct gguf **out, char *msg, size_t msg_len);
/* Same over caller memory (borrowed; must outlive the result). Used by fuzzers. */
int gguf_open_memory(const void *data, size_t size, struct gguf **out, char *msg, size_t msg_len);
/* Accepts NULL. */
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
size_t gguf_file_size(const struct gguf *g);
uint32_t gguf_alignment(const struct gguf *g);
uint64_t gguf_data_offset(const struct gguf *g);
const uint8_t *gguf_base(const struct gguf *g);

/* ---- key/value metadata ---- */
uint64_t gguf_n_kv(const struct gguf *g);
/* Index of a key, or -1. */
int64_t gguf_find_key(const struct gguf *g, const char *key);
struct gguf_str gguf_kv_key(const struct gguf *g, uint64_t idx);
enum gguf_type gguf_kv_type(const struct gguf *g, uint64_t idx);
/* For arrays: element type and count (0 / GGUF_TYPE_COUNT for non-arrays). */
enum gguf_type gguf_kv_arr_type(const struct gguf *g, uint64_t idx);
uint64_t gguf_kv_arr_n(const struct gguf *g, uint64_t idx);
/* Raw serialized bytes of the whole entry (key, type, value), for copying
 * metadata into another file (the random-weight writer does this). */
void gguf_kv_raw(const struct gguf *g, uint64_t idx, const uint8_t **ptr, size_t *len);

/* Typed getters: 0 on success, SA_ERR_NOT_FOUND if the key is absent,
 * SA_ERR_TYPE if the stored type differs. Integer getters accept any integer
 * type whose value fits the requested one (else SA_ERR_RANGE). */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out);
int gguf_get_f32(const struct gguf *g, const char *key, float *out);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out);
/* Copy a string value into buf as a NUL-terminated string (truncated to cap-1).
 * SA_ERR_INVALID_ARG if the value contains a NUL byte (it could compare equal to
 * a fixed name it is not). Keys and tensor names never contain one (checked at open). */
int gguf_get_cstr(const struct gguf *g, const char *key, char *buf, size_t cap);

/* Arrays. The element type must match exactly; *n receives the count.
 * Returned pointers are into the file and may be unaligned: read elements
 * with memcpy or the gguf_arr_* helpers. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type elem_type,
                 const void **data, uint64_t *n);
/* Element i of a string array (bounds-checked by the caller against n). */
int gguf_get_arr_str(const struct gguf *g, const char *key, uint64_t i, struct gguf_str *out);
float gguf_arr_f32(const void *data, uint64_t i);
int32_t gguf_arr_i32(const void *data, uint64_t i);
uint32_t gguf_arr_u32(const void *data, uint64_t i);

/* ---- tensors ---- */
uint64_t gguf_n_tensors(const struct gguf *g);
const struct gguf_tensor *gguf_tensor(const struct gguf *g, uint64_t idx);
/* NULL if absent. name is NUL-terminated. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

const char *gguf_type_name(enum gguf_type t);

#endif
