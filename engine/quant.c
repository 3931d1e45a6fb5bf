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
#include <stdlib.h>
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
    switch (t) {
    case QUANT_F32: case QUANT_F16: case QUANT_BF16: case QUANT_Q8_0: case QUANT_Q4_0:
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K:
    case QUANT_IQ4_NL: case QUANT_IQ4_XS:
        return true;
    default:
        return false;
    }
}

uint32_t quant_block_size(enum quant_type t)
{
    switch (t) {
    case QUANT_Q8_0: case QUANT_Q4_0: case QUANT_IQ4_NL: return QUANT_BLOCK;
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K: case QUANT_Q8_K:
    case QUANT_IQ4_XS:
        return QUANT_K;
    default: return 1;
    }
}

uint32_t quant_block_bytes(enum quant_type t)
{
    switch (t) {
    case QUANT_F32: return 4;
    case QUANT_F16: case QUANT_BF16: return 2;
    case QUANT_Q8_0: return sizeof(struct quant_block_q8_0);
    case QUANT_Q4_0: return sizeof(struct quant_block_q4_0);
    case QUANT_Q2_K: return sizeof(struct quant_block_q2_k);
    case QUANT_Q3_K: return sizeof(struct quant_block_q3_k);
    case QUANT_Q4_K: return sizeof(struct quant_block_q4_k);
    case QUANT_Q5_K: return sizeof(struct quant_block_q5_k);
    case QUANT_Q6_K: return sizeof(struct quant_block_q6_k);
    case QUANT_Q8_K: return sizeof(struct quant_block_q8_k);
    case QUANT_IQ4_NL: return sizeof(struct quant_block_iq4_nl);
    case QUANT_IQ4_XS: return sizeof(struct quant_block_iq4_xs);
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
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
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

/* ---- K-quants and IQ4: scale unpacking and dequantisation ---- */

const int8_t quant_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

_Static_assert(sizeof(struct quant_block_q2_k) == 84, "Q2_K block");
_Static_assert(sizeof(struct quant_block_q3_k) == 110, "Q3_K block");
_Static_assert(sizeof(struct quant_block_q4_k) == 144, "Q4_K block");
_Static_assert(sizeof(struct quant_block_q5_k) == 176, "Q5_K block");
_Static_assert(sizeof(struct quant_block_q6_k) == 210, "Q6_K block");
_Static_assert(sizeof(struct quant_block_q8_k) == 292, "Q8_K block");
_Static_assert(sizeof(struct quant_block_iq4_nl) == 18, "IQ4_NL block");
_Static_assert(sizeof(struct quant_block_iq4_xs) == 136, "IQ4_XS block");

/* Scale and min of sub-block j (0..7) of Q4_K/Q5_K: 6 bits each in 12 bytes.
 * Sub-blocks 0-3 use the low 6 bits of bytes j (scale) and j+4 (min); 4-7
 * take their low 4 bits from byte j+4 (scale: low nibble, min: high nibble)
 * and their top 2 bits from the spare top bits of bytes j-4 and j. */
static inline void k4_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* The 16 signed scales of Q3_K (value - 32): low 4 bits from bytes 0-7 (low
 * nibble for scales 0-7, high nibble for 8-15), high 2 bits from bytes 8-11
 * (byte 8 + j%4, bit pair j/4). */
static inline void q3_k_scales(const uint8_t *s, int sc[16])
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
}

static inline int iq4_xs_scale(const struct quant_block_iq4_xs *b, int ib)
{
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* The dequantisers reproduce ggml's to_float bit for bit: the same float
 * operations in the same order (scale products first, then one multiply and
 * one subtract per element; no fused multiply-add, which the tests verify
 * against llama.cpp's dequantised files). */
static void dequant_q2_k(const struct quant_block_q2_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
        const uint8_t *q = b->qs;
        int is = 0;
        for (int h = 0; h < 2; h++, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; half++) {
                    int sc = b->scales[is++];
                    float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
    }
}

static void dequant_q3_k(const struct quant_block_q3_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d);
        int sc[16];
        q3_k_scales(b->scales, sc);
        const uint8_t *q = b->qs;
        int is = 0, m = 1;
        for (int h = 0; h < 2; h++, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                for (int half = 0; half < 2; half++) {
                    float dl = d * (float)sc[is++];
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - ((b->hmask[l] & m) ? 0 : 4));
                }
    }
}

static void dequant_q4_k(const struct quant_block_q4_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, m;
            k4_scale_min(j, b->scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            k4_scale_min(j + 1, b->scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_k(const struct quant_block_q5_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, m;
            k4_scale_min(j, b->scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            k4_scale_min(j + 1, b->scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            uint8_t u1 = (uint8_t)(1u << j), u2 = (uint8_t)(2u << j);
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0x0f) + (b->qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void dequant_q6_k(const struct quant_block_q6_k *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d);
        const uint8_t *ql = b->ql, *qh = b->qh;
        const int8_t *sc = b->scales;
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}

static void dequant_iq4_nl(const struct quant_block_iq4_nl *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++, y += 32) {
        float d = quant_f16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)quant_iq4nl_values[b->qs[j] & 0x0f];
            y[j + 16] = d * (float)quant_iq4nl_values[b->qs[j] >> 4];
        }
    }
}

static void dequant_iq4_xs(const struct quant_block_iq4_xs *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, b++) {
        float d = quant_f16_to_f32(b->d);
        const uint8_t *qs = b->qs;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            float dl = d * (float)iq4_xs_scale(b, ib);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)quant_iq4nl_values[qs[j] & 0x0f];
                y[j + 16] = dl * (float)quant_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* One super-block of a K-type (or IQ4_XS) as integers: element i is
 * d * sc[i / 16] * w[i] - dmin * mn[i / 16]. The plain-C dot products and the
 * SIMD kernels (through their own unpackers) compute sum_i x_i * y_i as
 * y.d * (d * sum_j sc[j] * sum(w * y.qs) - dmin * sum_j mn[j] * y.bsums[j]). */
struct kunpacked {
    int8_t w[QUANT_K];
    int32_t sc[16], mn[16];
    float d, dmin;
};

static void kunpack_ref(enum quant_type t, const void *blk, struct kunpacked *u)
{
    memset(u->mn, 0, sizeof u->mn);
    u->dmin = 0;
    switch (t) {
    case QUANT_Q2_K: {
        const struct quant_block_q2_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        u->dmin = quant_f16_to_f32(b->dmin);
        for (int j = 0; j < 16; j++) {
            u->sc[j] = b->scales[j] & 0x0f;
            u->mn[j] = b->scales[j] >> 4;
        }
        for (int i = 0; i < QUANT_K; i++) /* 128-halves, 4 shifts of 32 */
            u->w[i] = (int8_t)((b->qs[(i / 128) * 32 + i % 32] >> (2 * ((i % 128) / 32))) & 3);
        return;
    }
    case QUANT_Q3_K: {
        const struct quant_block_q3_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        int sc[16];
        q3_k_scales(b->scales, sc);
        for (int j = 0; j < 16; j++) u->sc[j] = sc[j];
        for (int i = 0; i < QUANT_K; i++) {
            int l = i % 32, shift = 2 * ((i % 128) / 32), bit = i / 32;
            int q = (b->qs[(i / 128) * 32 + l] >> shift) & 3;
            u->w[i] = (int8_t)(q - ((b->hmask[l] >> bit) & 1 ? 0 : 4));
        }
        return;
    }
    case QUANT_Q4_K: case QUANT_Q5_K: {
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t d, dmin;
        if (t == QUANT_Q4_K) {
            const struct quant_block_q4_k *b = blk;
            scales = b->scales, qs = b->qs, d = b->d, dmin = b->dmin;
        } else {
            const struct quant_block_q5_k *b = blk;
            scales = b->scales, qs = b->qs, qh = b->qh, d = b->d, dmin = b->dmin;
        }
        u->d = quant_f16_to_f32(d);
        u->dmin = quant_f16_to_f32(dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, scales, &sc, &m);
            u->sc[2 * j] = u->sc[2 * j + 1] = sc;
            u->mn[2 * j] = u->mn[2 * j + 1] = m;
        }
        for (int i = 0; i < QUANT_K; i++) {
            int j = i / 32, l = i % 32; /* sub-block j: nibble j%2 of qs[(j/2)*32 + l] */
            int q = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0f;
            if (qh) q += ((qh[l] >> j) & 1) << 4;
            u->w[i] = (int8_t)q;
        }
        return;
    }
    case QUANT_Q6_K: {
        const struct quant_block_q6_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        for (int j = 0; j < 16; j++) u->sc[j] = b->scales[j];
        for (int i = 0; i < QUANT_K; i++) {
            int h = i / 128, r = i % 128, part = r / 32, l = r % 32;
            uint8_t lo = b->ql[h * 64 + (part & 1) * 32 + l];
            int q = (part < 2 ? lo & 0x0f : lo >> 4) | (((b->qh[h * 32 + l] >> (2 * part)) & 3) << 4);
            u->w[i] = (int8_t)(q - 32);
        }
        return;
    }
    case QUANT_IQ4_XS: {
        const struct quant_block_iq4_xs *b = blk;
        u->d = quant_f16_to_f32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            u->sc[2 * ib] = u->sc[2 * ib + 1] = iq4_xs_scale(b, ib);
            for (int j = 0; j < 16; j++) {
                u->w[32 * ib + j] = quant_iq4nl_values[b->qs[16 * ib + j] & 0x0f];
                u->w[32 * ib + j + 16] = quant_iq4nl_values[b->qs[16 * ib + j] >> 4];
            }
        }
        return;
    }
    default: return;
    }
}

__attribute__((unused)) static bool is_ktype(enum quant_type t)
{
    return t == QUANT_Q2_K || t == QUANT_Q3_K || t == QUANT_Q4_K || t == QUANT_Q5_K || t == QUANT_Q6_K ||
           t == QUANT_IQ4_XS;
}

static double kdot_ref(enum quant_type t, const void *row, const struct quant_block_q8_k *y, size_t nb)
{
    double sum = 0;
    size_t bb = quant_block_bytes(t);
    struct kunpacked u;
    for (size_t k = 0; k < nb; k++) {
        kunpack_ref(t, (const char *)row + k * bb, &u);
        long long isum = 0, msum = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) s += u.w[i] * y[k].qs[i];
            isum += (long long)u.sc[j] * s;
            msum += (long long)u.mn[j] * y[k].bsums[j];
        }
        sum += (double)y[k].d * ((double)u.d * (double)isum - (double)u.dmin * (double)msum);
    }
    return sum;
}

static void quantize_q8_k(const float *x, struct quant_block_q8_k *b, size_t n)
{
    for (size_t k = 0; k < n / QUANT_K; k++, x += QUANT_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < QUANT_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax == 0) {
            memset(&b[k], 0, sizeof b[k]);
            continue;
        }
        /* the signed maximum maps to -127, so every q is in -127..127 */
        float iscale = -127.0f / max;
        for (int j = 0; j < QUANT_K; j++) {
            long v = lrintf(iscale * x[j]);
            b[k].qs[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += b[k].qs[16 * j + i];
            b[k].bsums[j] = (int16_t)s;
        }
        b[k].d = 1.0f / iscale;
    }
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
    case QUANT_Q2_K: dequant_q2_k(row, out, n / QUANT_K); return;
    case QUANT_Q3_K: dequant_q3_k(row, out, n / QUANT_K); return;
    case QUANT_Q4_K: dequant_q4_k(row, out, n / QUANT_K); return;
    case QUANT_Q5_K: dequant_q5_k(row, out, n / QUANT_K); return;
    case QUANT_Q6_K: dequant_q6_k(row, out, n / QUANT_K); return;
    case QUANT_IQ4_NL: dequant_iq4_nl(row, out, n / QUANT_BLOCK); return;
    case QUANT_IQ4_XS: dequant_iq4_xs(row, out, n / QUANT_K); return;
    case QUANT_Q8_K: {
        const struct quant_block_q8_k *b = row;
        for (size_t k = 0; k < n / QUANT_K; k++)
            for (int j = 0; j < QUANT_K; j++) out[k * QUANT_K + j] = b[k].d * (float)b[k].qs[j];
        return;
    }
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

/* ---- K-quant and IQ4 quantisation ----
 *
 * Our own quantisers, after the ideas of ggml's reference ones: each
 * sub-block gets the scale (and min) that minimises a weighted squared error
 * over a small set of candidate grids, each refined by a least-squares fit;
 * the sub-block scales are then quantised against the super-block d/dmin and
 * the elements re-quantised with the scales as stored. */

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Signed levels -nmax..nmax-1: x ~ scale * l. Weights w. Returns the scale;
 * L receives the levels. */
static float fit_signed(const float *x, const float *w, int n, int nmax, int8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float best_scale = 0, best_err = INFINITY;
    for (int is = -9; is <= 9; is++) {
        float iscale = -((float)nmax + 0.1f * (float)is) / max;
        double sumlx = 0, suml2 = 0;
        int8_t l[32];
        for (int i = 0; i < n; i++) {
            l[i] = (int8_t)clampi((int)lrintf(iscale * x[i]), -nmax, nmax - 1);
            sumlx += (double)w[i] * x[i] * l[i];
            suml2 += (double)w[i] * l[i] * l[i];
        }
        if (suml2 <= 0) continue;
        float scale = (float)(sumlx / suml2);
        double err = 0;
        for (int i = 0; i < n; i++) {
            double e = x[i] - scale * l[i];
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = (float)err;
            best_scale = scale;
            memcpy(L, l, (size_t)n);
        }
    }
    return best_scale;
}

/* Levels 0..nmax: x ~ scale * l - mn (mn >= 0). Returns the scale, *mn the min. */
static float fit_min(const float *x, const float *w, int n, int nmax, uint8_t *L, float *mn)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (lo > 0) lo = 0;
    if (hi <= lo) {
        memset(L, 0, (size_t)n);
        *mn = -lo;
        return 0;
    }
    float best_scale = (hi - lo) / (float)nmax, best_min = -lo, best_err = INFINITY;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)clampi((int)lrintf((x[i] - lo) / best_scale), 0, nmax);
    for (int is = 0; is <= 20; is++) {
        float iscale = (-1.0f + 0.1f * (float)is + (float)nmax) / (hi - lo);
        uint8_t l[32];
        double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
        for (int i = 0; i < n; i++) {
            l[i] = (uint8_t)clampi((int)lrintf(iscale * (x[i] - lo)), 0, nmax);
            sw += w[i];
            sl += (double)w[i] * l[i];
            sl2 += (double)w[i] * l[i] * l[i];
            sx += (double)w[i] * x[i];
            slx += (double)w[i] * l[i] * x[i];
        }
        double det = sw * sl2 - sl * sl;
        if (det <= 0) continue;
        double scale = (sw * slx - sx * sl) / det, off = (sl2 * sx - sl * slx) / det; /* x ~ scale*l + off */
        if (off > 0) { /* the min must not be positive: refit the scale alone */
            off = 0;
            scale = sl2 > 0 ? slx / sl2 : 0;
        }
        double err = 0;
        for (int i = 0; i < n; i++) {
            double e = x[i] - (scale * l[i] + off);
            err += w[i] * e * e;
        }
        if (err < best_err) {
            best_err = (float)err;
            best_scale = (float)scale;
            best_min = (float)-off;
            memcpy(L, l, (size_t)n);
        }
    }
    *mn = best_min;
    return best_scale;
}

static int iq4_nearest(float v)
{
    int best = 0;
    float bd = fabsf(v - (float)quant_iq4nl_values[0]);
    for (int k = 1; k < 16; k++) {
        float dd = fabsf(v - (float)quant_iq4nl_values[k]);
        if (dd < bd) {
            bd = dd;
            best = k;
        }
    }
    return best;
}

/* 32 values on the IQ4 grid: x ~ scale * kvalues[L]. */
static float fit_iq4(const float *x, int n, uint8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float best_scale = 0, best_err = INFINITY;
    for (int it = -7; it <= 7; it++) {
        float id = ((float)it + (float)quant_iq4nl_values[0]) / max;
        uint8_t l[32];
        double sqx = 0, sq2 = 0;
        for (int i = 0; i < n; i++) {
            l[i] = (uint8_t)iq4_nearest(id * x[i]);
            double q = quant_iq4nl_values[l[i]], w = (double)x[i] * x[i];
            sqx += w * q * x[i];
            sq2 += w * q * q;
        }
        if (sq2 <= 0) continue;
        float scale = (float)(sqx / sq2);
        double err = 0;
        for (int i = 0; i < n; i++) {
            double e = x[i] - scale * quant_iq4nl_values[l[i]];
            err += (double)x[i] * x[i] * e * e;
        }
        if (err < best_err) {
            best_err = (float)err;
            best_scale = scale;
            memcpy(L, l, (size_t)n);
        }
    }
    return best_scale;
}

static void pack_k4_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t s[12])
{
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j];
            s[j + 4] = m[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0x0f) | ((m[j] & 0x0f) << 4));
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* Q2_K / Q4_K / Q5_K: sub-blocks of sub (16 or 32), levels 0..nmax, scale and
 * min quantised to sbits bits against d / dmin. Produces levels q[256] and the
 * integer scales/mins; the caller packs. */
static void kq_min_block(const float *x, int sub, int nmax, int smax, uint8_t *q, uint8_t *isc, uint8_t *imn,
                         float *d_out, float *dmin_out)
{
    int ns = QUANT_K / sub;
    float sc[16], mn[16], w[32], sum2 = 0;
    for (int i = 0; i < QUANT_K; i++) sum2 += x[i] * x[i];
    float av = sqrtf(sum2 / QUANT_K);
    for (int j = 0; j < ns; j++) {
        for (int i = 0; i < sub; i++) w[i] = av + fabsf(x[j * sub + i]);
        sc[j] = fit_min(x + j * sub, w, sub, nmax, q + j * sub, &mn[j]);
    }
    float max_sc = 0, max_mn = 0;
    for (int j = 0; j < ns; j++) {
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float d = max_sc / (float)smax, dmin = max_mn / (float)smax;
    uint16_t hd = quant_f32_to_f16(d), hm = quant_f32_to_f16(dmin);
    d = quant_f16_to_f32(hd);
    dmin = quant_f16_to_f32(hm);
    for (int j = 0; j < ns; j++) {
        isc[j] = (uint8_t)(d > 0 ? clampi((int)lrintf(sc[j] / d), 0, smax) : 0);
        imn[j] = (uint8_t)(dmin > 0 ? clampi((int)lrintf(mn[j] / dmin), 0, smax) : 0);
        float dl = d * (float)isc[j], ml = dmin * (float)imn[j];
        for (int i = 0; i < sub; i++)
            q[j * sub + i] = (uint8_t)(dl > 0 ? clampi((int)lrintf((x[j * sub + i] + ml) / dl), 0, nmax) : 0);
    }
    *d_out = d;
    *dmin_out = dmin;
}

/* Q3_K / Q6_K: sub-blocks of 16, signed levels -nmax..nmax-1, signed scales
 * quantised to -smax..smax-1 against d. */
static void kq_signed_block(const float *x, int nmax, int smax, int8_t *q, int8_t *isc, float *d_out)
{
    float sc[16], w[16];
    for (int j = 0; j < 16; j++) {
        for (int i = 0; i < 16; i++) w[i] = x[16 * j + i] * x[16 * j + i];
        sc[j] = fit_signed(x + 16 * j, w, 16, nmax, q + 16 * j);
    }
    float amax = 0, max = 0;
    for (int j = 0; j < 16; j++)
        if (fabsf(sc[j]) > amax) {
            amax = fabsf(sc[j]);
            max = sc[j];
        }
    float d = 0;
    if (amax > 0) {
        float iscale = -(float)smax / max;
        d = quant_f16_to_f32(quant_f32_to_f16(1.0f / iscale));
    }
    for (int j = 0; j < 16; j++) {
        isc[j] = (int8_t)(d != 0 ? clampi((int)lrintf(sc[j] / d), -smax, smax - 1) : 0);
        float dl = d * (float)isc[j];
        for (int i = 0; i < 16; i++)
            q[16 * j + i] = (int8_t)(dl != 0 ? clampi((int)lrintf(x[16 * j + i] / dl), -nmax, nmax - 1) : 0);
    }
    *d_out = d;
}

static void quantize_kq(enum quant_type t, const float *x, void *out, size_t n)
{
    size_t bs = quant_block_size(t), nb = n / bs;
    for (size_t k = 0; k < nb; k++, x += bs) {
        switch (t) {
        case QUANT_Q2_K: {
            struct quant_block_q2_k *b = (struct quant_block_q2_k *)out + k;
            uint8_t q[QUANT_K], sc[16], mn[16];
            float d, dmin;
            kq_min_block(x, 16, 3, 15, q, sc, mn, &d, &dmin);
            memset(b, 0, sizeof *b);
            b->d = quant_f32_to_f16(d);
            b->dmin = quant_f32_to_f16(dmin);
            for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(sc[j] | (mn[j] << 4));
            for (int i = 0; i < QUANT_K; i++)
                b->qs[(i / 128) * 32 + i % 32] |= (uint8_t)(q[i] << (2 * ((i % 128) / 32)));
            break;
        }
        case QUANT_Q4_K: case QUANT_Q5_K: {
            uint8_t q[QUANT_K], sc[8], mn[8];
            float d, dmin;
            int nmax = t == QUANT_Q4_K ? 15 : 31;
            kq_min_block(x, 32, nmax, 63, q, sc, mn, &d, &dmin);
            uint8_t *scales, *qs, *qh = NULL;
            if (t == QUANT_Q4_K) {
                struct quant_block_q4_k *b = (struct quant_block_q4_k *)out + k;
                memset(b, 0, sizeof *b);
                b->d = quant_f32_to_f16(d), b->dmin = quant_f32_to_f16(dmin);
                scales = b->scales, qs = b->qs;
            } else {
                struct quant_block_q5_k *b = (struct quant_block_q5_k *)out + k;
                memset(b, 0, sizeof *b);
                b->d = quant_f32_to_f16(d), b->dmin = quant_f32_to_f16(dmin);
                scales = b->scales, qs = b->qs, qh = b->qh;
            }
            pack_k4_scales(sc, mn, scales);
            for (int i = 0; i < QUANT_K; i++) {
                int j = i / 32, l = i % 32;
                qs[(j / 2) * 32 + l] |= (uint8_t)((q[i] & 0x0f) << (4 * (j % 2)));
                if (qh) qh[l] |= (uint8_t)(((q[i] >> 4) & 1) << j);
            }
            break;
        }
        case QUANT_Q3_K: {
            struct quant_block_q3_k *b = (struct quant_block_q3_k *)out + k;
            int8_t q[QUANT_K], sc[16];
            float d;
            kq_signed_block(x, 4, 32, q, sc, &d);
            memset(b, 0, sizeof *b);
            b->d = quant_f32_to_f16(d);
            for (int j = 0; j < 16; j++) {
                int v = sc[j] + 32;
                if (j < 8)
                    b->scales[j] |= (uint8_t)(v & 0x0f);
                else
                    b->scales[j - 8] |= (uint8_t)((v & 0x0f) << 4);
                b->scales[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
            }
            for (int i = 0; i < QUANT_K; i++) {
                int v = q[i] + 4, l = i % 32;
                b->qs[(i / 128) * 32 + l] |= (uint8_t)((v & 3) << (2 * ((i % 128) / 32)));
                if (v & 4) b->hmask[l] |= (uint8_t)(1u << (i / 32));
            }
            break;
        }
        case QUANT_Q6_K: {
            struct quant_block_q6_k *b = (struct quant_block_q6_k *)out + k;
            int8_t q[QUANT_K], sc[16];
            float d;
            kq_signed_block(x, 32, 128, q, sc, &d);
            memset(b, 0, sizeof *b);
            b->d = quant_f32_to_f16(d);
            for (int j = 0; j < 16; j++) b->scales[j] = sc[j];
            for (int i = 0; i < QUANT_K; i++) {
                int v = q[i] + 32, h = i / 128, part = (i % 128) / 32, l = i % 32;
                b->ql[h * 64 + (part & 1) * 32 + l] |= (uint8_t)((v & 0x0f) << (4 * (part / 2)));
                b->qh[h * 32 + l] |= (uint8_t)((v >> 4) << (2 * part));
            }
            break;
        }
        case QUANT_IQ4_NL: {
            struct quant_block_iq4_nl *b = (struct quant_block_iq4_nl *)out + k;
            uint8_t l[32];
            float d = quant_f16_to_f32(quant_f32_to_f16(fit_iq4(x, 32, l)));
            for (int i = 0; i < 32 && d != 0; i++) l[i] = (uint8_t)iq4_nearest(x[i] / d);
            b->d = quant_f32_to_f16(d);
            for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(l[j] | (l[j + 16] << 4));
            break;
        }
        case QUANT_IQ4_XS: {
            struct quant_block_iq4_xs *b = (struct quant_block_iq4_xs *)out + k;
            uint8_t l[QUANT_K];
            float sc[8], amax = 0, max = 0;
            for (int ib = 0; ib < 8; ib++) {
                sc[ib] = fit_iq4(x + 32 * ib, 32, l + 32 * ib);
                if (fabsf(sc[ib]) > amax) {
                    amax = fabsf(sc[ib]);
                    max = sc[ib];
                }
            }
            memset(b, 0, sizeof *b);
            float d = amax > 0 ? quant_f16_to_f32(quant_f32_to_f16(-max / 32.0f)) : 0;
            b->d = quant_f32_to_f16(d);
            for (int ib = 0; ib < 8; ib++) {
                int ls = d != 0 ? clampi((int)lrintf(sc[ib] / d), -32, 31) : 0;
                b->scales_l[ib / 2] |= (uint8_t)(((ls + 32) & 0x0f) << (4 * (ib % 2)));
                b->scales_h |= (uint16_t)(((ls + 32) >> 4) << (2 * ib));
                float dl = d * (float)ls;
                for (int i = 0; i < 32; i++) {
                    int v = dl != 0 ? iq4_nearest(x[32 * ib + i] / dl) : iq4_nearest(0);
                    l[32 * ib + i] = (uint8_t)v;
                }
                for (int j = 0; j < 16; j++) b->qs[16 * ib + j] = (uint8_t)(l[32 * ib + j] | (l[32 * ib + j + 16] << 4));
            }
            break;
        }
        default: return;
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
    case QUANT_Q8_K: quantize_q8_k(x, out, n); return;
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K:
    case QUANT_IQ4_NL: case QUANT_IQ4_XS:
        quantize_kq(t, x, out, n);
        return;
    }
}

enum quant_type quant_vec_dot_type(enum quant_type t)
{
    switch (t) {
    case QUANT_Q8_0: case QUANT_Q4_0: case QUANT_IQ4_NL: return QUANT_Q8_0;
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K: case QUANT_IQ4_XS:
        return QUANT_Q8_K;
    default: return QUANT_F32;
    }
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
    case QUANT_IQ4_NL: {
        const struct quant_block_iq4_nl *a = row;
        const struct quant_block_q8_0 *b = y;
        for (size_t k = 0; k < n / QUANT_BLOCK; k++) {
            int s = 0;
            for (int j = 0; j < QUANT_BLOCK / 2; j++) {
                s += quant_iq4nl_values[a[k].qs[j] & 0x0f] * b[k].qs[j];
                s += quant_iq4nl_values[a[k].qs[j] >> 4] * b[k].qs[j + 16];
            }
            sum += (double)f16_to_f32_soft(a[k].d) * f16_to_f32_soft(b[k].d) * s;
        }
        break;
    }
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K: case QUANT_IQ4_XS:
        sum = kdot_ref(t, row, y, n / QUANT_K);
        break;
    case QUANT_Q8_K: {
        const struct quant_block_q8_k *a = row, *b = y;
        for (size_t k = 0; k < n / QUANT_K; k++) {
            int s = 0;
            for (int j = 0; j < QUANT_K; j++) s += a[k].qs[j] * b[k].qs[j];
            sum += (double)a[k].d * b[k].d * s;
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

/* ---- K-quant and IQ4 dot kernels ---- */

#ifdef QUANT_AVX2
/* The SIMD kernels unpack each super-block into signed bytes with 256-bit
 * shifts/masks/shuffles (kunpack_avx2, the same values as kunpack_ref), then
 * multiply-add them with the Q8_K bytes: maddubs + madd on AVX2, dpbusd on
 * AVX-512 VNNI. The scale decoding (16 small integers) stays scalar. */
static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

static inline void kunpack_scales(enum quant_type t, const void *blk, struct kunpacked *u)
{
    switch (t) {
    case QUANT_Q2_K: {
        const struct quant_block_q2_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        u->dmin = quant_f16_to_f32(b->dmin);
        for (int j = 0; j < 16; j++) {
            u->sc[j] = b->scales[j] & 0x0f;
            u->mn[j] = b->scales[j] >> 4;
        }
        return;
    }
    case QUANT_Q3_K: {
        const struct quant_block_q3_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        u->dmin = 0;
        int sc[16];
        q3_k_scales(b->scales, sc);
        for (int j = 0; j < 16; j++) u->sc[j] = sc[j];
        return;
    }
    case QUANT_Q4_K: case QUANT_Q5_K: {
        const struct quant_block_q4_k *b4 = blk;
        const struct quant_block_q5_k *b5 = blk;
        const uint8_t *s = t == QUANT_Q4_K ? b4->scales : b5->scales;
        u->d = quant_f16_to_f32(t == QUANT_Q4_K ? b4->d : b5->d);
        u->dmin = quant_f16_to_f32(t == QUANT_Q4_K ? b4->dmin : b5->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(j, s, &sc, &m);
            u->sc[2 * j] = u->sc[2 * j + 1] = sc;
            u->mn[2 * j] = u->mn[2 * j + 1] = m;
        }
        return;
    }
    case QUANT_Q6_K: {
        const struct quant_block_q6_k *b = blk;
        u->d = quant_f16_to_f32(b->d);
        u->dmin = 0;
        for (int j = 0; j < 16; j++) u->sc[j] = b->scales[j];
        return;
    }
    case QUANT_IQ4_XS: {
        const struct quant_block_iq4_xs *b = blk;
        u->d = quant_f16_to_f32(b->d);
        u->dmin = 0;
        for (int ib = 0; ib < 8; ib++) u->sc[2 * ib] = u->sc[2 * ib + 1] = iq4_xs_scale(b, ib);
        return;
    }
    default: return;
    }
}

static inline void kunpack_avx2(enum quant_type t, const void *blk, struct kunpacked *u)
{
    const __m256i m2 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0f);
    __m256i *w = (__m256i *)u->w;
    kunpack_scales(t, blk, u);
    switch (t) {
    case QUANT_Q2_K: {
        const struct quant_block_q2_k *b = blk;
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(b->qs + 32 * h);
            for (int s = 0; s < 4; s++) _mm256_storeu_si256(w + 4 * h + s, _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m2));
        }
        return;
    }
    case QUANT_Q3_K: {
        const struct quant_block_q3_k *b = blk;
        __m256i hm = load256(b->hmask), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(b->qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                int bit = 4 * h + s;
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m2);
                /* 4 where the high bit is clear */
                __m256i hb = _mm256_and_si256(hm, _mm256_set1_epi8((char)(1 << bit)));
                __m256i sub = _mm256_and_si256(_mm256_cmpeq_epi8(hb, zero), four);
                _mm256_storeu_si256(w + bit, _mm256_sub_epi8(lo, sub));
            }
        }
        return;
    }
    case QUANT_Q4_K: case QUANT_Q5_K: {
        const uint8_t *qs = t == QUANT_Q4_K ? ((const struct quant_block_q4_k *)blk)->qs
                                            : ((const struct quant_block_q5_k *)blk)->qs;
        for (int p = 0; p < 4; p++) {
            __m256i q = load256(qs + 32 * p);
            _mm256_storeu_si256(w + 2 * p, _mm256_and_si256(q, m4));
            _mm256_storeu_si256(w + 2 * p + 1, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        }
        if (t == QUANT_Q5_K) {
            __m256i qh = load256(((const struct quant_block_q5_k *)blk)->qh), one = _mm256_set1_epi8(1);
            for (int j = 0; j < 8; j++) {
                __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), one), 4);
                _mm256_storeu_si256(w + j, _mm256_or_si256(_mm256_loadu_si256(w + j), hb));
            }
        }
        return;
    }
    case QUANT_Q6_K: {
        const struct quant_block_q6_k *b = blk;
        const __m256i m32 = _mm256_set1_epi8(32);
        for (int h = 0; h < 2; h++) {
            __m256i l0 = load256(b->ql + 64 * h), l1 = load256(b->ql + 64 * h + 32), qh = load256(b->qh + 32 * h);
            __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                             _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int p = 0; p < 4; p++) {
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), m2), 4);
                _mm256_storeu_si256(w + 4 * h + p, _mm256_sub_epi8(_mm256_or_si256(lo[p], hi), m32));
            }
        }
        return;
    }
    case QUANT_IQ4_XS: {
        const struct quant_block_iq4_xs *b = blk;
        const __m128i tbl = _mm_loadu_si128((const __m128i *)quant_iq4nl_values), m4s = _mm_set1_epi8(0x0f);
        for (int ib = 0; ib < 8; ib++) {
            __m128i q = _mm_loadu_si128((const __m128i *)(b->qs + 16 * ib));
            __m128i lo = _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4s));
            __m128i hi = _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m4s));
            _mm256_storeu_si256(w + ib, _mm256_set_m128i(hi, lo));
        }
        return;
    }
    default: return;
    }
}

static inline int32_t hsum_i32_256(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 8 int32 lanes whose sum is sum_j sc[j] * sum_{i in 16j..16j+15} w[i] * y[i];
 * unsigned_w: w in 0..127 (no sign transfer needed). */
static inline __m256i kcore_avx2(const struct kunpacked *u, const int8_t *y, bool unsigned_w)
{
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 8; k++) {
        __m256i wv = load256(u->w + 32 * k), yv = load256(y + 32 * k);
        __m256i p = unsigned_w ? _mm256_maddubs_epi16(wv, yv)
                               : _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(yv, wv));
        __m256i s = _mm256_set_m128i(_mm_set1_epi16((short)u->sc[2 * k + 1]), _mm_set1_epi16((short)u->sc[2 * k]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
    }
    return acc;
}

static inline int32_t kmins(const struct kunpacked *u, const struct quant_block_q8_k *y)
{
    int32_t m = 0;
    for (int j = 0; j < 16; j++) m += u->mn[j] * y->bsums[j];
    return m;
}

static bool kunsigned(enum quant_type t) { return t == QUANT_Q2_K || t == QUANT_Q4_K || t == QUANT_Q5_K; }

/* One super-block into the row's accumulators: acc (8 float lanes) gets
 * y.d * d * the integer sums, *macc the min term (types with mins only). */
static inline __m256 kblock_avx2(const struct kunpacked *u, const struct quant_block_q8_k *y, bool uw, __m256 acc,
                                 float *macc)
{
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(kcore_avx2(u, y->qs, uw)), _mm256_set1_ps(y->d * u->d), acc);
    if (uw) *macc += y->d * u->dmin * (float)kmins(u, y);
    return acc;
}

/* Q4_K and Q6_K (the types of the common Q4_K_M/Q5_K_M/Q6_K files) without
 * the unpack buffer: the nibbles are split in registers and multiplied at
 * once. Q6_K's (q - 32) is applied as q * y - 32 * bsum (q is 0..63, so
 * maddubs takes it unsigned). The same lane layout as kblock_avx2. */
static inline __m256 kblock_q4_k_avx2(const struct quant_block_q4_k *b, const struct quant_block_q8_k *y, __m256 acc,
                                      float *macc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) k4_scale_min(j, b->scales, &sc[j], &mn[j]);
    __m256i ai = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        __m256i q = load256(b->qs + 32 * p);
        __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), load256(y->qs + 64 * p));
        __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), load256(y->qs + 64 * p + 32));
        ai = _mm256_add_epi32(ai, _mm256_madd_epi16(p0, _mm256_set1_epi16((short)sc[2 * p])));
        ai = _mm256_add_epi32(ai, _mm256_madd_epi16(p1, _mm256_set1_epi16((short)sc[2 * p + 1])));
    }
    float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai), _mm256_set1_ps(y->d * d), acc);
    int32_t m = 0;
    for (int j = 0; j < 8; j++) m += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    *macc += y->d * dmin * (float)m;
    return acc;
}

static inline __m256 kblock_q6_k_avx2(const struct quant_block_q6_k *b, const struct quant_block_q8_k *y, __m256 acc,
                                      float *macc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    __m256i ai = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i l0 = load256(b->ql + 64 * h), l1 = load256(b->ql + 64 * h + 32), qh = load256(b->qh + 32 * h);
        __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                         _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
        for (int p = 0; p < 4; p++) {
            __m256i q = _mm256_or_si256(lo[p], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), m2), 4));
            __m256i pr = _mm256_maddubs_epi16(q, load256(y->qs + 128 * h + 32 * p));
            int g = 8 * h + 2 * p; /* sub-blocks g and g + 1 */
            __m256i s = _mm256_set_m128i(_mm_set1_epi16(b->scales[g + 1]), _mm_set1_epi16(b->scales[g]));
            ai = _mm256_add_epi32(ai, _mm256_madd_epi16(pr, s));
        }
    }
    float d = quant_f16_to_f32(b->d);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai), _mm256_set1_ps(y->d * d), acc);
    int32_t m = 0;
    for (int j = 0; j < 16; j++) m += b->scales[j] * y->bsums[j];
    *macc += y->d * d * (float)(32 * m);
    return acc;
}

/* one super-block of any K-type / IQ4_XS into a row's accumulators; u is scratch */
static inline __m256 kblock_any_avx2(enum quant_type t, const void *blk, const struct quant_block_q8_k *y, bool uw,
                                     struct kunpacked *u, __m256 acc, float *macc)
{
    if (t == QUANT_Q4_K) return kblock_q4_k_avx2(blk, y, acc, macc);
    if (t == QUANT_Q6_K) return kblock_q6_k_avx2(blk, y, acc, macc);
    kunpack_avx2(t, blk, u);
    return kblock_avx2(u, y, uw, acc, macc);
}

static float kdot_avx2(enum quant_type t, const void *row, const struct quant_block_q8_k *y, size_t nb)
{
    size_t bb = quant_block_bytes(t);
    bool uw = kunsigned(t);
    struct kunpacked u;
    __m256 acc = _mm256_setzero_ps();
    float macc = 0;
    for (size_t k = 0; k < nb; k++) acc = kblock_any_avx2(t, (const char *)row + k * bb, &y[k], uw, &u, acc, &macc);
    return hsum256(acc) - macc;
}

static float dot_iq4_nl_avx2(const struct quant_block_iq4_nl *a, const struct quant_block_q8_0 *b, size_t nb)
{
    const __m128i tbl = _mm_loadu_si128((const __m128i *)quant_iq4nl_values), m4 = _mm_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (size_t k = 0; k < nb; k++) {
        __m128i q = _mm_loadu_si128((const __m128i *)a[k].qs);
        __m256i w = _mm256_set_m128i(_mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m4)),
                                     _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4)));
        __m256 d = _mm256_set1_ps(quant_f16_to_f32(a[k].d) * quant_f16_to_f32(b[k].d));
        __m256 p = dot_i8x32(w, load256(b[k].qs));
        if (k & 1)
            acc1 = _mm256_fmadd_ps(d, p, acc1);
        else
            acc0 = _mm256_fmadd_ps(d, p, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}
#endif

#ifdef QUANT_AVX512
/* 64 bytes at a time: maddubs gives 32 int16 lanes, lanes 8g..8g+7 from
 * sub-block 4k+g; vpdpwssd (AVX-512 VNNI) multiplies them by that sub-block's
 * scale and accumulates pairs into 16 int32 lanes. */
static inline __m512i kcore_avx512(const struct kunpacked *u, const int8_t *y, bool unsigned_w)
{
    /* the 16 scales as int16, then lane j of round k picks scale 4k + j/8 */
    const __m512i sc = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(_mm512_loadu_si512((const void *)u->sc)));
    const __m512i base = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                                          0, 0, 0, 0, 0);
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) {
        __m512i wv = _mm512_loadu_si512((const void *)(u->w + 64 * k)), yv = _mm512_loadu_si512((const void *)(y + 64 * k));
        __m512i p;
        if (unsigned_w) {
            p = _mm512_maddubs_epi16(wv, yv);
        } else { /* |w| times y with the sign of w moved onto y (y is never -128) */
            __mmask64 neg = _mm512_movepi8_mask(wv);
            p = _mm512_maddubs_epi16(_mm512_abs_epi8(wv), _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv));
        }
        __m512i s = _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)(4 * k))), sc);
        acc = _mm512_dpwssd_epi32(acc, p, s);
    }
    return acc;
}

static inline __m512 kblock_avx512(const struct kunpacked *u, const struct quant_block_q8_k *y, bool uw, __m512 acc,
                                   float *macc)
{
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(kcore_avx512(u, y->qs, uw)), _mm512_set1_ps(y->d * u->d), acc);
    if (uw) *macc += y->d * u->dmin * (float)kmins(u, y);
    return acc;
}

static inline __m512i two256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }
static inline __m512i two_scales(int a, int b)
{
    return two256(_mm256_set1_epi16((short)a), _mm256_set1_epi16((short)b));
}

/* Fused Q4_K / Q6_K at 512 bits (the AVX2 ones' idea, 64 bytes per step). */
static inline __m512 kblock_q4_k_avx512(const struct quant_block_q4_k *b, const struct quant_block_q8_k *y, __m512 acc,
                                        float *macc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) k4_scale_min(j, b->scales, &sc[j], &mn[j]);
    __m512i ai = _mm512_setzero_si512();
    for (int p = 0; p < 2; p++) {
        /* bytes 0-31: sub-blocks 4p (low nibbles) and 4p+1 (high); bytes 32-63: 4p+2 and 4p+3 */
        __m512i q = _mm512_loadu_si512((const void *)(b->qs + 64 * p));
        const int8_t *yq = y->qs + 128 * p;
        __m512i ylo = two256(load256(yq), load256(yq + 64)), yhi = two256(load256(yq + 32), load256(yq + 96));
        __m512i plo = _mm512_maddubs_epi16(_mm512_and_si512(q, m4), ylo);
        __m512i phi = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4), yhi);
        ai = _mm512_dpwssd_epi32(ai, plo, two_scales(sc[4 * p], sc[4 * p + 2]));
        ai = _mm512_dpwssd_epi32(ai, phi, two_scales(sc[4 * p + 1], sc[4 * p + 3]));
    }
    float d = quant_f16_to_f32(b->d), dmin = quant_f16_to_f32(b->dmin);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai), _mm512_set1_ps(y->d * d), acc);
    int32_t m = 0;
    for (int j = 0; j < 8; j++) m += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    *macc += y->d * dmin * (float)m;
    return acc;
}

static inline __m512 kblock_q6_k_avx512(const struct quant_block_q6_k *b, const struct quant_block_q8_k *y, __m512 acc,
                                        float *macc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0), sh23 = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    const __m512i base = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                                          0, 0, 0, 0, 0);
    const __m512i sc = _mm512_castsi128_si512(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)b->scales)));
    const __m512i sc2 = _mm512_castsi128_si512(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(b->scales + 8))));
    __m512i ai = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        __m512i l = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
        __m256i qh256 = load256(b->qh + 32 * h);
        __m512i qh = two256(qh256, qh256);
        /* elements 128h + 0..63: low nibbles of ql with qh bits 0-1 / 2-3; 64..127: high nibbles, bits 4-5 / 6-7 */
        __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                      _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh, sh01), m2), 4));
        __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                      _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh, sh23), m2), 4));
        __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)(y->qs + 128 * h)));
        __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(y->qs + 128 * h + 64)));
        const __m512i s8 = h ? sc2 : sc; /* the 8 scales of this half as int16 */
        ai = _mm512_dpwssd_epi32(ai, p01, _mm512_permutexvar_epi16(base, s8));
        ai = _mm512_dpwssd_epi32(ai, p23, _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16(4)), s8));
    }
    float d = quant_f16_to_f32(b->d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai), _mm512_set1_ps(y->d * d), acc);
    int32_t m = 0;
    for (int j = 0; j < 16; j++) m += b->scales[j] * y->bsums[j];
    *macc += y->d * d * (float)(32 * m);
    return acc;
}

static inline __m512 kblock_any_avx512(enum quant_type t, const void *blk, const struct quant_block_q8_k *y, bool uw,
                                       struct kunpacked *u, __m512 acc, float *macc)
{
    if (t == QUANT_Q4_K) return kblock_q4_k_avx512(blk, y, acc, macc);
    if (t == QUANT_Q6_K) return kblock_q6_k_avx512(blk, y, acc, macc);
    kunpack_avx2(t, blk, u);
    return kblock_avx512(u, y, uw, acc, macc);
}

static float kdot_avx512(enum quant_type t, const void *row, const struct quant_block_q8_k *y, size_t nb)
{
    size_t bb = quant_block_bytes(t);
    bool uw = kunsigned(t);
    struct kunpacked u;
    __m512 acc = _mm512_setzero_ps();
    float macc = 0;
    for (size_t k = 0; k < nb; k++) acc = kblock_any_avx512(t, (const char *)row + k * bb, &y[k], uw, &u, acc, &macc);
    return _mm512_reduce_add_ps(acc) - macc;
}

static float dot_iq4_nl_avx512(const struct quant_block_iq4_nl *a, const struct quant_block_q8_0 *b, size_t nb)
{
    const __m128i tbl = _mm_loadu_si128((const __m128i *)quant_iq4nl_values), m4 = _mm_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 2 <= nb; k += 2) {
        __m256i w2[2];
        for (int h = 0; h < 2; h++) {
            __m128i q = _mm_loadu_si128((const __m128i *)a[k + h].qs);
            w2[h] = _mm256_set_m128i(_mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m4)),
                                     _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4)));
        }
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(w2[0]), w2[1], 1);
        __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b[k].qs)), load256(b[k + 1].qs), 1);
        __mmask64 neg = _mm512_movepi8_mask(x);
        __m512i ys = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
        __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), ys);
        __m512 d = scale2(quant_f16_to_f32(a[k].d) * quant_f16_to_f32(b[k].d),
                          quant_f16_to_f32(a[k + 1].d) * quant_f16_to_f32(b[k + 1].d));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    for (; k < nb; k++) s += quant_dot_ref(QUANT_IQ4_NL, &a[k], &b[k], QUANT_BLOCK);
    return s;
}
#endif

/* ---- SIMD level ---- */

static int max_isa = -1; /* cached like active_isa below */

enum quant_isa quant_isa_max(void)
{
    int m = __atomic_load_n(&max_isa, __ATOMIC_RELAXED);
    if (m >= 0) return (enum quant_isa)m;
#if defined(QUANT_AVX512)
    __builtin_cpu_init();
    m = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vnni")
            ? QUANT_ISA_AVX512
            : QUANT_ISA_AVX2;
#elif defined(QUANT_AVX2)
    m = QUANT_ISA_AVX2;
#else
    m = QUANT_ISA_SCALAR;
#endif
    __atomic_store_n(&max_isa, m, __ATOMIC_RELAXED);
    return (enum quant_isa)m;
}

static int active_isa = -1; /* read and written with relaxed atomics: every writer stores the same value */

enum quant_isa quant_isa_active(void)
{
    int a = __atomic_load_n(&active_isa, __ATOMIC_RELAXED);
    if (a >= 0) return (enum quant_isa)a;
    enum quant_isa isa = quant_isa_max();
    const char *e = getenv("SASERVE_QUANT_ISA");
    if (e && strcmp(e, "avx2") == 0 && isa > QUANT_ISA_AVX2) isa = QUANT_ISA_AVX2;
    if (e && strcmp(e, "scalar") == 0) isa = QUANT_ISA_SCALAR;
    __atomic_store_n(&active_isa, (int)isa, __ATOMIC_RELAXED);
    return isa;
}

const char *quant_isa_name(enum quant_isa isa)
{
    switch (isa) {
    case QUANT_ISA_SCALAR: return "scalar";
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_AVX512: return "avx512-vnni";
    }
    return "unknown";
}

float quant_dot(enum quant_type t, const void *row, const void *y, size_t n)
{
    return quant_dot_isa(quant_isa_active(), t, row, y, n);
}

float quant_dot_isa(enum quant_isa isa, enum quant_type t, const void *row, const void *y, size_t n)
{
    enum quant_isa max = quant_isa_max();
    if (isa > max) isa = max;
    if (isa == QUANT_ISA_SCALAR) return quant_dot_ref(t, row, y, n);
#ifdef QUANT_AVX512
    if (isa == QUANT_ISA_AVX512) {
        if (t == QUANT_Q4_0) return dot_q4_0_avx512(row, y, n / QUANT_BLOCK);
        if (t == QUANT_Q8_0) return dot_q8_0_avx512(row, y, n / QUANT_BLOCK);
        if (t == QUANT_IQ4_NL) return dot_iq4_nl_avx512(row, y, n / QUANT_BLOCK);
        if (is_ktype(t)) return kdot_avx512(t, row, y, n / QUANT_K);
    }
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
    case QUANT_IQ4_NL: return dot_iq4_nl_avx2(row, y, n / QUANT_BLOCK);
    case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K: case QUANT_IQ4_XS:
        return kdot_avx2(t, row, y, n / QUANT_K);
    case QUANT_Q8_K: return quant_dot_ref(t, row, y, n);
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

#ifdef QUANT_AVX2
/* K-quant / IQ4_XS row against up to KMULTI_MAX activation rows: each
 * super-block is unpacked once and used for every row. Per row, the blocks
 * are summed in the same order with the same operations as kdot_avx2 /
 * kdot_avx512, so the results are bit-identical to quant_dot. */
#define KMULTI_MAX 16
static void kdot_multi(enum quant_isa isa, enum quant_type t, const void *row, const void *ys, size_t y_stride,
                       size_t T, size_t n, float *out, size_t out_stride)
{
    size_t bb = quant_block_bytes(t), nb = n / QUANT_K;
    bool uw = kunsigned(t);
    float macc[KMULTI_MAX] = {0};
    struct kunpacked u;
#define KQ_Y(r, k) ((const struct quant_block_q8_k *)((const char *)ys + (r) * y_stride) + (k))
#ifdef QUANT_AVX512
    if (isa == QUANT_ISA_AVX512) {
        __m512 acc[KMULTI_MAX];
        for (size_t r = 0; r < T; r++) acc[r] = _mm512_setzero_ps();
        for (size_t k = 0; k < nb; k++) {
            const void *blk = (const char *)row + k * bb;
            if (t == QUANT_Q4_K || t == QUANT_Q6_K) {
                for (size_t r = 0; r < T; r++) acc[r] = kblock_any_avx512(t, blk, KQ_Y(r, k), uw, &u, acc[r], &macc[r]);
                continue;
            }
            kunpack_avx2(t, blk, &u);
            for (size_t r = 0; r < T; r++) acc[r] = kblock_avx512(&u, KQ_Y(r, k), uw, acc[r], &macc[r]);
        }
        for (size_t r = 0; r < T; r++) out[r * out_stride] = _mm512_reduce_add_ps(acc[r]) - macc[r];
        return;
    }
#endif
    (void)isa;
    __m256 acc[KMULTI_MAX];
    for (size_t r = 0; r < T; r++) acc[r] = _mm256_setzero_ps();
    for (size_t k = 0; k < nb; k++) {
        const void *blk = (const char *)row + k * bb;
        if (t == QUANT_Q4_K || t == QUANT_Q6_K) { /* the fused kernels: nothing to share but the load */
            for (size_t r = 0; r < T; r++) acc[r] = kblock_any_avx2(t, blk, KQ_Y(r, k), uw, &u, acc[r], &macc[r]);
            continue;
        }
        kunpack_avx2(t, blk, &u);
        for (size_t r = 0; r < T; r++) acc[r] = kblock_avx2(&u, KQ_Y(r, k), uw, acc[r], &macc[r]);
    }
    for (size_t r = 0; r < T; r++) out[r * out_stride] = hsum256(acc[r]) - macc[r];
#undef KQ_Y
}
#endif

void quant_dot_multi(enum quant_type t, const void *row, const void *ys, size_t y_stride, size_t T, size_t n,
                     float *out, size_t out_stride)
{
    size_t k = 0;
#ifdef QUANT_AVX2
    enum quant_isa isa = quant_isa_active();
    if (is_ktype(t) && isa >= QUANT_ISA_AVX2 && T > 1) {
        for (; k < T; k += KMULTI_MAX) {
            size_t m = T - k < KMULTI_MAX ? T - k : KMULTI_MAX;
            kdot_multi(isa, t, row, (const char *)ys + k * y_stride, y_stride, m, n, out + k * out_stride,
                       out_stride);
        }
        return;
    }
    if (t == QUANT_F32 || t == QUANT_F16)
        for (; k + 2 <= T; k += 2)
            dot2_float(t, row, (const float *)((const char *)ys + k * y_stride),
                       (const float *)((const char *)ys + (k + 1) * y_stride), n, out + k * out_stride,
                       out + (k + 1) * out_stride);
#endif
    for (; k < T; k++) out[k * out_stride] = quant_dot(t, row, (const char *)ys + k * y_stride, n);
}

/* ---- load-time scale check ---- */

static inline bool f16_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

bool quant_scales_finite(enum quant_type t, const void *data, size_t n_elements)
{
    size_t bs = quant_block_size(t), bb = quant_block_bytes(t);
    if (bs == 1 || bb == 0) return true;
    size_t nb = n_elements / bs;
    const uint8_t *p = data;
    /* offset of d, and of dmin (or SIZE_MAX) inside the block */
    size_t od, om = SIZE_MAX;
    switch (t) {
    case QUANT_Q8_0: case QUANT_Q4_0: case QUANT_IQ4_NL: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_IQ4_XS:
        od = 0;
        if (t == QUANT_Q4_K || t == QUANT_Q5_K) om = 2;
        break;
    case QUANT_Q2_K: od = offsetof(struct quant_block_q2_k, d), om = offsetof(struct quant_block_q2_k, dmin); break;
    case QUANT_Q3_K: od = offsetof(struct quant_block_q3_k, d); break;
    case QUANT_Q6_K: od = offsetof(struct quant_block_q6_k, d); break;
    case QUANT_Q8_K: { /* float d */
        for (size_t k = 0; k < nb; k++) {
            float d;
            memcpy(&d, p + k * bb, sizeof d);
            if (!isfinite(d)) return false;
        }
        return true;
    }
    default: return true;
    }
    for (size_t k = 0; k < nb; k++) {
        uint16_t h;
        memcpy(&h, p + k * bb + od, 2);
        if (!f16_finite(h)) return false;
        if (om != SIZE_MAX) {
            memcpy(&h, p + k * bb + om, 2);
            if (!f16_finite(h)) return false;
        }
    }
    return true;
}
