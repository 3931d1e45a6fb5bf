/*
 * safetensors.h - reader for Hugging Face .safetensors files over a
 * read-only memory map.
 *
 * File format (https://github.com/huggingface/safetensors, "Format"):
 *
 *   u64  N                      little-endian length of the JSON header
 *   N    bytes of UTF-8 JSON    an object; may be padded with trailing spaces
 *   the data section            the rest of the file
 *
 *   header = { "__metadata__": { string: string, ... },     (optional)
 *              "<tensor name>": { "dtype": "F32" | "F16" | "BF16" | ...,
 *                                 "shape": [d0, d1, ...],    (row-major, may be [])
 *                                 "data_offsets": [begin, end] }, ... }
 *
 *   begin/end are byte offsets relative to the start of the data section.
 *
 * Validation (the Rust reference implementation's rules; RELIABILITY.md
 * A1-A6): N is bounded by the file and by SAFETENSORS_MAX_HEADER; the header
 * must be a JSON object without duplicate keys; each tensor needs a known
 * dtype, a shape of at most SAFETENSORS_MAX_DIMS non-negative integers whose
 * element count does not overflow, and data_offsets with begin <= end; the
 * shape's byte count (overflow-checked) must equal end - begin; the tensors,
 * sorted by begin, must tile the data section exactly (no gap, no overlap,
 * last end = data section size). A bad file makes safetensors_open_* return
 * SA_ERR_BAD_MODEL with one message naming the field, e.g.
 *   "safetensors tensor 'model.norm.weight': data_offsets [0, 516]: shape [128] F32 needs 512 bytes".
 * Nothing here aborts on file bytes.
 *
 * jansson is used here (and in hf.c / tokenizer_hf.c) only to read the model
 * file formats that are JSON; the rest of the engine has no JSON.
 *
 * Ownership: struct safetensors owns the mapping (open_file) or borrows the
 * caller's buffer (open_memory, which must outlive it); tensor names are
 * NUL-terminated copies it owns. Tensor data pointers point into the mapping
 * and need not be aligned to the element size. Immutable after open; may be
 * read from any thread.
 */
#ifndef SA_SAFETENSORS_H
#define SA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_HEADER (100u << 20) /* the Rust crate's limit */
#define SAFETENSORS_MAX_TENSORS 65536u
#define SAFETENSORS_MAX_DIMS 8

enum safetensors_dtype {
    SAFETENSORS_BOOL,
    SAFETENSORS_U8,
    SAFETENSORS_I8,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_I16,
    SAFETENSORS_U16,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_I32,
    SAFETENSORS_U32,
    SAFETENSORS_F32,
    SAFETENSORS_I64,
    SAFETENSORS_U64,
    SAFETENSORS_F64,
    SAFETENSORS_DTYPE_COUNT
};

struct safetensors_tensor {
    char *name;                              /* NUL-terminated */
    enum safetensors_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[SAFETENSORS_MAX_DIMS];    /* row-major: shape[n_dims-1] varies fastest */
    uint64_t n_elements;                     /* product of shape (1 for []) */
    uint64_t offset;                         /* begin, relative to the data section */
    uint64_t n_bytes;                        /* end - begin */
    const void *data;                        /* data section + begin */
};

struct safetensors;

/* Open path (mmap) or a caller's buffer. On error *out is NULL, the return is
 * SA_ERR_BAD_MODEL (bad bytes), SA_ERR_IO / SA_ERR_NOT_FOUND (the file) or
 * SA_ERR_NOMEM, and msg (if given) names the field. */
int safetensors_open_file(const char *path, struct safetensors **out, char *msg, size_t msg_len);
int safetensors_open_memory(const void *data, size_t len, struct safetensors **out, char *msg, size_t msg_len);
void safetensors_close(struct safetensors *st); /* accepts NULL */

size_t safetensors_n_tensors(const struct safetensors *st);
/* Tensors in file order (sorted by begin offset); NULL if i is out of range. */
const struct safetensors_tensor *safetensors_tensor(const struct safetensors *st, size_t i);
/* By exact name; NULL if absent. */
const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name);

/* "F32", "BF16", ...; "?" for an out-of-range value. Bytes per element. */
const char *safetensors_dtype_name(enum safetensors_dtype t);
uint32_t safetensors_dtype_size(enum safetensors_dtype t);

#endif
