/*
 * quant.h - tensor element types: block layouts, row dequantisation, dot products.
 *
 * Numbering and block layouts are llama.cpp's (ggml.h), so GGUF files from its
 * converters load unchanged:
 *
 *   F32   4 bytes / element
 *   F16   2 bytes / element, IEEE half
 *   BF16  2 bytes / element, upper half of an IEEE float
 *   Q8_0  blocks of 32: { f16 d; int8 qs[32]; }            x = d * qs[i]        (34 bytes)
 *   Q4_0  blocks of 32: { f16 d; u8 qs[16]; }              x = d * (nib - 8)    (18 bytes)
 *         element i < 16 is the low nibble of qs[i], element i + 16 the high nibble.
 *
 * The dot-product kernels for Q8_0 and Q4_0 take the activation vector already
 * quantised to Q8_0 (quant_quantize_row_q8_0), as llama.cpp does, so the inner
 * loop is an integer multiply-add. Every kernel has a plain-C reference
 * (quant_*_ref) the tests compare against. All functions are pure and
 * thread-safe.
 */
#ifndef SA_QUANT_H
#define SA_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum quant_type {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q8_0 = 8,
    QUANT_BF16 = 30,
};

#define QUANT_BLOCK 32

struct quant_block_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t qs[QUANT_BLOCK];
};

struct quant_block_q4_0 {
    uint16_t d;
    uint8_t qs[QUANT_BLOCK / 2];
};

/* true if t is a supported type; block size (elements) and bytes per block. */
bool quant_type_supported(uint32_t t);
uint32_t quant_block_size(enum quant_type t);
uint32_t quant_block_bytes(enum quant_type t);
const char *quant_type_name(uint32_t t);
/* Bytes of a row of n elements (n must be a multiple of the block size). */
size_t quant_row_bytes(enum quant_type t, size_t n);

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

/* Dequantise n elements of a row of type t into out. */
void quant_dequantize_row(enum quant_type t, const void *row, float *out, size_t n);

/* true if every block scale of n_elements elements of type t is finite (Q8_0, Q4_0:
 * each block's f16 d; types without scales: always true). Cheap: one read per block,
 * done for every weight at load. */
bool quant_scales_finite(enum quant_type t, const void *data, size_t n_elements);
/* true if every element of the tensor dequantises to a finite value (a full pass:
 * check-model --full). buf is caller scratch of buf_n >= 256 floats (whole multiples of
 * 256 are used); on false *first_bad (if not NULL) is the first bad element. */
bool quant_values_finite(enum quant_type t, const void *data, size_t n_elements, float *buf, size_t buf_n,
                         size_t *first_bad);

/* Quantise n floats into a row of type t (F32, F16, BF16, Q8_0, Q4_0).
 * n must be a multiple of 32 for the block types. */
void quant_quantize_row(enum quant_type t, const float *x, void *out, size_t n);

/* Type the activation vector must be converted to before quant_dot():
 * F32 for F32/F16/BF16 weights, Q8_0 for Q8_0 and Q4_0. */
enum quant_type quant_vec_dot_type(enum quant_type t);

/* Dot product of one weight row (type t) with the activation row y already in
 * quant_vec_dot_type(t). n elements. Optimised path (AVX2 where built). */
float quant_dot(enum quant_type t, const void *row, const void *y, size_t n);
/* The same weight row against T activation rows at once (batched decode):
 * out[k * out_stride] = quant_dot(t, row, ys + k * y_stride, n) for k < T.
 * F32 and F16 rows are read once for 2 activation rows at a time, with the
 * same summation order as quant_dot, so the results are bit-identical. */
void quant_dot_multi(enum quant_type t, const void *row, const void *ys, size_t y_stride, size_t T, size_t n,
                     float *out, size_t out_stride);
/* Plain-C reference of the same, for tests. */
float quant_dot_ref(enum quant_type t, const void *row, const void *y, size_t n);

/* Bytes needed to hold an activation vector of n floats in quant_vec_dot_type(t). */
size_t quant_vec_bytes(enum quant_type t, size_t n);
/* Convert activations into quant_vec_dot_type(t); out has quant_vec_bytes(t, n) bytes. */
void quant_prepare_vec(enum quant_type t, const float *x, void *out, size_t n);

#endif
