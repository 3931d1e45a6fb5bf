/*
 * quant.c - tensor element types (see quant.h for layouts).
 *
 * The optimised kernels use AVX2/FMA/F16C when the compiler targets them
 * (the default build uses -march=native; the container image a portable
 * x86-64-v3 baseline). The *_ref functions are the plain-C definitions the
 * unit tests check the fast paths against.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QUANT_AVX2 1
#endif
/* 512-bit VNNI kernels for the quantised dots when the target has them
 * (-march=native on Zen 4/5, Ice Lake and later); two blocks per iteration. */
#if defined(QUANT_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define QUANT_AVX512 1
#endif

bool quant_type_supported(uint32_t t)
{
    return t == QUANT_F32 || t == QUANT_F16 || t == QUANT_BF16 || t == QUANT_Q8_0 || t == QUANT_Q4_0;
}

uint32_t quant_block_size(enum quant_type t)
{
    return (t == QUANT_Q8_0 || t == QUANT_Q4_0) ? QUANT_BLOCK : 1;
}

uint32_t quant_block_bytes(enum quant_type t)
{
    switch (t) {
    case QUANT_F32: return 4;
    case QUANT_F16: case QUANT_BF16: return 2;
    case QUANT_Q8_0: return sizeof(struct quant_block_q8_0);
    case QUANT_Q4_0: return sizeof(struct quant_block_q4_0);
    }
    return 0;
}

const char *quant_type_name(uint32_t t)
{
    switch (t) {
    case QUANT_F32: return "F32";
    case QUANT_F16: return "F16";
    case QUANT_BF16: return "BF16";
    case QUANT_Q8_0: return "Q8_0";
    case QUANT_Q4_0: return "Q4_0";
    case 3: return "Q4_1";
    case 6: return "Q5_0";
    case 7: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 12: return "Q4_K";
    case 13: return "Q5_K";
    case 14: return "Q6_K";
    default: return "unknown";
    }
}

size_t quant_row_bytes(enum quant_type t, size_t n)
{
    return n / quant_block_size(t) * quant_block_bytes(t);
}

/* ---- scalar conversions ---- */

static float f16_to_f32_soft(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

__attribute__((unused)) static uint16_t f32_to_f16_soft(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65536: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* subnormal or zero in f16 */
        float a;
        memcpy(&a, &absx, 4);
        /* scale so that the f16 subnormal unit (2^-24) becomes 1, round to nearest even */
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)lrintf(scaled);
        return (uint16_t)(sign | m);
    }
    /* normal: round mantissa to 10 bits, nearest even */
    uint32_t e = ((absx >> 23) - 127 + 15);
    uint32_t man = absx & 0x7fffff;
    uint32_t r = (e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float quant_f16_to_f32(uint16_t h)
{
#ifdef QUANT_AVX2
    return _cvtsh_ss(h);
#else
    return f16_to_f32_soft(h);
#endif
}

uint16_t quant_f32_to_f16(float f)
{
#ifdef QUANT_AVX2
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    return f32_to_f16_soft(f);
#endif
}

float quant_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);                                         /* nearest even */
    return (uint16_t)(x >> 16);
}

/* ---- rows ---- */

void quant_dequantize_row(enum quant_type t, const void *row, float *out, size_t n)
{
    switch (t) {
    case QUANT_F32:
        memcpy(out, row, n * sizeof(float));
        return;
    case QUANT_F16: {
        const uint16_t *h = row;
        size_t i = 0;
#ifdef QUANT_AVX2
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
        for (; i < n; i++) out[i] = quant_f16_to_f32(h[i]);
        return;
    }
    case QUANT_BF16: {
        const uint16_t *h = row;
        for (size_t i = 0; i < n; i++) out[i] = quant_bf16_to_f32(h[i]);
        return;
    }
    case QUANT_Q8_0: {
        const struct quant_block_q8_0 *b = row;
        for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
            float d = quant_f16_to_f32(b[k].d);
            for (int j = 0; j < QUANT_BLOCK; j++) out[k * QUANT_BLOCK + j] = d * (float)b[k].qs[j];
        }
        return;
    }
    case QUANT_Q4_0: {
        const struct quant_block_q4_0 *b = row;
        for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
            float d = quant_f16_to_f32(b[k].d);
            for (int j = 0; j < QUANT_BLOCK / 2; j++) {
                out[k * QUANT_BLOCK + j] = d * (float)((b[k].qs[j] & 0x0f) - 8);
                out[k * QUANT_BLOCK + j + 16] = d * (float)((b[k].qs[j] >> 4) - 8);
            }
        }
        return;
    }
    }
}

bool quant_scales_finite(enum quant_type t, const void *data, size_t n_elements)
{
    size_t nb = n_elements / QUANT_BLOCK;
    switch (t) {
    case QUANT_Q8_0:
        for (size_t i = 0; i < nb; i++)
            if (!isfinite(quant_f16_to_f32(((const struct quant_block_q8_0 *)data)[i].d))) return false;
        return true;
    case QUANT_Q4_0:
        for (size_t i = 0; i < nb; i++)
            if (!isfinite(quant_f16_to_f32(((const struct quant_block_q4_0 *)data)[i].d))) return false;
        return true;
    default: return true; /* no scales: F32, F16, BF16 values are checked by quant_values_finite */
    }
}

bool quant_values_finite(enum quant_type t, const void *data, size_t n_elements, float *buf, size_t buf_n,
                         size_t *first_bad)
{
    size_t step = buf_n / 256 * 256, bytes_per_block = quant_block_bytes(t); /* whole blocks of any type */
    size_t bs = quant_block_size(t);
    if (step == 0) return false;
    for (size_t i = 0; i < n_elements; i += step) {
        size_t n = n_elements - i < step ? n_elements - i : step;
        quant_dequantize_row(t, (const uint8_t *)data + i / bs * bytes_per_block, buf, n);
        for (size_t k = 0; k < n; k++)
            if (!isfinite(buf[k])) {
                if (first_bad) *first_bad = i + k;
                return false;
            }
    }
    return true;
}

static void quantize_q8_0(const float *x, struct quant_block_q8_0 *b, size_t n)
{
    for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
        const float *v = x + k * QUANT_BLOCK;
        float amax = 0;
        for (int j = 0; j < QUANT_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        b[k].d = quant_f32_to_f16(d);
        for (int j = 0; j < QUANT_BLOCK; j++) b[k].qs[j] = (int8_t)lrintf(v[j] * id);
    }
}

static void quantize_q4_0(const float *x, struct quant_block_q4_0 *b, size_t n)
{
    for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
        const float *v = x + k * QUANT_BLOCK;
        /* llama.cpp convention: the scale maps the signed absolute maximum to -8 */
        float amax = 0, max = 0;
        for (int j = 0; j < QUANT_BLOCK; j++)
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        float d = max / -8.0f;
        float id = d ? 1.0f / d : 0.0f;
        b[k].d = quant_f32_to_f16(d);
        for (int j = 0; j < QUANT_BLOCK / 2; j++) {
            int q0 = (int)(v[j] * id + 8.5f), q1 = (int)(v[j + 16] * id + 8.5f);
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
            b[k].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void quant_quantize_row(enum quant_type t, const float *x, void *out, size_t n)
{
    switch (t) {
    case QUANT_F32: memcpy(out, x, n * sizeof(float)); return;
    case QUANT_F16: {
        uint16_t *h = out;
        for (size_t i = 0; i < n; i++) h[i] = quant_f32_to_f16(x[i]);
        return;
    }
    case QUANT_BF16: {
        uint16_t *h = out;
        for (size_t i = 0; i < n; i++) h[i] = quant_f32_to_bf16(x[i]);
        return;
    }
    case QUANT_Q8_0: quantize_q8_0(x, out, n); return;
    case QUANT_Q4_0: quantize_q4_0(x, out, n); return;
    }
}

enum quant_type quant_vec_dot_type(enum quant_type t)
{
    return (t == QUANT_Q8_0 || t == QUANT_Q4_0) ? QUANT_Q8_0 : QUANT_F32;
}

size_t quant_vec_bytes(enum quant_type t, size_t n)
{
    return quant_row_bytes(quant_vec_dot_type(t), n);
}

void quant_prepare_vec(enum quant_type t, const float *x, void *out, size_t n)
{
    quant_quantize_row(quant_vec_dot_type(t), x, out, n);
}

/* ---- dot products: reference ---- */

float quant_dot_ref(enum quant_type t, const void *row, const void *y, size_t n)
{
    double sum = 0;
    switch (t) {
    case QUANT_F32: {
        const float *a = row, *b = y;
        for (size_t i = 0; i < n; i++) sum += (double)a[i] * b[i];
        break;
    }
    case QUANT_F16: {
        const uint16_t *a = row;
        const float *b = y;
        for (size_t i = 0; i < n; i++) sum += (double)f16_to_f32_soft(a[i]) * b[i];
        break;
    }
    case QUANT_BF16: {
        const uint16_t *a = row;
        const float *b = y;
        for (size_t i = 0; i < n; i++) sum += (double)quant_bf16_to_f32(a[i]) * b[i];
        break;
    }
    case QUANT_Q8_0: {
        const struct quant_block_q8_0 *a = row, *b = y;
        for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
            int s = 0;
            for (int j = 0; j < QUANT_BLOCK; j++) s += a[k].qs[j] * b[k].qs[j];
            sum += (double)f16_to_f32_soft(a[k].d) * f16_to_f32_soft(b[k].d) * s;
        }
        break;
    }
    case QUANT_Q4_0: {
        const struct quant_block_q4_0 *a = row;
        const struct quant_block_q8_0 *b = y;
        for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
            int s = 0;
            for (int j = 0; j < QUANT_BLOCK / 2; j++) {
                s += ((a[k].qs[j] & 0x0f) - 8) * b[k].qs[j];
                s += ((a[k].qs[j] >> 4) - 8) * b[k].qs[j + 16];
            }
            sum += (double)f16_to_f32_soft(a[k].d) * f16_to_f32_soft(b[k].d) * s;
        }
        break;
    }
    }
    return (float)sum;
}

/* ---- dot products: optimised ---- */

#ifdef QUANT_AVX2
static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* sum of 32 int8 products as 8 int32 lanes -> float lanes */
static inline __m256 dot_i8x32(__m256i a, __m256i b)
{
    __m256i ax = _mm256_sign_epi8(a, a); /* |a| */
    __m256i sy = _mm256_sign_epi8(b, a); /* b * sign(a) */
    __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p32);
}
#endif

#ifdef QUANT_AVX512
/* two scales in the halves of a 512-bit vector */
static inline __m512 scale2(float d0, float d1)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(d0)),
                                               _mm256_castps_pd(_mm256_set1_ps(d1)), 1));
}

static float dot_q4_0_avx512(const struct quant_block_q4_0 *a, const struct quant_block_q8_0 *b, size_t nb)
{
    const __m512i lowmask = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    size_t k = 0;
    for (; k + 4 <= nb; k += 4) {
        for (int h = 0; h < 2; h++) {
            size_t i = k + 2 * (size_t)h;
            __m128i r0 = _mm_loadu_si128((const __m128i *)a[i].qs), r1 = _mm_loadu_si128((const __m128i *)a[i + 1].qs);
            __m256i x0 = _mm256_set_m128i(_mm_srli_epi16(r0, 4), r0), x1 = _mm256_set_m128i(_mm_srli_epi16(r1, 4), r1);
            __m512i x = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1), lowmask);
            __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[i].qs)),
                                           _mm256_loadu_si256((const __m256i *)b[i + 1].qs), 1);
            /* sum (nib - 8) * y = sum nib * y - sum 8 * y (nibbles are unsigned, as dpbusd wants) */
            __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), x, y),
                                           _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, y));
            __m512 d = scale2(quant_f16_to_f32(a[i].d) * quant_f16_to_f32(b[i].d),
                              quant_f16_to_f32(a[i + 1].d) * quant_f16_to_f32(b[i + 1].d));
            if (h)
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc1);
            else
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc0);
        }
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; k < nb; k++) s += quant_dot_ref(QUANT_Q4_0, &a[k], &b[k], QUANT_BLOCK);
    return s;
}

static float dot_q8_0_avx512(const struct quant_block_q8_0 *a, const struct quant_block_q8_0 *b, size_t nb)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    size_t k = 0;
    for (; k + 4 <= nb; k += 4) {
        for (int h = 0; h < 2; h++) {
            size_t i = k + 2 * (size_t)h;
            __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[i].qs)),
                                           _mm256_loadu_si256((const __m256i *)a[i + 1].qs), 1);
            __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[i].qs)),
                                           _mm256_loadu_si256((const __m256i *)b[i + 1].qs), 1);
            /* signed x signed through dpbusd: |x| times y with the sign of x moved onto y */
            __mmask64 neg = _mm512_movepi8_mask(x);
            __m512i ys = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
            __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), ys);
            __m512 d = scale2(quant_f16_to_f32(a[i].d) * quant_f16_to_f32(b[i].d),
                              quant_f16_to_f32(a[i + 1].d) * quant_f16_to_f32(b[i + 1].d));
            if (h)
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc1);
            else
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc0);
        }
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; k < nb; k++) s += quant_dot_ref(QUANT_Q8_0, &a[k], &b[k], QUANT_BLOCK);
    return s;
}
#endif

float quant_dot(enum quant_type t, const void *row, const void *y, size_t n)
{
#ifdef QUANT_AVX512
    if (t == QUANT_Q4_0) return dot_q4_0_avx512(row, y, n / QUANT_BLOCK);
    if (t == QUANT_Q8_0) return dot_q8_0_avx512(row, y, n / QUANT_BLOCK);
#endif
#ifdef QUANT_AVX2
    switch (t) {
    case QUANT_F32: {
        const float *a = row, *b = y;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
        }
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }
    case QUANT_F16: {
        const uint16_t *a = row;
        const float *b = y;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m128i h0 = _mm_loadu_si128((const __m128i *)(a + i));
            __m128i h1 = _mm_loadu_si128((const __m128i *)(a + i + 8));
            __m128i h2 = _mm_loadu_si128((const __m128i *)(a + i + 16));
            __m128i h3 = _mm_loadu_si128((const __m128i *)(a + i + 24));
            s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(h0), _mm256_loadu_ps(b + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(h1), _mm256_loadu_ps(b + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(h2), _mm256_loadu_ps(b + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(h3), _mm256_loadu_ps(b + i + 24), s3);
        }
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < n; i++) s += quant_f16_to_f32(a[i]) * b[i];
        return s;
    }
    case QUANT_BF16: {
        const uint16_t *a = row;
        const float *b = y;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256i w0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i))), 16);
            __m256i w1 =
                _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i + 8))), 16);
            s0 = _mm256_fmadd_ps(_mm256_castsi256_ps(w0), _mm256_loadu_ps(b + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_castsi256_ps(w1), _mm256_loadu_ps(b + i + 8), s1);
        }
        float s = hsum256(_mm256_add_ps(s0, s1));
        for (; i < n; i++) s += quant_bf16_to_f32(a[i]) * b[i];
        return s;
    }
    case QUANT_Q8_0: {
        const struct quant_block_q8_0 *a = row, *b = y;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
        size_t nb = n / QUANT_BLOCK, k = 0;
        for (; k + 2 <= nb; k += 2) {
            __m256 d0 = _mm256_set1_ps(quant_f16_to_f32(a[k].d) * quant_f16_to_f32(b[k].d));
            __m256 d1 = _mm256_set1_ps(quant_f16_to_f32(a[k + 1].d) * quant_f16_to_f32(b[k + 1].d));
            __m256 p0 = dot_i8x32(_mm256_loadu_si256((const __m256i *)a[k].qs),
                                  _mm256_loadu_si256((const __m256i *)b[k].qs));
            __m256 p1 = dot_i8x32(_mm256_loadu_si256((const __m256i *)a[k + 1].qs),
                                  _mm256_loadu_si256((const __m256i *)b[k + 1].qs));
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);
            acc1 = _mm256_fmadd_ps(d1, p1, acc1);
        }
        for (; k < nb; k++) {
            __m256 d0 = _mm256_set1_ps(quant_f16_to_f32(a[k].d) * quant_f16_to_f32(b[k].d));
            __m256 p0 = dot_i8x32(_mm256_loadu_si256((const __m256i *)a[k].qs),
                                  _mm256_loadu_si256((const __m256i *)b[k].qs));
            acc0 = _mm256_fmadd_ps(d0, p0, acc0);
        }
        return hsum256(_mm256_add_ps(acc0, acc1));
    }
    case QUANT_Q4_0: {
        const struct quant_block_q4_0 *a = row;
        const struct quant_block_q8_0 *b = y;
        const __m256i lowmask = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
        size_t nb = n / QUANT_BLOCK;
        for (size_t k = 0; k < nb; k++) {
            __m128i raw = _mm_loadu_si128((const __m128i *)a[k].qs);
            __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            __m256i q = _mm256_sub_epi8(_mm256_and_si256(both, lowmask), eight);
            __m256 d = _mm256_set1_ps(quant_f16_to_f32(a[k].d) * quant_f16_to_f32(b[k].d));
            __m256 p = dot_i8x32(q, _mm256_loadu_si256((const __m256i *)b[k].qs));
            if (k & 1)
                acc1 = _mm256_fmadd_ps(d, p, acc1);
            else
                acc0 = _mm256_fmadd_ps(d, p, acc0);
        }
        return hsum256(_mm256_add_ps(acc0, acc1));
    }
    }
    return 0;
#else
    return quant_dot_ref(t, row, y, n);
#endif
}

/* ---- one row, several activation rows ---- */

#ifdef QUANT_AVX2
/* 8 weights of row i as floats (F32 or F16) */
static inline __m256 load8(enum quant_type t, const void *row, size_t i)
{
    if (t == QUANT_F32) return _mm256_loadu_ps((const float *)row + i);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}

/* 2 activation rows: each weight vector is loaded once and used twice. The
 * accumulation order is exactly quant_dot's (4 partial sums over steps of 32,
 * combined as (s0+s1)+(s2+s3), then the tail in order), so a batched decode
 * step gives bit-identical results to one sequence at a time. */
static void dot2_float(enum quant_type t, const void *row, const float *y0, const float *y1, size_t n, float *o0,
                       float *o1)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 w0 = load8(t, row, i), w1 = load8(t, row, i + 8), w2 = load8(t, row, i + 16), w3 = load8(t, row, i + 24);
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y0 + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y0 + i + 8), a1);
        a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(y0 + i + 16), a2);
        a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(y0 + i + 24), a3);
        b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y1 + i), b0);
        b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y1 + i + 8), b1);
        b2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(y1 + i + 16), b2);
        b3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(y1 + i + 24), b3);
    }
    float r0 = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    float r1 = hsum256(_mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
    for (; i < n; i++) {
        float w = t == QUANT_F32 ? ((const float *)row)[i] : quant_f16_to_f32(((const uint16_t *)row)[i]);
        r0 += w * y0[i];
        r1 += w * y1[i];
    }
    *o0 = r0;
    *o1 = r1;
}
#endif

void quant_dot_multi(enum quant_type t, const void *row, const void *ys, size_t y_stride, size_t T, size_t n,
                     float *out, size_t out_stride)
{
    size_t k = 0;
#ifdef QUANT_AVX2
    if (t == QUANT_F32 || t == QUANT_F16)
        for (; k + 2 <= T; k += 2)
            dot2_float(t, row, (const float *)((const char *)ys + k * y_stride),
                       (const float *)((const char *)ys + (k + 1) * y_stride), n, out + k * out_stride,
                       out + (k + 1) * out_stride);
#endif
    for (; k < T; k++) out[k * out_stride] = quant_dot(t, row, (const char *)ys + k * y_stride, n);
}
