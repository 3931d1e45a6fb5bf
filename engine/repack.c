/*
 * repack.c - row-interleaved weight panels (layouts in repack.h).
 */
#include "repack.h"

#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

enum repack_kind repack_kind_of(enum quant_type t)
{
    switch (t) {
    case QUANT_F32:
    case QUANT_F16:
    case QUANT_BF16: return REPACK_F32;
    case QUANT_Q8_0:
    case QUANT_Q4_0:
    case QUANT_IQ4_NL:
    case QUANT_Q4_K:
    case QUANT_IQ4_XS: return REPACK_Q8;
    default: return REPACK_NONE;
    }
}

size_t repack_panel_bytes(enum quant_type t, size_t n_in)
{
    switch (repack_kind_of(t)) {
    case REPACK_F32: return REPACK_F32_BYTES(n_in);
    case REPACK_Q8: return REPACK_Q8_BYTES(n_in);
    default: return 0;
    }
}

/* Q4_K / Q5_K scale and min of sub-block j (ggml's get_scale_min_k4 packing,
 * described in quant.c next to its own copy). */
static void q4k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Codes, scale and offset of block b (32 columns) of one row. */
static void q8_block_of_row(enum quant_type t, const void *row, size_t b, uint8_t q[32], float *s, float *o)
{
    switch (t) {
    case QUANT_Q8_0: {
        const struct quant_block_q8_0 *x = (const struct quant_block_q8_0 *)row + b;
        for (int i = 0; i < 32; i++) q[i] = (uint8_t)(x->qs[i] + 128);
        *s = quant_f16_to_f32(x->d);
        *o = -128.0f * *s;
        return;
    }
    case QUANT_Q4_0:
    case QUANT_IQ4_NL: {
        const struct quant_block_q4_0 *x = (const struct quant_block_q4_0 *)row + b; /* same layout as IQ4_NL */
        for (int i = 0; i < 16; i++) {
            int lo = x->qs[i] & 0x0f, hi = x->qs[i] >> 4;
            if (t == QUANT_IQ4_NL) {
                lo = quant_iq4nl_values[lo] + 128;
                hi = quant_iq4nl_values[hi] + 128;
            }
            q[i] = (uint8_t)lo;
            q[i + 16] = (uint8_t)hi;
        }
        *s = quant_f16_to_f32(x->d);
        *o = (t == QUANT_IQ4_NL ? -128.0f : -8.0f) * *s;
        return;
    }
    case QUANT_Q4_K: {
        const struct quant_block_q4_k *x = (const struct quant_block_q4_k *)row + b / 8;
        int sb = (int)(b % 8), sc, m;
        q4k_scale_min(sb, x->scales, &sc, &m);
        const uint8_t *qs = x->qs + 32 * (sb / 2);
        for (int i = 0; i < 32; i++) q[i] = (uint8_t)((qs[i] >> (4 * (sb % 2))) & 0x0f);
        *s = quant_f16_to_f32(x->d) * (float)sc;
        *o = -(quant_f16_to_f32(x->dmin) * (float)m);
        return;
    }
    case QUANT_IQ4_XS: {
        const struct quant_block_iq4_xs *x = (const struct quant_block_iq4_xs *)row + b / 8;
        int ib = (int)(b % 8);
        int ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((x->scales_h >> (2 * ib)) & 3) << 4);
        const uint8_t *qs = x->qs + 16 * ib;
        for (int i = 0; i < 16; i++) {
            q[i] = (uint8_t)(quant_iq4nl_values[qs[i] & 0x0f] + 128);
            q[i + 16] = (uint8_t)(quant_iq4nl_values[qs[i] >> 4] + 128);
        }
        *s = quant_f16_to_f32(x->d) * (float)(ls - 32);
        *o = -128.0f * *s;
        return;
    }
    default: memset(q, 0, 32); *s = *o = 0; return;
    }
}

#if defined(__AVX2__)
/* The same codes as q8_block_of_row, 32 bytes at a time (scales stay scalar). */
static inline __m256i nibbles256(const uint8_t *qs16)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)qs16), m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

static inline __m256i iq4_lookup(__m256i nib)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)(const void *)quant_iq4nl_values);
    __m256i tab = _mm256_add_epi8(_mm256_set_m128i(t, t), _mm256_set1_epi8((char)0x80)); /* kvalue + 128 */
    return _mm256_shuffle_epi8(tab, nib);
}

static bool q8_block_codes_fast(enum quant_type t, const void *row, size_t b, uint8_t q[32], float *s, float *o)
{
    __m256i c;
    switch (t) {
    case QUANT_Q8_0: {
        const struct quant_block_q8_0 *x = (const struct quant_block_q8_0 *)row + b;
        c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)x->qs), _mm256_set1_epi8((char)0x80));
        *s = quant_f16_to_f32(x->d);
        *o = -128.0f * *s;
        break;
    }
    case QUANT_Q4_0:
    case QUANT_IQ4_NL: {
        const struct quant_block_q4_0 *x = (const struct quant_block_q4_0 *)row + b;
        c = nibbles256(x->qs);
        if (t == QUANT_IQ4_NL) c = iq4_lookup(c);
        *s = quant_f16_to_f32(x->d);
        *o = (t == QUANT_IQ4_NL ? -128.0f : -8.0f) * *s;
        break;
    }
    case QUANT_Q4_K: {
        const struct quant_block_q4_k *x = (const struct quant_block_q4_k *)row + b / 8;
        int sb = (int)(b % 8), sc, m;
        q4k_scale_min(sb, x->scales, &sc, &m);
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(x->qs + 32 * (sb / 2)));
        if (sb % 2) v = _mm256_srli_epi16(v, 4);
        c = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
        *s = quant_f16_to_f32(x->d) * (float)sc;
        *o = -(quant_f16_to_f32(x->dmin) * (float)m);
        break;
    }
    case QUANT_IQ4_XS: {
        const struct quant_block_iq4_xs *x = (const struct quant_block_iq4_xs *)row + b / 8;
        int ib = (int)(b % 8);
        int ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((x->scales_h >> (2 * ib)) & 3) << 4);
        c = iq4_lookup(nibbles256(x->qs + 16 * ib));
        *s = quant_f16_to_f32(x->d) * (float)(ls - 32);
        *o = -128.0f * *s;
        break;
    }
    default: return false;
    }
    _mm256_storeu_si256((__m256i *)(void *)q, c);
    return true;
}
#endif

static void pack_f32(enum quant_type t, const char *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                     float *v)
{
    for (size_t r = 0; r < REPACK_ROWS; r++) {
        if (r >= nr) {
            for (size_t i = 0; i < n_in; i++) v[r * n_in + i] = 0;
            continue;
        }
        quant_dequantize_row(t, data + (r0 + r) * row_bytes, v + r * n_in, n_in); /* vectorised, exact */
    }
}

void repack_panel(enum quant_type t, const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                  void *panel)
{
    enum repack_kind k = repack_kind_of(t);
    if (k == REPACK_F32) {
        pack_f32(t, data, row_bytes, n_in, r0, nr, panel);
        return;
    }
    if (k != REPACK_Q8) return;
    size_t nb = n_in / QUANT_BLOCK;
    uint8_t *p = panel;
    for (size_t b = 0; b < nb; b++, p += REPACK_Q8_BLOCK_BYTES) {
        float *s = (float *)(p + 8 * REPACK_ROWS * 4), *o = s + REPACK_ROWS;
        _Alignas(64) uint8_t codes[REPACK_ROWS][32];
        for (size_t r = 0; r < REPACK_ROWS; r++) {
            if (r < nr) {
                const void *row = (const char *)data + (r0 + r) * row_bytes;
#if defined(__AVX2__)
                if (!q8_block_codes_fast(t, row, b, codes[r], &s[r], &o[r]))
#endif
                    q8_block_of_row(t, row, b, codes[r], &s[r], &o[r]);
            } else {
                memset(codes[r], 0, 32);
                s[r] = o[r] = 0;
            }
        }
        /* transpose [16 rows][8 groups of 4 codes] -> [8][16] */
#if defined(__AVX512F__)
        const __m512i idx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
        for (int kk = 0; kk < 8; kk++)
            _mm512_store_si512((void *)(p + kk * 64),
                               _mm512_i32gather_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(kk)), (const void *)codes, 4));
#else
        for (size_t r = 0; r < REPACK_ROWS; r++)
            for (int kk = 0; kk < 8; kk++) memcpy(p + (kk * REPACK_ROWS + r) * 4, codes[r] + 4 * kk, 4);
#endif
    }
}

void repack_unpack_row(enum quant_type t, const void *panel, size_t n_in, int r, float *out)
{
    enum repack_kind k = repack_kind_of(t);
    if (k == REPACK_F32) {
        const float *v = panel;
        for (size_t i = 0; i < n_in; i++) out[i] = v[(size_t)r * n_in + i];
        return;
    }
    if (k != REPACK_Q8) return;
    const uint8_t *p = panel;
    for (size_t b = 0; b < n_in / QUANT_BLOCK; b++, p += REPACK_Q8_BLOCK_BYTES) {
        const float *s = (const float *)(p + 8 * REPACK_ROWS * 4), *o = s + REPACK_ROWS;
        for (int c = 0; c < 32; c++) {
            int q = p[((c / 4) * REPACK_ROWS + r) * 4 + c % 4];
            out[b * 32 + (size_t)c] = s[r] * (float)q + o[r];
        }
    }
}

/* ---- load-time layout (repack.h) ---- */

bool repack_r16_type(enum quant_type t)
{
    return t == QUANT_Q8_0 || t == QUANT_Q4_0 || t == QUANT_Q4_K || t == QUANT_Q5_K || t == QUANT_Q6_K;
}

/* Q4_K / Q5_K: per super-block of 256 columns, 2304 / 2816 bytes = 16 rows'
 * blocks (repack.h; Q5_K adds the qh quads after Q4_K's layout). */
static void r16_q4k_group(enum quant_type t, const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                          void *out)
{
    const bool q5 = t == QUANT_Q5_K;
    const size_t sbb = q5 ? REPACK_R16_Q5K_BYTES : REPACK_R16_Q4K_BYTES;
    for (size_t sb = 0; sb < n_in / QUANT_K; sb++) {
        uint8_t *o = (uint8_t *)out + sb * sbb;
        uint16_t *d = (uint16_t *)(void *)o, *dm = d + REPACK_ROWS;
        uint8_t *sc = o + 64, *qs = o + 256, *qh = o + REPACK_R16_Q4K_BYTES;
        for (size_t r = 0; r < REPACK_ROWS; r++) {
            if (r >= nr) {
                d[r] = dm[r] = 0;
                for (int k = 0; k < 3; k++) memset(sc + k * 64 + r * 4, 0, 4);
                for (int v = 0; v < 32; v++) memset(qs + v * 64 + r * 4, 0, 4);
                for (int v = 0; q5 && v < 8; v++) memset(qh + v * 64 + r * 4, 0, 4);
                continue;
            }
            const char *row = (const char *)data + (r0 + r) * row_bytes;
            const uint8_t *xsc, *xqs, *xqh = NULL;
            if (q5) {
                const struct quant_block_q5_k *x = (const struct quant_block_q5_k *)(const void *)row + sb;
                d[r] = x->d, dm[r] = x->dmin, xsc = x->scales, xqs = x->qs, xqh = x->qh;
            } else {
                const struct quant_block_q4_k *x = (const struct quant_block_q4_k *)(const void *)row + sb;
                d[r] = x->d, dm[r] = x->dmin, xsc = x->scales, xqs = x->qs;
            }
            for (int k = 0; k < 3; k++) memcpy(sc + k * 64 + r * 4, xsc + 4 * k, 4);
            for (int v = 0; v < 32; v++) memcpy(qs + v * 64 + r * 4, xqs + 4 * v, 4);
            for (int v = 0; q5 && v < 8; v++) memcpy(qh + v * 64 + r * 4, xqh + 4 * v, 4);
        }
    }
}

static void r16_q4k_unpack_row(enum quant_type t, const void *group, size_t n_in, int r, void *row)
{
    const bool q5 = t == QUANT_Q5_K;
    const size_t sbb = q5 ? REPACK_R16_Q5K_BYTES : REPACK_R16_Q4K_BYTES;
    for (size_t sb = 0; sb < n_in / QUANT_K; sb++) {
        const uint8_t *o = (const uint8_t *)group + sb * sbb;
        const uint16_t *d = (const uint16_t *)(const void *)o;
        uint16_t *xd, *xdm;
        uint8_t *xsc, *xqs, *xqh = NULL;
        if (q5) {
            struct quant_block_q5_k *x = (struct quant_block_q5_k *)row + sb;
            xd = &x->d, xdm = &x->dmin, xsc = x->scales, xqs = x->qs, xqh = x->qh;
        } else {
            struct quant_block_q4_k *x = (struct quant_block_q4_k *)row + sb;
            xd = &x->d, xdm = &x->dmin, xsc = x->scales, xqs = x->qs;
        }
        *xd = d[r];
        *xdm = d[REPACK_ROWS + r];
        for (int k = 0; k < 3; k++) memcpy(xsc + 4 * k, o + 64 + k * 64 + r * 4, 4);
        for (int v = 0; v < 32; v++) memcpy(xqs + 4 * v, o + 256 + v * 64 + r * 4, 4);
        for (int v = 0; q5 && v < 8; v++) memcpy(xqh + 4 * v, o + REPACK_R16_Q4K_BYTES + v * 64 + r * 4, 4);
    }
}

/* Q6_K: per super-block of 256 columns, 3360 bytes = 16 rows' blocks (repack.h):
 * scales, ql and qh in 4-byte quads of 16 rows, d last. */
static void r16_q6k_group(const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr, void *out)
{
    for (size_t sb = 0; sb < n_in / QUANT_K; sb++) {
        uint8_t *o = (uint8_t *)out + sb * REPACK_R16_Q6K_BYTES;
        uint8_t *sc = o, *ql = o + REPACK_R16_Q6K_QL, *qh = o + REPACK_R16_Q6K_QH;
        uint16_t *d = (uint16_t *)(void *)(o + REPACK_R16_Q6K_D);
        for (size_t r = 0; r < REPACK_ROWS; r++) {
            if (r >= nr) {
                d[r] = 0;
                for (int k = 0; k < 4; k++) memset(sc + k * 64 + r * 4, 0, 4);
                for (int v = 0; v < 32; v++) memset(ql + v * 64 + r * 4, 0, 4);
                for (int v = 0; v < 16; v++) memset(qh + v * 64 + r * 4, 0, 4);
                continue;
            }
            const struct quant_block_q6_k *x =
                (const struct quant_block_q6_k *)(const void *)((const char *)data + (r0 + r) * row_bytes) + sb;
            d[r] = x->d;
            for (int k = 0; k < 4; k++) memcpy(sc + k * 64 + r * 4, x->scales + 4 * k, 4);
            for (int v = 0; v < 32; v++) memcpy(ql + v * 64 + r * 4, x->ql + 4 * v, 4);
            for (int v = 0; v < 16; v++) memcpy(qh + v * 64 + r * 4, x->qh + 4 * v, 4);
        }
    }
}

static void r16_q6k_unpack_row(const void *group, size_t n_in, int r, void *row)
{
    for (size_t sb = 0; sb < n_in / QUANT_K; sb++) {
        const uint8_t *o = (const uint8_t *)group + sb * REPACK_R16_Q6K_BYTES;
        struct quant_block_q6_k *x = (struct quant_block_q6_k *)row + sb;
        memcpy(&x->d, o + REPACK_R16_Q6K_D + (size_t)r * 2, 2);
        for (int k = 0; k < 4; k++) memcpy(x->scales + 4 * k, o + k * 64 + r * 4, 4);
        for (int v = 0; v < 32; v++) memcpy(x->ql + 4 * v, o + REPACK_R16_Q6K_QL + v * 64 + r * 4, 4);
        for (int v = 0; v < 16; v++) memcpy(x->qh + 4 * v, o + REPACK_R16_Q6K_QH + v * 64 + r * 4, 4);
    }
}

static size_t r16_code_bytes(enum quant_type t) { return t == QUANT_Q8_0 ? 512 : 256; }

void repack_r16_group(enum quant_type t, const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                      void *out)
{
    if (t == QUANT_Q4_K || t == QUANT_Q5_K) {
        r16_q4k_group(t, data, row_bytes, n_in, r0, nr, out);
        return;
    }
    if (t == QUANT_Q6_K) {
        r16_q6k_group(data, row_bytes, n_in, r0, nr, out);
        return;
    }
    size_t nb = n_in / QUANT_BLOCK, cb = r16_code_bytes(t);
    uint16_t *d = out;
    uint8_t *codes = (uint8_t *)out + nb * REPACK_ROWS * sizeof(uint16_t);
    for (size_t r = 0; r < REPACK_ROWS; r++) {
        const char *row = r < nr ? (const char *)data + (r0 + r) * row_bytes : NULL;
        for (size_t b = 0; b < nb; b++) {
            uint8_t *c = codes + b * cb;
            if (!row) {
                d[b * REPACK_ROWS + r] = 0;
                for (size_t k = 0; k < cb / 64; k++) memset(c + k * 64 + r * 4, t == QUANT_Q8_0 ? 0x80 : 0, 4);
                continue;
            }
            if (t == QUANT_Q8_0) {
                const struct quant_block_q8_0 *x = (const struct quant_block_q8_0 *)(const void *)row + b;
                d[b * REPACK_ROWS + r] = x->d;
                for (int k = 0; k < 8; k++)
                    for (int j = 0; j < 4; j++) c[k * 64 + r * 4 + (size_t)j] = (uint8_t)(x->qs[4 * k + j] ^ 0x80);
            } else {
                const struct quant_block_q4_0 *x = (const struct quant_block_q4_0 *)(const void *)row + b;
                d[b * REPACK_ROWS + r] = x->d;
                for (int i = 0; i < 4; i++) memcpy(c + i * 64 + r * 4, x->qs + 4 * i, 4);
            }
        }
    }
}

void repack_r16_unpack_row(enum quant_type t, const void *group, size_t n_in, int r, void *row)
{
    if (t == QUANT_Q4_K || t == QUANT_Q5_K) {
        r16_q4k_unpack_row(t, group, n_in, r, row);
        return;
    }
    if (t == QUANT_Q6_K) {
        r16_q6k_unpack_row(group, n_in, r, row);
        return;
    }
    size_t nb = n_in / QUANT_BLOCK, cb = r16_code_bytes(t);
    const uint16_t *d = group;
    const uint8_t *codes = (const uint8_t *)group + nb * REPACK_ROWS * sizeof(uint16_t);
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *c = codes + b * cb;
        if (t == QUANT_Q8_0) {
            struct quant_block_q8_0 *x = (struct quant_block_q8_0 *)row + b;
            x->d = d[b * REPACK_ROWS + (size_t)r];
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) x->qs[4 * k + j] = (int8_t)(c[k * 64 + r * 4 + j] ^ 0x80);
        } else {
            struct quant_block_q4_0 *x = (struct quant_block_q4_0 *)row + b;
            x->d = d[b * REPACK_ROWS + (size_t)r];
            for (int i = 0; i < 4; i++) memcpy(x->qs + 4 * i, c + i * 64 + r * 4, 4);
        }
    }
}

void repack_r16_matrix(enum quant_type t, void *data, size_t row_bytes, size_t n_in, size_t n_out, void *tmp)
{
    size_t gb = REPACK_ROWS * row_bytes;
    for (size_t r0 = 0; r0 + REPACK_ROWS <= n_out; r0 += REPACK_ROWS) {
        char *g = (char *)data + r0 * row_bytes;
        repack_r16_group(t, g, row_bytes, n_in, 0, REPACK_ROWS, tmp);
        memcpy(g, tmp, gb);
    }
}
