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
 *   IQ4_NL blocks of 32, as Q4_0 but the nibble indexes a fixed non-linear table
 *         (kvalues: -127 ... 113): x = d * kvalues[nib]                            (18 bytes)
 *
 * K-quants (ggml's k_quants): super-blocks of QUANT_K = 256 elements with
 * per-sub-block scales, packed exactly as ggml packs them (struct layouts
 * below; ggml-common.h's block_qN_K). A row length must be a multiple of 256.
 *   Q2_K  16 sub-blocks of 16: 4-bit scale and 4-bit min per sub-block, f16 d/dmin;
 *         x = d * sc * q - dmin * m, q in 0..3                                    (84 bytes)
 *   Q3_K  16 sub-blocks of 16: 6-bit signed scales (12 bytes), q = 2 low bits + 1
 *         high bit (hmask); x = d * (sc - 32) * (q - 4)                           (110 bytes)
 *   Q4_K  8 sub-blocks of 32: 6-bit scale and min (12 bytes, get_scale_min_k4
 *         packing); x = d * sc * q - dmin * m, q in 0..15                         (144 bytes)
 *   Q5_K  as Q4_K with a fifth bit per element in qh                            (176 bytes)
 *   Q6_K  16 sub-blocks of 16: int8 scales, q = 4 low bits (ql) + 2 high (qh);
 *         x = d * sc * (q - 32)                                                   (210 bytes)
 *   IQ4_XS 8 sub-blocks of 32: 6-bit scales (4 low bits in scales_l, 2 high in
 *         scales_h); x = d * (ls - 32) * kvalues[nib]                             (136 bytes)
 *   Q8_K  the activation format of the K-quant dots: float d, int8 qs[256],
 *         int16 bsums[16] (sums of 16 consecutive qs). Not a weight type.
 *
 * quant_dequantize_row reproduces ggml's to_float of every type bit for bit
 * (tests/unit/test_kquant.c checks it against llama.cpp's dequantised files).
 *
 * The dot-product kernels for the block types take the activation vector
 * already quantised (quant_prepare_vec): to Q8_0 for Q8_0, Q4_0 and IQ4_NL, to
 * Q8_K for the K-quants and IQ4_XS, as llama.cpp does, so the inner loop is an
 * integer multiply-add. Every kernel has a plain-C reference (quant_dot_ref)
 * the tests compare against. The SIMD level is chosen at run time among those
 * compiled in (AVX2; AVX-512 VNNI where -march has it and the CPU reports it);
 * the environment variable SASERVE_QUANT_ISA=avx2 (or =scalar) forces a
 * narrower path, read once on first use. All functions are pure and
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
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15, /* activations only: not accepted as a tensor type */
    QUANT_IQ4_NL = 20,
    QUANT_IQ4_XS = 23,
    QUANT_BF16 = 30,
};

#define QUANT_BLOCK 32
#define QUANT_K 256

struct quant_block_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t qs[QUANT_BLOCK];
};

struct quant_block_q4_0 {
    uint16_t d;
    uint8_t qs[QUANT_BLOCK / 2];
};

struct quant_block_q2_k {
    uint8_t scales[QUANT_K / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[QUANT_K / 4];
    uint16_t d, dmin;
};

struct quant_block_q3_k {
    uint8_t hmask[QUANT_K / 8];
    uint8_t qs[QUANT_K / 4];
    uint8_t scales[12];
    uint16_t d;
};

struct quant_block_q4_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QUANT_K / 2];
};

struct quant_block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QUANT_K / 8];
    uint8_t qs[QUANT_K / 2];
};

struct quant_block_q6_k {
    uint8_t ql[QUANT_K / 2];
    uint8_t qh[QUANT_K / 4];
    int8_t scales[QUANT_K / 16];
    uint16_t d;
};

struct quant_block_q8_k {
    float d;
    int8_t qs[QUANT_K];
    int16_t bsums[QUANT_K / 16];
};

struct quant_block_iq4_nl {
    uint16_t d;
    uint8_t qs[QUANT_BLOCK / 2];
};

struct quant_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QUANT_K / 64];
    uint8_t qs[QUANT_K / 2];
};

/* The non-linear 4-bit grid of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl). */
extern const int8_t quant_iq4nl_values[16];

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

/* true if every element of the tensor dequantises to a finite value (a full pass:
 * check-model --full). buf is caller scratch of buf_n >= 256 floats (whole multiples of
 * 256 are used); on false *first_bad (if not NULL) is the first bad element. */
bool quant_values_finite(enum quant_type t, const void *data, size_t n_elements, float *buf, size_t buf_n,
                         size_t *first_bad);

/* Quantise n floats into a row of type t (every type above, Q8_K included).
 * n must be a multiple of the block size. */
void quant_quantize_row(enum quant_type t, const float *x, void *out, size_t n);

/* Type the activation vector must be converted to before quant_dot():
 * F32 for F32/F16/BF16 weights, Q8_0 for Q8_0, Q4_0 and IQ4_NL, Q8_K for
 * Q2_K..Q6_K and IQ4_XS. */
enum quant_type quant_vec_dot_type(enum quant_type t);

/* Dot product of one weight row (type t) with the activation row y already in
 * quant_vec_dot_type(t). n elements. Optimised path (AVX2 where built). */
float quant_dot(enum quant_type t, const void *row, const void *y, size_t n);
/* The same weight row against T activation rows at once (batched decode):
 * out[k * out_stride] = quant_dot(t, row, ys + k * y_stride, n) for k < T.
 * F32 and F16 rows are read once for 2 activation rows at a time, and K-quant
 * / IQ4_XS super-blocks unpacked once for up to 16 rows, with the same
 * summation order as quant_dot, so the results are bit-identical; the other
 * types loop over the rows. */
void quant_dot_multi(enum quant_type t, const void *row, const void *ys, size_t y_stride, size_t T, size_t n,
                     float *out, size_t out_stride);
/* Plain-C reference of the same, for tests. */
float quant_dot_ref(enum quant_type t, const void *row, const void *y, size_t n);

/* SIMD levels of the dot kernels. quant_isa_max: the widest compiled in and
 * reported by the CPU; quant_isa_active: what quant_dot uses (the max, or
 * narrower when SASERVE_QUANT_ISA says so). quant_dot_isa runs the kernel of
 * one level (a level above quant_isa_max falls back to the widest available),
 * so tests can check every level in one process. */
enum quant_isa {
    QUANT_ISA_SCALAR = 0,
    QUANT_ISA_AVX2 = 1,
    QUANT_ISA_AVX512 = 2,
};
enum quant_isa quant_isa_max(void);
enum quant_isa quant_isa_active(void);
const char *quant_isa_name(enum quant_isa isa);
float quant_dot_isa(enum quant_isa isa, enum quant_type t, const void *row, const void *y, size_t n);

/* Load-time check of the block scales of n_elements elements of type t
 * (n_elements a multiple of the block size): false if any f16 scale (d, and
 * dmin where the type has one) is NaN or infinite. Types without block scales
 * (F32, F16, BF16) return true: their values are not scales. */
bool quant_scales_finite(enum quant_type t, const void *data, size_t n_elements);

/* Bytes needed to hold an activation vector of n floats in quant_vec_dot_type(t). */
size_t quant_vec_bytes(enum quant_type t, size_t n);
/* Convert activations into quant_vec_dot_type(t); out has quant_vec_bytes(t, n) bytes. */
void quant_prepare_vec(enum quant_type t, const float *x, void *out, size_t n);

#endif
