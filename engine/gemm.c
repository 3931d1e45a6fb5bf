/*
 * gemm.c - GEMM micro-kernels on repacked weight panels (see gemm.h, repack.h).
 */
#include "gemm.h"

#include "gemm_amx.h"
#include "repack.h"
#include "workers.h"

#include <math.h>
#include <string.h>
#include <time.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define GEMM_AVX2 1 /* the load-time layout's kernel without VNNI (gemm_matmul_r16) */
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define GEMM_AVX512 1
#if defined(__AVX512BF16__) && GEMM_BF16_DOT
#define GEMM_BF16 1
#endif
#endif

#define GEMM_NT_Q8 8 /* tokens per integer tile */
/* The integer tiles take their token count as a compile-time constant: CALL(n)
 * for nt = n in 1 .. 7, CALL(8) otherwise. */
#define NT_SWITCH8(nt, CALL)                                                   \
    switch (nt) {                                                              \
    case 1: CALL(1); break;                                                    \
    case 2: CALL(2); break;                                                    \
    case 3: CALL(3); break;                                                    \
    case 4: CALL(4); break;                                                    \
    case 5: CALL(5); break;                                                    \
    case 6: CALL(6); break;                                                    \
    case 7: CALL(7); break;                                                    \
    default: CALL(8); break;                                                   \
    }
#define GEMM_NT_F 6  /* tokens per float tile */
#define GEMM_NR_F 4  /* rows per float tile */
/* the float kernel's tiles of 2 or more tokens fetch each weight row this many
 * floats ahead (0: off): 8 sequences of the 110M F32 model 4.4x -> 4.7-4.9x one
 * (bench_step --batch); a 1-token tile (decode of one sequence, bandwidth-bound)
 * is left to the hardware prefetcher, as before */
#define GEMM_F32_PF 256
#define GEMM_ROWS_OUTER_T 16 /* float kernel: up to this many rows, rows outside tokens (f32_panel_run) */
#define GEMM_KCF 1024 /* float kernel K chunk (columns): a 6-token x 4-row tile stays in L1 */
/* the load-time layout's products of at least this many rows run on AMX-INT8
 * where the CPU has it (fewer: the VNNI tile, which does not pad to 16 tokens) */
#define GEMM_AMX_INT8_MIN_TOKENS 16
#define R16T(n) (((n) + 15) / 16 * 16)

#define ALWAYS_INLINE inline __attribute__((always_inline))

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

bool gemm_supported(enum quant_isa isa, enum quant_type t)
{
    if (repack_kind_of(t) == REPACK_NONE) return false;
    if (isa > quant_isa_max()) return false;
    if (isa == QUANT_ISA_SCALAR) return true;
#ifdef GEMM_AVX512
    return isa == QUANT_ISA_AVX512;
#else
    return false;
#endif
}

/* The integer kernels' activation scratch for T rows of n_in, offsets from
 * gemm_scratch.act: the codes q (whole 16-row tiles: AMX-INT8's last A tile
 * reads them), d and a [T][nb], AMX-INT8's four [nb][R16(T)] scale arrays
 * (gemm_matmul_r16), Q6_K's per-16-column code sums. */
struct act_layout {
    size_t d, a, amx, amx_stride, s16, end;
};

static struct act_layout act_layout(size_t T, size_t n_in)
{
    const size_t nb = n_in / QUANT_BLOCK;
    struct act_layout l;
    l.d = align64(R16T(T) * n_in);
    l.a = l.d + align64(T * nb * sizeof(float));
    l.amx = l.a + align64(T * nb * sizeof(float));
    l.amx_stride = align64(R16T(T) * nb * sizeof(float));
    l.s16 = l.amx + 4 * l.amx_stride;
    l.end = l.s16 + align64(T * (n_in / 16) * sizeof(int16_t));
    return l;
}

size_t gemm_act_bytes(size_t max_tokens, size_t max_in)
{
    size_t q8 = act_layout(max_tokens, max_in).end;
    size_t bf = align64(max_tokens * max_in * sizeof(uint16_t));
    return max_size(max_size(q8, bf), align64(gemm_amx_act_bytes(max_tokens, max_in)));
}

static bool cpu_bf16(void)
{
#ifdef GEMM_BF16
    static int have = -1; /* relaxed atomics: every writer stores the same value */
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h == 1;
#else
    return false;
#endif
}

bool gemm_uses_bf16(enum quant_isa isa, enum quant_type t)
{
    if (isa != QUANT_ISA_AVX512 || !gemm_supported(isa, t) || !cpu_bf16()) return false;
    return t == QUANT_BF16 || (t == QUANT_F16 && GEMM_F16_AS_BF16);
}

/* The AMX-INT8 path's per-thread scratch for a group of the load-time layout:
 * the plain tail rows packed (16 row_bytes <= 17 n_in: Q8_0's 34 bytes per 32
 * columns), the u8 codes (16 n_in), the row scales s and o (2 n_in each), the
 * two C tiles (2 KB). */
static size_t r16_amx_tail_bytes(size_t n_in) { return align64(17 * n_in); }
static size_t r16_amx_codes_bytes(size_t n_in) { return align64(16 * n_in); }
static size_t r16_amx_vec_bytes(size_t n_in) { return align64(2 * n_in); }

size_t gemm_panel_bytes(size_t max_tokens, size_t max_in)
{
    size_t r16 = r16_amx_tail_bytes(max_in) + r16_amx_codes_bytes(max_in) + 2 * r16_amx_vec_bytes(max_in) + 2048;
    return align64(max_size(max_size(max_size(REPACK_F32_BYTES(max_in), REPACK_Q8_BYTES(max_in)), r16),
                            gemm_amx_panel_bytes(max_tokens, max_in)));
}

bool gemm_uses_amx(enum quant_isa isa, enum quant_type t, const struct gemm_scratch *s)
{
    return isa == QUANT_ISA_AVX512 && (t == QUANT_F16 || t == QUANT_BF16) && !s->no_amx &&
           gemm_supported(isa, t) && gemm_amx_available();
}

void gemm_quantize_act(const float *x, size_t n, int8_t *q, float *d, float *a)
{
    for (size_t b = 0; b < n / QUANT_BLOCK; b++) {
        const float *xb = x + b * QUANT_BLOCK;
        float amax = 0;
        for (int i = 0; i < QUANT_BLOCK; i++) { /* not fmaxf: a libm call per element without -ffast-math */
            float v = fabsf(xb[i]);
            amax = v > amax ? v : amax;
        }
        float db = amax / 127.0f, id = db > 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < QUANT_BLOCK; i++) {
            int v = (int)lrintf(xb[i] * id);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[b * QUANT_BLOCK + (size_t)i] = (int8_t)v;
            sum += v;
        }
        d[b] = db;
        a[b] = db * (float)sum;
    }
}

/* ---- integer kernels: panel (16 rows) x up to GEMM_NT_Q8 tokens ---- */

struct q8_acts {
    int8_t *q;    /* [T][n_in] */
    float *d, *a; /* [T][nb] */
    int16_t *s16; /* [T][n_in / 16] sums of q over 16 columns (Q6_K's sub-blocks), or NULL */
    size_t n_in, nb;
};

/* q, d and a of the layout above in the scratch at base (s16 left NULL). */
static struct q8_acts q8_acts_at(void *base, const struct act_layout *l, size_t n_in)
{
    char *p = base;
    return (struct q8_acts){.q = (int8_t *)p, .d = (float *)(void *)(p + l->d), .a = (float *)(void *)(p + l->a),
                            .n_in = n_in, .nb = n_in / QUANT_BLOCK};
}

static void q8_tile_scalar(const uint8_t *panel, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                           int nr)
{
    for (int t = 0; t < nt; t++) {
        const int8_t *xq = x->q + (t0 + (size_t)t) * x->n_in;
        const float *xd = x->d + (t0 + (size_t)t) * x->nb, *xa = x->a + (t0 + (size_t)t) * x->nb;
        for (int r = 0; r < nr; r++) {
            float acc = 0;
            for (size_t b = 0; b < x->nb; b++) {
                const uint8_t *p = panel + b * REPACK_Q8_BLOCK_BYTES;
                const float *s = (const float *)(p + 8 * REPACK_ROWS * 4), *o = s + REPACK_ROWS;
                int32_t idot = 0;
                for (int c = 0; c < QUANT_BLOCK; c++)
                    idot += (int32_t)p[((c / 4) * REPACK_ROWS + r) * 4 + c % 4] * xq[b * QUANT_BLOCK + (size_t)c];
                float sd = s[r] * xd[b];
                acc = fmaf((float)idot, sd, acc);
                acc = fmaf(o[r], xa[b], acc);
            }
            y[(size_t)t * ys + (size_t)r] = acc;
        }
    }
}

#ifdef GEMM_AVX512
static ALWAYS_INLINE void q8_tile_avx512(const uint8_t *panel, const struct q8_acts *x, size_t t0, const int NT,
                                         float *y, size_t ys, __mmask16 m)
{
    __m512 acc[GEMM_NT_Q8];
    const int8_t *xq[GEMM_NT_Q8];
    const float *xd[GEMM_NT_Q8], *xa[GEMM_NT_Q8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = x->q + (t0 + (size_t)t) * x->n_in;
        xd[t] = x->d + (t0 + (size_t)t) * x->nb;
        xa[t] = x->a + (t0 + (size_t)t) * x->nb;
    }
    for (size_t b = 0; b < x->nb; b++) {
        const uint8_t *p = panel + b * REPACK_Q8_BLOCK_BYTES;
        __m512i ia[GEMM_NT_Q8];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) ia[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m512i w = _mm512_load_si512((const void *)(p + 64 * k));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                int32_t v;
                memcpy(&v, xq[t] + b * QUANT_BLOCK + 4 * (size_t)k, 4);
                ia[t] = _mm512_dpbusd_epi32(ia[t], w, _mm512_set1_epi32(v));
            }
        }
        __m512 s = _mm512_load_ps((const void *)(p + 8 * REPACK_ROWS * 4));
        __m512 o = _mm512_load_ps((const void *)(p + 8 * REPACK_ROWS * 4 + 64));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            __m512 sd = _mm512_mul_ps(s, _mm512_set1_ps(xd[t][b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[t]), sd, acc[t]);
            acc[t] = _mm512_fmadd_ps(o, _mm512_set1_ps(xa[t][b]), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, acc[t]);
}

static void q8_tile_avx512_n(const uint8_t *panel, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                             int nr)
{
    __mmask16 m = (__mmask16)((1u << nr) - 1);
#define Q8_TILE(n) q8_tile_avx512(panel, x, t0, n, y, ys, m)
    NT_SWITCH8(nt, Q8_TILE)
#undef Q8_TILE
}
#endif

/* ---- float kernels: 4 rows x up to GEMM_NT_F tokens over columns [k0, k1) ---- */

static void f32_tile_scalar(const float *w, size_t wstride, const float *x, size_t xs, int nt, int nr, size_t k0,
                            size_t k1, float *y, size_t ys, bool first)
{
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) {
            float acc = 0;
            const float *wr = w + (size_t)r * wstride, *xt = x + (size_t)t * xs;
            for (size_t i = k0; i < k1; i++) acc = fmaf(wr[i], xt[i], acc);
            float *o = y + (size_t)t * ys + (size_t)r;
            *o = first ? acc : *o + acc;
        }
}

#ifdef GEMM_AVX512
/* Lane sums of 4 vectors -> 4 floats (a transposing reduction: 13 operations
 * for 4 vectors instead of about 8 each). */
static ALWAYS_INLINE __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0x4E));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, 0xB1));
    return _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, s));
}

static ALWAYS_INLINE void f32_tile_avx512(const float *w, size_t wstride, const float *x, size_t xs, const int NT,
                                          size_t k0, size_t k1, float *y, size_t ys, bool first, __mmask8 rm)
{
    __m512 acc[GEMM_NT_F][GEMM_NR_F];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < GEMM_NR_F; r++) acc[t][r] = _mm512_setzero_ps();
    const float *w0 = w, *w1 = w + wstride, *w2 = w + 2 * wstride, *w3 = w + 3 * wstride;
    size_t i = k0;
    for (; i + 16 <= k1; i += 16) {
        if (GEMM_F32_PF && NT > 1) {
            _mm_prefetch((const char *)(w0 + i + GEMM_F32_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(w1 + i + GEMM_F32_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(w2 + i + GEMM_F32_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(w3 + i + GEMM_F32_PF), _MM_HINT_T0);
        }
        __m512 a0 = _mm512_loadu_ps(w0 + i), a1 = _mm512_loadu_ps(w1 + i), a2 = _mm512_loadu_ps(w2 + i),
               a3 = _mm512_loadu_ps(w3 + i);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)t * xs + i);
            acc[t][0] = _mm512_fmadd_ps(a0, xv, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(a1, xv, acc[t][1]);
            acc[t][2] = _mm512_fmadd_ps(a2, xv, acc[t][2]);
            acc[t][3] = _mm512_fmadd_ps(a3, xv, acc[t][3]);
        }
    }
    if (i < k1) {
        __mmask16 m = (__mmask16)((1u << (k1 - i)) - 1);
        __m512 a0 = _mm512_maskz_loadu_ps(m, w0 + i), a1 = _mm512_maskz_loadu_ps(m, w1 + i),
               a2 = _mm512_maskz_loadu_ps(m, w2 + i), a3 = _mm512_maskz_loadu_ps(m, w3 + i);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)t * xs + i);
            acc[t][0] = _mm512_fmadd_ps(a0, xv, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(a1, xv, acc[t][1]);
            acc[t][2] = _mm512_fmadd_ps(a2, xv, acc[t][2]);
            acc[t][3] = _mm512_fmadd_ps(a3, xv, acc[t][3]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        __m128 s = hsum4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
        float *o = y + (size_t)t * ys;
        if (!first) s = _mm_add_ps(s, _mm_maskz_loadu_ps(rm, o));
        _mm_mask_storeu_ps(o, rm, s);
    }
}

static void f32_tile_avx512_n(const float *w, size_t wstride, const float *x, size_t xs, int nt, int nr, size_t k0,
                              size_t k1, float *y, size_t ys, bool first)
{
    __mmask8 rm = (__mmask8)((1u << nr) - 1);
    switch (nt) {
    case 1: f32_tile_avx512(w, wstride, x, xs, 1, k0, k1, y, ys, first, rm); break;
    case 2: f32_tile_avx512(w, wstride, x, xs, 2, k0, k1, y, ys, first, rm); break;
    case 3: f32_tile_avx512(w, wstride, x, xs, 3, k0, k1, y, ys, first, rm); break;
    case 4: f32_tile_avx512(w, wstride, x, xs, 4, k0, k1, y, ys, first, rm); break;
    case 5: f32_tile_avx512(w, wstride, x, xs, 5, k0, k1, y, ys, first, rm); break;
    default: f32_tile_avx512(w, wstride, x, xs, 6, k0, k1, y, ys, first, rm); break;
    }
}
#endif

#ifdef GEMM_BF16
/* BF16 x BF16 pairs into F32 lanes (vdpbf16ps), 32 columns a step; otherwise as f32_tile_avx512. */
static ALWAYS_INLINE void bf16_tile_avx512(const uint16_t *w, size_t wstride, const uint16_t *x, size_t xs,
                                           const int NT, size_t k0, size_t k1, float *y, size_t ys, bool first,
                                           __mmask8 rm)
{
    __m512 acc[GEMM_NT_F][GEMM_NR_F];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < GEMM_NR_F; r++) acc[t][r] = _mm512_setzero_ps();
    const uint16_t *w0 = w, *w1 = w + wstride, *w2 = w + 2 * wstride, *w3 = w + 3 * wstride;
    for (size_t i = k0; i < k1; i += 32) {
        __mmask32 m = k1 - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (k1 - i)) - 1);
        __m512bh a0 = (__m512bh)_mm512_maskz_loadu_epi16(m, w0 + i), a1 = (__m512bh)_mm512_maskz_loadu_epi16(m, w1 + i),
                 a2 = (__m512bh)_mm512_maskz_loadu_epi16(m, w2 + i), a3 = (__m512bh)_mm512_maskz_loadu_epi16(m, w3 + i);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + (size_t)t * xs + i);
            acc[t][0] = _mm512_dpbf16_ps(acc[t][0], a0, xv);
            acc[t][1] = _mm512_dpbf16_ps(acc[t][1], a1, xv);
            acc[t][2] = _mm512_dpbf16_ps(acc[t][2], a2, xv);
            acc[t][3] = _mm512_dpbf16_ps(acc[t][3], a3, xv);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        __m128 s = hsum4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
        float *o = y + (size_t)t * ys;
        if (!first) s = _mm_add_ps(s, _mm_maskz_loadu_ps(rm, o));
        _mm_mask_storeu_ps(o, rm, s);
    }
}

static void bf16_tile_avx512_n(const uint16_t *w, size_t wstride, const uint16_t *x, size_t xs, int nt, int nr,
                               size_t k0, size_t k1, float *y, size_t ys, bool first)
{
    __mmask8 rm = (__mmask8)((1u << nr) - 1);
    switch (nt) {
    case 1: bf16_tile_avx512(w, wstride, x, xs, 1, k0, k1, y, ys, first, rm); break;
    case 2: bf16_tile_avx512(w, wstride, x, xs, 2, k0, k1, y, ys, first, rm); break;
    case 3: bf16_tile_avx512(w, wstride, x, xs, 3, k0, k1, y, ys, first, rm); break;
    case 4: bf16_tile_avx512(w, wstride, x, xs, 4, k0, k1, y, ys, first, rm); break;
    case 5: bf16_tile_avx512(w, wstride, x, xs, 5, k0, k1, y, ys, first, rm); break;
    default: bf16_tile_avx512(w, wstride, x, xs, 6, k0, k1, y, ys, first, rm); break;
    }
}
#endif

/* ---- driver ---- */

struct gemm_task {
    enum quant_isa isa;
    enum quant_type t;
    const char *data;
    size_t row_bytes, n_in, n_out, T;
    const float *x;
    float *y;
    struct q8_acts acts;
    uint16_t *xb; /* [T][n_in] activations rounded to BF16 (bf16 kernel) */
    bool bf16;
    const struct gemm_scratch *s;
};

static void bf16_act_worker(void *p, int ith, int nth)
{
    const struct gemm_task *g = p;
    long lo, hi;
    workers_split((long)g->T, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++) {
        const float *x = g->x + (size_t)t * g->n_in;
        uint16_t *o = g->xb + (size_t)t * g->n_in;
        size_t i = 0;
#ifdef GEMM_BF16
        for (; i + 32 <= g->n_in; i += 32) /* round to nearest even, as quant_f32_to_bf16 */
            _mm512_storeu_si512((void *)(o + i),
                                (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i)));
#endif
        for (; i < g->n_in; i++) o[i] = quant_f32_to_bf16(x[i]);
    }
}

#ifdef GEMM_BF16
static void bf16_panel_run(const struct gemm_task *g, const uint16_t *w, size_t wstride, size_t r0, int nr)
{
    for (size_t k0 = 0; k0 < g->n_in; k0 += 2 * GEMM_KCF) {
        size_t k1 = g->n_in - k0 < 2 * GEMM_KCF ? g->n_in : k0 + 2 * GEMM_KCF;
        for (size_t t0 = 0; t0 < g->T; t0 += GEMM_NT_F) {
            int nt = g->T - t0 < GEMM_NT_F ? (int)(g->T - t0) : GEMM_NT_F;
            for (int rr = 0; rr < nr; rr += GEMM_NR_F) {
                int n4 = nr - rr < GEMM_NR_F ? nr - rr : GEMM_NR_F;
                bf16_tile_avx512_n(w + (size_t)rr * wstride, wstride, g->xb + t0 * g->n_in, g->n_in, nt, n4, k0, k1,
                                   g->y + t0 * g->n_out + r0 + (size_t)rr, g->n_out, k0 == 0);
            }
        }
    }
}

/* Rows [r0, r0 + nr) as BF16 rows of n_in into panel, zero rows after (F16 rounds to nearest even). */
static void bf16_pack(const struct gemm_task *g, size_t r0, int nr, uint16_t *panel)
{
    for (int r = 0; r < REPACK_ROWS; r++) {
        uint16_t *o = panel + (size_t)r * g->n_in;
        if (r >= nr) {
            memset(o, 0, g->n_in * sizeof *o);
            continue;
        }
        const uint16_t *row = (const uint16_t *)(const void *)(g->data + (r0 + (size_t)r) * g->row_bytes);
        if (g->t == QUANT_BF16) {
            memcpy(o, row, g->n_in * sizeof *o);
            continue;
        }
        size_t i = 0;
        for (; i + 32 <= g->n_in; i += 32) {
            __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + i)));
            __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + i + 16)));
            _mm512_storeu_si512((void *)(o + i), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        for (; i < g->n_in; i++) o[i] = quant_f32_to_bf16(quant_f16_to_f32(row[i]));
    }
}
#endif

static void quant_worker(void *p, int ith, int nth)
{
    const struct gemm_task *g = p;
    long lo, hi;
    workers_split((long)g->T, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++) {
        int8_t *q = g->acts.q + (size_t)t * g->n_in;
        gemm_quantize_act(g->x + (size_t)t * g->n_in, g->n_in, q, g->acts.d + (size_t)t * g->acts.nb,
                          g->acts.a + (size_t)t * g->acts.nb);
        if (g->acts.s16)
            for (size_t j = 0; j < g->n_in / 16; j++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += q[j * 16 + (size_t)i];
                g->acts.s16[(size_t)t * (g->n_in / 16) + j] = (int16_t)sum; /* |sum| <= 16 * 127 */
            }
    }
}

/* AMX-INT8's per-block token scales, [nb][R16(T)] (gemm_amx.h): d, a, -8 a and
 * -128 a (exact: powers of two), zeros for the padding tokens */
struct amx_scales {
    const struct q8_acts *acts;
    size_t T;
    float *d, *a, *a8, *a128;
};

static void amx_scales_worker(void *p, int ith, int nth)
{
    const struct amx_scales *g = p;
    const size_t nb = g->acts->nb, t16 = R16T(g->T);
    long lo, hi;
    workers_split((long)nb, ith, nth, &lo, &hi);
    for (size_t b = (size_t)lo; b < (size_t)hi; b++)
        for (size_t t = 0; t < t16; t++) {
            float d = t < g->T ? g->acts->d[t * nb + b] : 0.0f, a = t < g->T ? g->acts->a[t * nb + b] : 0.0f;
            g->d[b * t16 + t] = d;
            g->a[b * t16 + t] = a;
            g->a8[b * t16 + t] = -8.0f * a;
            g->a128[b * t16 + t] = -128.0f * a;
        }
}

static void q8_panel_run(const struct gemm_task *g, const uint8_t *panel, size_t r0, int nr)
{
    for (size_t t0 = 0; t0 < g->T; t0 += GEMM_NT_Q8) {
        int nt = g->T - t0 < GEMM_NT_Q8 ? (int)(g->T - t0) : GEMM_NT_Q8;
        float *y = g->y + t0 * g->n_out + r0;
#ifdef GEMM_AVX512
        if (g->isa == QUANT_ISA_AVX512) {
            q8_tile_avx512_n(panel, &g->acts, t0, nt, y, g->n_out, nr);
            continue;
        }
#endif
        q8_tile_scalar(panel, &g->acts, t0, nt, y, g->n_out, nr);
    }
}

/* One 4-row x up-to-6-token tile of the float kernel over columns [k0, k1). */
static void f32_tile_at(const struct gemm_task *g, const float *w, size_t wstride, size_t r0, int rr, int nr,
                        size_t t0, size_t k0, size_t k1)
{
    int nt = g->T - t0 < GEMM_NT_F ? (int)(g->T - t0) : GEMM_NT_F;
    int n4 = nr - rr < GEMM_NR_F ? nr - rr : GEMM_NR_F;
    const float *x = g->x + t0 * g->n_in, *wr = w + (size_t)rr * wstride;
    float *y = g->y + t0 * g->n_out + r0 + (size_t)rr;
#ifdef GEMM_AVX512
    if (g->isa == QUANT_ISA_AVX512) {
        f32_tile_avx512_n(wr, wstride, x, g->n_in, nt, n4, k0, k1, y, g->n_out, k0 == 0);
        return;
    }
#endif
    f32_tile_scalar(wr, wstride, x, g->n_in, nt, n4, k0, k1, y, g->n_out, k0 == 0);
}

/* The panel's tiles, chunk by chunk of K. Up to GEMM_ROWS_OUTER_T rows (decode
 * steps) the token tiles of each 4 rows follow one another, so those rows
 * come from DRAM once and then from L1 (measured: 8 sequences of the 110M F32
 * model 4.9x -> 5.2-5.5x one, bench_step --batch); above, each token tile
 * sweeps the panel from L2 with its activations in L1 (0.77x against 0.65x
 * sgemm at 128 rows, gemm_rate F16 with SASERVE_AMX=off). The order of the
 * sums in an output does not depend on this (the same bits either way). */
static void f32_panel_run(const struct gemm_task *g, const float *w, size_t wstride, size_t r0, int nr)
{
    for (size_t k0 = 0; k0 < g->n_in; k0 += GEMM_KCF) {
        size_t k1 = g->n_in - k0 < GEMM_KCF ? g->n_in : k0 + GEMM_KCF;
        if (g->T <= GEMM_ROWS_OUTER_T) {
            for (int rr = 0; rr < nr; rr += GEMM_NR_F)
                for (size_t t0 = 0; t0 < g->T; t0 += GEMM_NT_F) f32_tile_at(g, w, wstride, r0, rr, nr, t0, k0, k1);
        } else {
            for (size_t t0 = 0; t0 < g->T; t0 += GEMM_NT_F)
                for (int rr = 0; rr < nr; rr += GEMM_NR_F) f32_tile_at(g, w, wstride, r0, rr, nr, t0, k0, k1);
        }
    }
}

static void gemm_worker(void *p, int ith, int nth)
{
    const struct gemm_task *g = p;
    long n_groups = (long)((g->n_out + REPACK_ROWS - 1) / REPACK_ROWS), lo, hi;
    workers_split(n_groups, ith, nth, &lo, &hi);
    void *panel = (char *)g->s->panels + (size_t)ith * g->s->panel_stride;
    bool q8 = repack_kind_of(g->t) == REPACK_Q8;
    for (long gi = lo; gi < hi; gi++) {
        size_t r0 = (size_t)gi * REPACK_ROWS;
        int nr = g->n_out - r0 < REPACK_ROWS ? (int)(g->n_out - r0) : REPACK_ROWS;
        if (q8) {
            repack_panel(g->t, g->data, g->row_bytes, g->n_in, r0, (size_t)nr, panel);
            q8_panel_run(g, panel, r0, nr);
#ifdef GEMM_BF16
        } else if (g->bf16 && g->t == QUANT_BF16 && nr == REPACK_ROWS) {
            bf16_panel_run(g, (const uint16_t *)(const void *)(g->data + r0 * g->row_bytes),
                           g->row_bytes / sizeof(uint16_t), r0, nr);
        } else if (g->bf16) {
            bf16_pack(g, r0, nr, panel);
            bf16_panel_run(g, panel, g->n_in, r0, nr);
#endif
        } else if (g->t == QUANT_F32 && nr == REPACK_ROWS) {
            /* F32 rows are read in place; the panel copy only pads a short last tile */
            f32_panel_run(g, (const float *)(g->data + r0 * g->row_bytes), g->row_bytes / sizeof(float), r0, nr);
        } else {
            repack_panel(g->t, g->data, g->row_bytes, g->n_in, r0, (size_t)nr, panel);
            f32_panel_run(g, panel, g->n_in, r0, nr);
        }
    }
}

void gemm_matmul(enum quant_isa isa, struct workers *pool, enum quant_type t, const void *data, size_t row_bytes,
                 size_t n_in, size_t n_out, const float *x, size_t T, float *y, const struct gemm_scratch *s)
{
    if (gemm_uses_amx(isa, t, s)) {
        gemm_amx_matmul(pool, t, data, row_bytes, n_in, n_out, x, T, y, s);
        return;
    }
    struct gemm_task g = {.isa = isa, .t = t, .data = data, .row_bytes = row_bytes, .n_in = n_in, .n_out = n_out,
                          .T = T, .x = x, .y = y, .s = s};
    if (repack_kind_of(t) == REPACK_Q8) {
        struct act_layout l = act_layout(T, n_in);
        g.acts = q8_acts_at(s->act, &l, n_in);
        workers_run(pool, quant_worker, &g);
    } else if (gemm_uses_bf16(isa, t)) {
        g.bf16 = true;
        g.xb = s->act;
        workers_run(pool, bf16_act_worker, &g);
    }
    workers_run(pool, gemm_worker, &g);
}

/* ---- the load-time layout (repack.h, "R16"): Q4_0 / Q8_0 groups of 16 rows ---- */

/* One group (16 rows, any nr <= 16 of them stored) x tokens [t0, t0 + nt):
 * y[t][r] = sum_b d[b][r] * (idot * xd + z * xa), idot = sum codes * xq,
 * z = -8 (Q4_0) or -128 (Q8_0). The scalar and AVX-512 kernels do the same
 * operations in the same order (bit-identical). */
static void r16_tile_scalar(enum quant_type t, const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt,
                            float *y, size_t ys, int nr)
{
    const bool q8 = t == QUANT_Q8_0;
    const size_t nb = x->nb, cb = q8 ? 512 : 256;
    const uint16_t *dp = (const uint16_t *)(const void *)grp;
    const uint8_t *cp = grp + nb * REPACK_ROWS * sizeof(uint16_t);
    const float z = q8 ? -128.0f : -8.0f;
    for (int tt = 0; tt < nt; tt++) {
        const int8_t *xq = x->q + (t0 + (size_t)tt) * x->n_in;
        const float *xd = x->d + (t0 + (size_t)tt) * nb, *xa = x->a + (t0 + (size_t)tt) * nb;
        for (int r = 0; r < nr; r++) {
            float acc = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *c = cp + b * cb;
                const int8_t *xb = xq + b * QUANT_BLOCK;
                int32_t idot = 0;
                if (q8) {
                    for (int k = 0; k < 8; k++)
                        for (int j = 0; j < 4; j++) idot += (int32_t)c[k * 64 + r * 4 + j] * xb[4 * k + j];
                } else {
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            int v = c[i * 64 + r * 4 + j];
                            idot += (int32_t)(v & 0x0f) * xb[4 * i + j] + (int32_t)(v >> 4) * xb[16 + 4 * i + j];
                        }
                }
                float f = fmaf((float)idot, xd[b], z * xa[b]);
                acc = fmaf(quant_f16_to_f32(dp[b * REPACK_ROWS + (size_t)r]), f, acc);
            }
            y[(size_t)tt * ys + (size_t)r] = acc;
        }
    }
}

/* Q4_K scale and min of sub-block j (ggml's 6-bit packing, 12 bytes s). */
static void r16_q4k_scale_min(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K groups (repack.h): per sub-block j of 32 columns
 * y += (d sc_j) * (idot * xd) + (-dmin m_j) * xa, in the AVX-512 kernel's order. */
static void r16_q4k_tile_scalar(const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                                int nr, bool q5)
{
    const size_t nbk = x->n_in / QUANT_K, sbb = q5 ? REPACK_R16_Q5K_BYTES : REPACK_R16_Q4K_BYTES;
    for (int tt = 0; tt < nt; tt++) {
        const int8_t *xq = x->q + (t0 + (size_t)tt) * x->n_in;
        const float *xd = x->d + (t0 + (size_t)tt) * x->nb, *xa = x->a + (t0 + (size_t)tt) * x->nb;
        for (int r = 0; r < nr; r++) {
            float acc = 0;
            for (size_t sb = 0; sb < nbk; sb++) {
                const uint8_t *o = grp + sb * sbb;
                const uint16_t *dd = (const uint16_t *)(const void *)o;
                float d = quant_f16_to_f32(dd[r]), mn = -quant_f16_to_f32(dd[REPACK_ROWS + r]);
                uint8_t sc12[12];
                for (int k = 0; k < 3; k++) memcpy(sc12 + 4 * k, o + 64 + k * 64 + r * 4, 4);
                for (int j = 0; j < 8; j++) {
                    int sc, m;
                    r16_q4k_scale_min(j, sc12, &sc, &m);
                    int32_t idot = 0;
                    const int8_t *xb = xq + sb * QUANT_K + 32 * (size_t)j;
                    for (int i = 0; i < 8; i++)
                        for (int jj = 0; jj < 4; jj++) {
                            int v = o[256 + (size_t)(8 * (j / 2) + i) * 64 + (size_t)r * 4 + (size_t)jj];
                            int c = (j % 2) ? v >> 4 : v & 0x0f;
                            if (q5) /* the fifth bit: bit j of qh quad i */
                                c |= (o[REPACK_R16_Q4K_BYTES + (size_t)i * 64 + (size_t)r * 4 + (size_t)jj] >> j & 1) << 4;
                            idot += (int32_t)c * xb[4 * i + jj];
                        }
                    size_t b = sb * 8 + (size_t)j;
                    acc = fmaf(d * (float)sc, (float)idot * xd[b], acc);
                    acc = fmaf(mn * (float)m, xa[b], acc);
                }
            }
            y[(size_t)tt * ys + (size_t)r] = acc;
        }
    }
}

/* Q6_K's 6-bit code of column quad byte (a, b, h): ql quads A (blocks 0, 2 of
 * the half) and B (1, 3), qh quad H; g = block of the half (repack.h) */
static inline int q6k_code(int g, int a, int b, int h)
{
    switch (g) {
    case 0: return (a & 15) | (h & 3) << 4;
    case 1: return (b & 15) | (h >> 2 & 3) << 4;
    case 2: return a >> 4 | (h >> 4 & 3) << 4;
    default: return b >> 4 | (h >> 6) << 4;
    }
}

/* Q6_K groups (repack.h): per sub-block j of 16 columns, in activation block b = j / 2,
 * y += (d sc_j) * ((idot_j - 32 s16_j) * xd_b), in the AVX-512 kernel's order. */
static void r16_q6k_tile_scalar(const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                                int nr)
{
    const size_t nbk = x->n_in / QUANT_K, n16 = x->n_in / 16;
    for (int tt = 0; tt < nt; tt++) {
        const int8_t *xq = x->q + (t0 + (size_t)tt) * x->n_in;
        const float *xd = x->d + (t0 + (size_t)tt) * x->nb;
        const int16_t *s16 = x->s16 + (t0 + (size_t)tt) * n16;
        for (int r = 0; r < nr; r++) {
            float acc = 0;
            for (size_t sb = 0; sb < nbk; sb++) {
                const uint8_t *o = grp + sb * REPACK_R16_Q6K_BYTES;
                uint16_t dh;
                memcpy(&dh, o + REPACK_R16_Q6K_D + 2 * (size_t)r, 2);
                float d = quant_f16_to_f32(dh);
                for (int bi = 0; bi < 8; bi++) {
                    int h = bi / 4, g = bi % 4;
                    for (int s2 = 0; s2 < 2; s2++) {
                        int j = 2 * bi + s2, sc = (int8_t)o[(j / 4) * 64 + r * 4 + j % 4];
                        int32_t idot = 0;
                        for (int q = 4 * s2; q < 4 * s2 + 4; q++)
                            for (int jj = 0; jj < 4; jj++) {
                                size_t at = (size_t)r * 4 + (size_t)jj;
                                int a = o[REPACK_R16_Q6K_QL + (size_t)(16 * h + q) * 64 + at];
                                int b = o[REPACK_R16_Q6K_QL + (size_t)(16 * h + 8 + q) * 64 + at];
                                int hb = o[REPACK_R16_Q6K_QH + (size_t)(8 * h + q) * 64 + at];
                                idot += q6k_code(g, a, b, hb) * xq[sb * QUANT_K + 32 * (size_t)bi + 4 * (size_t)q + at % 4];
                            }
                        float f = (float)(idot - 32 * s16[sb * 16 + (size_t)j]) * xd[sb * 8 + (size_t)bi];
                        acc = fmaf(d * (float)sc, f, acc);
                    }
                }
            }
            y[(size_t)tt * ys + (size_t)r] = acc;
        }
    }
}

#ifdef GEMM_AVX512
static ALWAYS_INLINE __m512i srl32(__m512i v, int n) { return _mm512_srl_epi32(v, _mm_cvtsi32_si128(n)); }

/* Scale and min of sub-block j for the 16 rows (one per 32-bit lane of s0, s1, s2). */
static ALWAYS_INLINE void q4k_lane_scales(__m512i s0, __m512i s1, __m512i s2, int j, __m512i *sc, __m512i *mn)
{
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    if (j < 4) {
        *sc = _mm512_and_si512(srl32(s0, 8 * j), m6);
        *mn = _mm512_and_si512(srl32(s1, 8 * j), m6);
    } else {
        int jj = j - 4;
        *sc = _mm512_or_si512(_mm512_and_si512(srl32(s2, 8 * jj), m4),
                              _mm512_slli_epi32(_mm512_and_si512(srl32(s0, 8 * jj + 6), m2), 4));
        *mn = _mm512_or_si512(_mm512_and_si512(srl32(s2, 8 * jj + 4), m4),
                              _mm512_slli_epi32(_mm512_and_si512(srl32(s1, 8 * jj + 6), m2), 4));
    }
}

static ALWAYS_INLINE void r16_q4k_tile_avx512(const bool Q5, const uint8_t *grp, const struct q8_acts *x, size_t t0,
                                              const int NT, float *y, size_t ys, __mmask16 msk)
{
    const size_t nbk = x->n_in / QUANT_K, sbb = Q5 ? REPACK_R16_Q5K_BYTES : REPACK_R16_Q4K_BYTES;
    const __m512i sixteen = _mm512_set1_epi8(16);
    const __m512i lo4 = _mm512_set1_epi8(0x0f), sgn = _mm512_set1_epi32((int)0x80000000u);
    __m512 acc[GEMM_NT_Q8];
    const int8_t *xq[GEMM_NT_Q8];
    const float *xd[GEMM_NT_Q8], *xa[GEMM_NT_Q8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = x->q + (t0 + (size_t)t) * x->n_in;
        xd[t] = x->d + (t0 + (size_t)t) * x->nb;
        xa[t] = x->a + (t0 + (size_t)t) * x->nb;
    }
    for (size_t sb = 0; sb < nbk; sb++) {
        const uint8_t *o = grp + sb * sbb;
        __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)o));
        __m512 mv = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(o + 32)))), sgn));
        __m512i s0 = _mm512_loadu_si512((const void *)(o + 64)), s1 = _mm512_loadu_si512((const void *)(o + 128)),
                s2 = _mm512_loadu_si512((const void *)(o + 192));
        for (int p = 0; p < 4; p++) {
            __m512i scA, mA, scB, mB;
            q4k_lane_scales(s0, s1, s2, 2 * p, &scA, &mA);
            q4k_lane_scales(s0, s1, s2, 2 * p + 1, &scB, &mB);
            __m512 sA = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(scA)), oA = _mm512_mul_ps(mv, _mm512_cvtepi32_ps(mA));
            __m512 sB = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(scB)), oB = _mm512_mul_ps(mv, _mm512_cvtepi32_ps(mB));
            __m512i ia[GEMM_NT_Q8], ib[GEMM_NT_Q8];
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) ia[t] = ib[t] = _mm512_setzero_si512();
            const uint8_t *qv = o + 256 + (size_t)p * 8 * 64;
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m512i v = _mm512_loadu_si512((const void *)(qv + 64 * i));
                __m512i lo = _mm512_and_si512(v, lo4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
                if (Q5) { /* + 16 where bit 2 p (low nibbles) or 2 p + 1 (high) of qh quad i is set */
                    __m512i h = _mm512_loadu_si512((const void *)(o + REPACK_R16_Q4K_BYTES + 64 * (size_t)i));
                    lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(1 << (2 * p)))), lo,
                                              sixteen);
                    hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(2 << (2 * p)))), hi,
                                              sixteen);
                }
#pragma GCC unroll 8
                for (int t = 0; t < NT; t++) {
                    const int8_t *xb = xq[t] + sb * QUANT_K + 64 * (size_t)p + 4 * (size_t)i;
                    int32_t v0, v1;
                    memcpy(&v0, xb, 4);
                    memcpy(&v1, xb + 32, 4);
                    ia[t] = _mm512_dpbusd_epi32(ia[t], lo, _mm512_set1_epi32(v0));
                    ib[t] = _mm512_dpbusd_epi32(ib[t], hi, _mm512_set1_epi32(v1));
                }
            }
            size_t b = sb * 8 + 2 * (size_t)p;
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                acc[t] = _mm512_fmadd_ps(sA, _mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), _mm512_set1_ps(xd[t][b])), acc[t]);
                acc[t] = _mm512_fmadd_ps(oA, _mm512_set1_ps(xa[t][b]), acc[t]);
                acc[t] = _mm512_fmadd_ps(sB, _mm512_mul_ps(_mm512_cvtepi32_ps(ib[t]), _mm512_set1_ps(xd[t][b + 1])),
                                         acc[t]);
                acc[t] = _mm512_fmadd_ps(oB, _mm512_set1_ps(xa[t][b + 1]), acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, msk, acc[t]);
}

static void r16_q4k_tile_avx512_n(const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                                  int nr, bool q5)
{
    __mmask16 m = (__mmask16)((1u << nr) - 1);
#define Q4K_TILE(n) r16_q4k_tile_avx512(false, grp, x, t0, n, y, ys, m)
#define Q5K_TILE(n) r16_q4k_tile_avx512(true, grp, x, t0, n, y, ys, m)
    if (q5) {
        NT_SWITCH8(nt, Q5K_TILE)
    } else {
        NT_SWITCH8(nt, Q4K_TILE)
    }
#undef Q4K_TILE
#undef Q5K_TILE
}

/* The codes of 32-column block bi of a Q6_K super-block o for the 16 rows, one
 * vector per column quad (repack.h). */
static ALWAYS_INLINE void q6k_codes(const uint8_t *o, int bi, __m512i *c)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const int h = bi / 4, g = bi % 4;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
        __m512i v = _mm512_loadu_si512((const void *)(o + REPACK_R16_Q6K_QL + (size_t)(16 * h + (g & 1) * 8 + q) * 64));
        __m512i hb = _mm512_loadu_si512((const void *)(o + REPACK_R16_Q6K_QH + (size_t)(8 * h + q) * 64));
        __m512i lo = _mm512_and_si512(g < 2 ? v : _mm512_srli_epi16(v, 4), lo4);
        __m512i hi = g == 0 ? _mm512_slli_epi16(hb, 4) : g == 1 ? _mm512_slli_epi16(hb, 2) : g == 2 ? hb
                                                                                             : _mm512_srli_epi16(hb, 2);
        c[q] = _mm512_or_si512(lo, _mm512_and_si512(hi, m30));
    }
}

static ALWAYS_INLINE void r16_q6k_tile_avx512(const uint8_t *grp, const struct q8_acts *x, size_t t0, const int NT,
                                              float *y, size_t ys, __mmask16 msk)
{
    const size_t nbk = x->n_in / QUANT_K, n16 = x->n_in / 16;
    __m512 acc[GEMM_NT_Q8];
    const int8_t *xq[GEMM_NT_Q8];
    const float *xd[GEMM_NT_Q8];
    const int16_t *s16[GEMM_NT_Q8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = x->q + (t0 + (size_t)t) * x->n_in;
        xd[t] = x->d + (t0 + (size_t)t) * x->nb;
        s16[t] = x->s16 + (t0 + (size_t)t) * n16;
    }
    for (size_t sb = 0; sb < nbk; sb++) {
        const uint8_t *o = grp + sb * REPACK_R16_Q6K_BYTES;
        const __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(o + REPACK_R16_Q6K_D)));
#pragma GCC unroll 8
        for (int bi = 0; bi < 8; bi++) {
            __m512i c[8];
            q6k_codes(o, bi, c);
            /* scales of sub-blocks 2 bi, 2 bi + 1: bytes 2 (bi % 2), + 1 of vector bi / 2's lanes */
            __m512i sv = _mm512_loadu_si512((const void *)(o + (size_t)(bi / 2) * 64));
            const int k0 = 2 * (bi % 2);
            __m512 ds0 = _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(sv, 24 - 8 * k0), 24)));
            __m512 ds1 =
                _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(sv, 16 - 8 * k0), 24)));
            const size_t b = sb * 8 + (size_t)bi, j = sb * 16 + 2 * (size_t)bi;
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const int8_t *xb = xq[t] + b * QUANT_BLOCK;
                __m512i ia = _mm512_setzero_si512(), ib = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    int32_t v0, v1;
                    memcpy(&v0, xb + 4 * q, 4);
                    memcpy(&v1, xb + 16 + 4 * q, 4);
                    ia = _mm512_dpbusd_epi32(ia, c[q], _mm512_set1_epi32(v0));
                    ib = _mm512_dpbusd_epi32(ib, c[q + 4], _mm512_set1_epi32(v1));
                }
                const __m512 xv = _mm512_set1_ps(xd[t][b]);
                __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ia, _mm512_set1_epi32(32 * s16[t][j]))), xv);
                acc[t] = _mm512_fmadd_ps(ds0, f0, acc[t]);
                __m512 f1 =
                    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ib, _mm512_set1_epi32(32 * s16[t][j + 1]))), xv);
                acc[t] = _mm512_fmadd_ps(ds1, f1, acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, msk, acc[t]);
}

static void r16_q6k_tile_avx512_n(const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt, float *y, size_t ys,
                                  int nr)
{
    __mmask16 m = (__mmask16)((1u << nr) - 1);
#define Q6K_TILE(n) r16_q6k_tile_avx512(grp, x, t0, n, y, ys, m)
    NT_SWITCH8(nt, Q6K_TILE)
#undef Q6K_TILE
}
#endif

#ifdef GEMM_AVX512
static ALWAYS_INLINE void r16_tile_avx512(const bool Q8, const uint8_t *grp, const struct q8_acts *x, size_t t0,
                                          const int NT, float *y, size_t ys, __mmask16 m)
{
    const size_t nb = x->nb, cb = Q8 ? 512 : 256;
    const uint16_t *dp = (const uint16_t *)(const void *)grp;
    const uint8_t *cp = grp + nb * REPACK_ROWS * sizeof(uint16_t);
    const float z = Q8 ? -128.0f : -8.0f;
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    __m512 acc[GEMM_NT_Q8];
    const int8_t *xq[GEMM_NT_Q8];
    const float *xd[GEMM_NT_Q8], *xa[GEMM_NT_Q8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = x->q + (t0 + (size_t)t) * x->n_in;
        xd[t] = x->d + (t0 + (size_t)t) * nb;
        xa[t] = x->a + (t0 + (size_t)t) * nb;
    }
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *c = cp + b * cb;
        __m512i w[8];
        if (Q8) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) w[k] = _mm512_loadu_si512((const void *)(c + 64 * k));
        } else {
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i v = _mm512_loadu_si512((const void *)(c + 64 * i));
                w[i] = _mm512_and_si512(v, lo4);
                w[i + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
            }
        }
        __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(dp + b * REPACK_ROWS)));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const int8_t *xb = xq[t] + b * QUANT_BLOCK;
            __m512i ia = _mm512_setzero_si512(), ib = _mm512_setzero_si512(); /* two chains: half the latency */
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                int32_t v0, v1;
                memcpy(&v0, xb + 4 * k, 4);
                memcpy(&v1, xb + 16 + 4 * k, 4);
                ia = _mm512_dpbusd_epi32(ia, w[k], _mm512_set1_epi32(v0));
                ib = _mm512_dpbusd_epi32(ib, w[k + 4], _mm512_set1_epi32(v1));
            }
            __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(ia, ib)), _mm512_set1_ps(xd[t][b]),
                                       _mm512_set1_ps(z * xa[t][b]));
            acc[t] = _mm512_fmadd_ps(s, f, acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, acc[t]);
}

static void r16_tile_avx512_n(enum quant_type t, const uint8_t *grp, const struct q8_acts *x, size_t t0, int nt,
                              float *y, size_t ys, int nr)
{
    __mmask16 m = (__mmask16)((1u << nr) - 1);
#define Q8_0_TILE(n) r16_tile_avx512(true, grp, x, t0, n, y, ys, m)
#define Q4_0_TILE(n) r16_tile_avx512(false, grp, x, t0, n, y, ys, m)
    if (t == QUANT_Q8_0) {
        NT_SWITCH8(nt, Q8_0_TILE)
    } else {
        NT_SWITCH8(nt, Q4_0_TILE)
    }
#undef Q8_0_TILE
#undef Q4_0_TILE
}
#endif

#ifdef GEMM_AVX2
/* Rows [8 h, 8 h + 8) of a group (the h-th 32-byte half of every 64-byte vector)
 * x NT tokens, 8 rows in the 32-bit lanes of a 256-bit vector. No VNNI: Q4_0
 * codes (0..15) x int8 through maddubs (pairs <= 3810, eight summed in int16
 * <= 30480: exact), Q8_0 as signed weights through maddubs(|w|, sign(x, w))
 * (pairs <= 32512: exact) plus 128 * sum(x codes), so idot is the same integer
 * as the other kernels and the float steps are the same: bit-identical. */
static ALWAYS_INLINE void r16_half_avx2(const bool Q8, const uint8_t *grp, const struct q8_acts *x, size_t t0,
                                        const int NT, float *y, size_t ys, int h, int nr)
{
    const size_t nb = x->nb, cb = Q8 ? 512 : 256;
    const uint16_t *dp = (const uint16_t *)(const void *)grp;
    const uint8_t *cp = grp + nb * REPACK_ROWS * sizeof(uint16_t) + 32 * (size_t)h;
    const float z = Q8 ? -128.0f : -8.0f;
    const __m256i lo4 = _mm256_set1_epi8(0x0f), ones16 = _mm256_set1_epi16(1), sign = _mm256_set1_epi8((char)0x80);
    __m256 acc[4];
    const int8_t *xq[4];
    const float *xd[4], *xa[4];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
        xq[t] = x->q + (t0 + (size_t)t) * x->n_in;
        xd[t] = x->d + (t0 + (size_t)t) * nb;
        xa[t] = x->a + (t0 + (size_t)t) * nb;
    }
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *c = cp + b * cb;
        __m256i w[8];
        if (Q8) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(c + 64 * k)), sign);
        } else {
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(c + 64 * i));
                w[i] = _mm256_and_si256(v, lo4);
                w[i + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
            }
        }
        __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(dp + b * REPACK_ROWS + 8 * h)));
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const int8_t *xb = xq[t] + b * QUANT_BLOCK;
            __m256i ia;
            if (Q8) {
                ia = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    int32_t v;
                    memcpy(&v, xb + 4 * k, 4);
                    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w[k]), _mm256_sign_epi8(_mm256_set1_epi32(v), w[k]));
                    ia = _mm256_add_epi32(ia, _mm256_madd_epi16(p, ones16));
                }
                /* + 128 * sum of the block's activation codes: the u8 codes' dot */
                __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xb);
                __m256i sx = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), ones16);
                __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sx), _mm256_extracti128_si256(sx, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
                ia = _mm256_add_epi32(ia, _mm256_slli_epi32(_mm256_broadcastd_epi32(s4), 7));
            } else {
                __m256i p = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    int32_t v0, v1;
                    memcpy(&v0, xb + 4 * k, 4);
                    memcpy(&v1, xb + 16 + 4 * k, 4);
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(v0)));
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[k + 4], _mm256_set1_epi32(v1)));
                }
                ia = _mm256_madd_epi16(p, ones16);
            }
            __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_set1_ps(xd[t][b]), _mm256_set1_ps(z * xa[t][b]));
            acc[t] = _mm256_fmadd_ps(s, f, acc[t]);
        }
    }
    int n8 = nr - 8 * h; /* rows of this half to store */
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        float *o = y + (size_t)t * ys + 8 * (size_t)h;
        if (n8 >= 8) {
            _mm256_storeu_ps(o, acc[t]);
        } else {
            _Alignas(32) float tmp[8];
            _mm256_store_ps(tmp, acc[t]);
            memcpy(o, tmp, (size_t)n8 * sizeof(float));
        }
    }
}

#define R16_CASES2(Q8)                                                         \
    switch (nt) {                                                              \
    case 1: r16_half_avx2(Q8, grp, x, t0, 1, y, ys, h, nr); break;             \
    case 2: r16_half_avx2(Q8, grp, x, t0, 2, y, ys, h, nr); break;             \
    case 3: r16_half_avx2(Q8, grp, x, t0, 3, y, ys, h, nr); break;             \
    default: r16_half_avx2(Q8, grp, x, t0, 4, y, ys, h, nr); break;            \
    }

/* Up to 8 tokens as tiles of 4, rows in two halves of 8 (a half past nr is skipped). */
static void r16_tile_avx2_n(enum quant_type t, const uint8_t *grp, const struct q8_acts *x, size_t t0_, int nt_,
                            float *y_, size_t ys, int nr)
{
    for (int h = 0; h < 2 && 8 * h < nr; h++)
        for (int d = 0; d < nt_; d += 4) {
            int nt = nt_ - d < 4 ? nt_ - d : 4;
            size_t t0 = t0_ + (size_t)d;
            float *y = y_ + (size_t)d * ys;
            if (t == QUANT_Q8_0) {
                R16_CASES2(true)
            } else {
                R16_CASES2(false)
            }
        }
}
#undef R16_CASES2
#endif

/* The types whose groups AMX-INT8 runs (gemm_r16_uses_amx). */
static bool r16_amx_type(enum quant_type t)
{
    return t == QUANT_Q8_0 || t == QUANT_Q4_0 || t == QUANT_Q4_K || t == QUANT_Q5_K;
}

struct r16_task {
    enum quant_isa isa;
    bool amx; /* AMX-INT8 (gemm_amx.h) for the groups of r16_amx_type, instead of the ISA's tile */
    struct amx_scales amx_s;
    const struct gemm_mat *ms;
    size_t n, n_in, T;
    long gbase[GEMM_MAX_MATS + 1]; /* first group number of each matrix; gbase[n] = all groups */
    struct q8_acts acts;
    const struct gemm_scratch *s;
};

/* Group gi of the task (groups numbered across the matrices; *m, the matrix
 * of the previous group, advances): its matrix, first row, row count and 16
 * rows of the load-time layout (the matrix's last n_out % 16 rows are plain:
 * packed into a zero-padded group in panel). */
static const struct gemm_mat *r16_locate(const struct r16_task *g, long gi, size_t *m, size_t *r0)
{
    while (gi >= g->gbase[*m + 1]) (*m)++;
    *r0 = (size_t)(gi - g->gbase[*m]) * REPACK_ROWS;
    return &g->ms[*m];
}

static const uint8_t *r16_group(const struct r16_task *g, long gi, size_t *m, uint8_t *panel,
                                const struct gemm_mat **wp, size_t *r0p, int *nrp)
{
    size_t r0;
    const struct gemm_mat *w = r16_locate(g, gi, m, &r0);
    int nr = w->n_out - r0 < REPACK_ROWS ? (int)(w->n_out - r0) : REPACK_ROWS;
    const uint8_t *grp = (const uint8_t *)w->data + r0 * w->row_bytes;
    if (nr < REPACK_ROWS) {
        repack_r16_group(w->t, w->data, w->row_bytes, g->n_in, r0, (size_t)nr, panel);
        grp = panel;
    }
    *wp = w, *r0p = r0, *nrp = nr;
    return grp;
}

#ifdef GEMM_AVX512
/* A group of the load-time layout as gemm_amx.h's operands: u8 codes of 32
 * columns as 8 quad vectors per block in codes (Q8_0: the group's bytes copied,
 * compact and cache-hot for the token tiles that follow; Q4_0, Q4_K, Q5_K:
 * nibbles unpacked, with Q5_K's fifth bit) and the per-row scales in float. */
static void r16_amx_prepare(enum quant_type t, const uint8_t *grp, size_t n_in, uint8_t *codes, float *sv,
                            float *ov, struct gemm_amx_q8 *q)
{
    const size_t nb = n_in / QUANT_BLOCK;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), sgn = _mm512_set1_epi32((int)0x80000000u);
    q->o = NULL;
    q->s = sv;
    if (t == QUANT_Q4_K || t == QUANT_Q5_K) {
        const bool q5 = t == QUANT_Q5_K;
        q->o = ov;
        q->codes = codes;
        for (size_t sb = 0; sb < n_in / QUANT_K; sb++) {
            const uint8_t *o = grp + sb * (q5 ? REPACK_R16_Q5K_BYTES : REPACK_R16_Q4K_BYTES);
            __m512 dv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)o));
            __m512 mv = _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(o + 32)))),
                sgn));
            __m512i s0 = _mm512_loadu_si512((const void *)(o + 64)), s1 = _mm512_loadu_si512((const void *)(o + 128)),
                    s2 = _mm512_loadu_si512((const void *)(o + 192));
            for (int j = 0; j < 8; j++) {
                __m512i sc, mn;
                q4k_lane_scales(s0, s1, s2, j, &sc, &mn);
                size_t b = sb * 8 + (size_t)j;
                _mm512_store_ps(sv + b * 16, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(sc)));
                _mm512_store_ps(ov + b * 16, _mm512_mul_ps(mv, _mm512_cvtepi32_ps(mn)));
                const uint8_t *qv = o + 256 + (size_t)(j / 2) * 512;
                for (int i = 0; i < 8; i++) {
                    __m512i v = _mm512_loadu_si512((const void *)(qv + 64 * i));
                    v = _mm512_and_si512((j % 2) ? _mm512_srli_epi16(v, 4) : v, lo4);
                    if (q5) { /* + 16 where bit j of qh quad i is set */
                        __m512i h = _mm512_loadu_si512((const void *)(o + REPACK_R16_Q4K_BYTES + 64 * (size_t)i));
                        v = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(1 << j))), v,
                                                 _mm512_set1_epi8(16));
                    }
                    _mm512_store_si512((void *)(codes + b * 512 + 64 * (size_t)i), v);
                }
            }
        }
        return;
    }
    const uint16_t *dp = (const uint16_t *)(const void *)grp;
    const uint8_t *cp = grp + nb * REPACK_ROWS * sizeof(uint16_t);
    for (size_t b = 0; b < nb; b++)
        _mm512_store_ps(sv + b * 16, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(dp + b * 16))));
    if (t == QUANT_Q8_0) {
        memcpy(codes, cp, nb * 512); /* already q + 128 in quad vectors */
        q->codes = codes;
        return;
    }
    q->codes = codes; /* Q4_0: vector i holds columns 4 i + j (low nibbles) and 16 + 4 i + j (high) */
    for (size_t b = 0; b < nb; b++)
        for (int i = 0; i < 4; i++) {
            __m512i v = _mm512_loadu_si512((const void *)(cp + b * 256 + 64 * (size_t)i));
            _mm512_store_si512((void *)(codes + b * 512 + 64 * (size_t)i), _mm512_and_si512(v, lo4));
            _mm512_store_si512((void *)(codes + b * 512 + 64 * (size_t)(i + 4)),
                               _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
        }
}

/* One group (Q8_0, Q4_0, Q4_K, Q5_K) on AMX-INT8 between gemm_amx_int8_begin / _end;
 * gi of [.., hi) is this thread's group, m its matrix. */
static void r16_amx_group(const struct r16_task *g, uint8_t *panel, long gi, long hi, size_t m,
                          const struct gemm_mat *w, const uint8_t *grp, size_t r0, int nr)
{
    uint8_t *codes = panel + r16_amx_tail_bytes(g->n_in);
    float *sv = (float *)(void *)(codes + r16_amx_codes_bytes(g->n_in));
    float *ov = (float *)(void *)((char *)sv + r16_amx_vec_bytes(g->n_in));
    int32_t *cbuf = (int32_t *)(void *)((char *)ov + r16_amx_vec_bytes(g->n_in));
    struct gemm_amx_q8 q = {.xq = g->acts.q, .xd = g->amx_s.d, .n_in = g->n_in, .nb = g->acts.nb, .T = g->T};
    if (gi + 1 < hi) { /* the next group of this thread (maybe of the next matrix) */
        size_t m1 = m, r1;
        const struct gemm_mat *w1 = r16_locate(g, gi + 1, &m1, &r1);
        if (r1 + REPACK_ROWS <= w1->n_out) { /* a full group in place (a tail one is packed per call) */
            q.next = (const char *)w1->data + r1 * w1->row_bytes;
            q.next_bytes = REPACK_ROWS * w1->row_bytes;
        }
    }
    r16_amx_prepare(w->t, grp, g->n_in, codes, sv, ov, &q);
    q.xa = q.o ? g->amx_s.a : w->t == QUANT_Q8_0 ? g->amx_s.a128 : g->amx_s.a8; /* K-quants: xa = a */
    gemm_amx_int8_group(&q, w->y + r0, w->n_out, nr, cbuf);
}
#endif

/* One group times every token, GEMM_NT_Q8 tokens per tile, at the task's ISA. */
static void r16_group_tiles(const struct r16_task *g, const struct gemm_mat *w, const uint8_t *grp, size_t r0, int nr)
{
    for (size_t t0 = 0; t0 < g->T; t0 += GEMM_NT_Q8) {
        int nt = g->T - t0 < GEMM_NT_Q8 ? (int)(g->T - t0) : GEMM_NT_Q8;
        float *y = w->y + t0 * w->n_out + r0;
        if (w->t == QUANT_Q4_K || w->t == QUANT_Q5_K) { /* AVX-512 or scalar (no AVX2 kernel: gemm_r16_supported) */
#ifdef GEMM_AVX512
            if (g->isa == QUANT_ISA_AVX512) {
                r16_q4k_tile_avx512_n(grp, &g->acts, t0, nt, y, w->n_out, nr, w->t == QUANT_Q5_K);
                continue;
            }
#endif
            r16_q4k_tile_scalar(grp, &g->acts, t0, nt, y, w->n_out, nr, w->t == QUANT_Q5_K);
            continue;
        }
        if (w->t == QUANT_Q6_K) { /* the same */
#ifdef GEMM_AVX512
            if (g->isa == QUANT_ISA_AVX512) {
                r16_q6k_tile_avx512_n(grp, &g->acts, t0, nt, y, w->n_out, nr);
                continue;
            }
#endif
            r16_q6k_tile_scalar(grp, &g->acts, t0, nt, y, w->n_out, nr);
            continue;
        }
#ifdef GEMM_AVX512
        if (g->isa == QUANT_ISA_AVX512) {
            r16_tile_avx512_n(w->t, grp, &g->acts, t0, nt, y, w->n_out, nr);
            continue;
        }
#endif
#ifdef GEMM_AVX2
        if (g->isa == QUANT_ISA_AVX2) {
            r16_tile_avx2_n(w->t, grp, &g->acts, t0, nt, y, w->n_out, nr);
            continue;
        }
#endif
        r16_tile_scalar(w->t, grp, &g->acts, t0, nt, y, w->n_out, nr);
    }
}

static void r16_worker(void *p, int ith, int nth)
{
    const struct r16_task *g = p;
    long lo, hi;
    workers_split(g->gbase[g->n], ith, nth, &lo, &hi);
    if (lo >= hi) return;
    uint8_t *panel = (uint8_t *)g->s->panels + (size_t)ith * g->s->panel_stride;
#ifdef GEMM_AVX512
    if (g->amx) gemm_amx_int8_begin();
#endif
    size_t m = 0;
    for (long gi = lo; gi < hi; gi++) {
        const struct gemm_mat *w;
        size_t r0;
        int nr;
        const uint8_t *grp = r16_group(g, gi, &m, panel, &w, &r0, &nr);
#ifdef GEMM_AVX512
        if (g->amx && r16_amx_type(w->t)) { /* Q6_K: the VNNI tile */
            r16_amx_group(g, panel, gi, hi, m, w, grp, r0, nr);
            continue;
        }
#endif
        r16_group_tiles(g, w, grp, r0, nr);
    }
#ifdef GEMM_AVX512
    if (g->amx) gemm_amx_int8_end();
#endif
}

bool gemm_r16_supported(enum quant_isa isa, enum quant_type t)
{
    if (!repack_r16_type(t) || isa > quant_isa_max()) return false;
    if (isa == QUANT_ISA_SCALAR) return true;
#ifdef GEMM_AVX2
    if (isa == QUANT_ISA_AVX2) return t == QUANT_Q8_0 || t == QUANT_Q4_0; /* K-quants: AVX-512 only (AVX2 keeps them plain) */
#endif
#ifdef GEMM_AVX512
    return isa == QUANT_ISA_AVX512;
#else
    return false;
#endif
}

bool gemm_r16_uses_amx(enum quant_isa isa, enum quant_type t, size_t T, const struct gemm_scratch *s)
{
    if (!r16_amx_type(t)) return false;
#ifdef GEMM_AVX512
    return isa == QUANT_ISA_AVX512 && T >= GEMM_AMX_INT8_MIN_TOKENS && !s->no_amx && isa <= quant_isa_max() &&
           gemm_amx_int8_available();
#else
    (void)isa, (void)T, (void)s;
    return false;
#endif
}

void gemm_matmul_r16(enum quant_isa isa, struct workers *pool, const struct gemm_mat *ms, size_t n, size_t n_in,
                     const float *x, size_t T, const struct gemm_scratch *s)
{
    struct r16_task g = {.isa = isa, .ms = ms, .n = n, .n_in = n_in, .T = T, .s = s};
    for (size_t i = 0; i < n; i++)
        g.gbase[i + 1] = g.gbase[i] + (long)((ms[i].n_out + REPACK_ROWS - 1) / REPACK_ROWS);
    struct act_layout l = act_layout(T, n_in);
    char *a = s->act;
    g.acts = q8_acts_at(a, &l, n_in);
    for (size_t i = 0; i < n; i++) {
        if (ms[i].t == QUANT_Q6_K) g.acts.s16 = (int16_t *)(void *)(a + l.s16);
        g.amx = g.amx || gemm_r16_uses_amx(isa, ms[i].t, T, s);
    }
    if (g.amx) {
        memset(a + T * n_in, 0, (R16T(T) - T) * n_in); /* the last A tile's padding rows */
        float *f = (float *)(void *)(a + l.amx);
        size_t st = l.amx_stride / sizeof(float);
        g.amx_s = (struct amx_scales){.acts = &g.acts, .T = T, .d = f, .a = f + st, .a8 = f + 2 * st, .a128 = f + 3 * st};
    }
    struct gemm_task qt = {.x = x, .n_in = n_in, .T = T, .acts = g.acts};
    if (T > 2)
        workers_run(pool, quant_worker, &qt);
    else /* a row or two: quantised here, not worth a thread hand-off */
        quant_worker(&qt, 0, 1);
    if (g.amx) workers_run(pool, amx_scales_worker, &g.amx_s);
    workers_run(pool, r16_worker, &g);
}

/* ---- machine ceilings ---- */

#ifdef GEMM_AVX512
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#endif

double gemm_peak_int8_gops(double seconds)
{
#ifdef GEMM_AVX512
    if (quant_isa_max() < QUANT_ISA_AVX512) return 0;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
            a9 = a0, a10 = a0, a11 = a0;
    const __m512i u = _mm512_set1_epi8(1), v = _mm512_set1_epi8(-1);
    double t0 = now_s(), t = t0;
    long iters = 0;
    while (t - t0 < seconds) {
        for (int i = 0; i < 100000; i++) {
            a0 = _mm512_dpbusd_epi32(a0, u, v); a1 = _mm512_dpbusd_epi32(a1, u, v);
            a2 = _mm512_dpbusd_epi32(a2, u, v); a3 = _mm512_dpbusd_epi32(a3, u, v);
            a4 = _mm512_dpbusd_epi32(a4, u, v); a5 = _mm512_dpbusd_epi32(a5, u, v);
            a6 = _mm512_dpbusd_epi32(a6, u, v); a7 = _mm512_dpbusd_epi32(a7, u, v);
            a8 = _mm512_dpbusd_epi32(a8, u, v); a9 = _mm512_dpbusd_epi32(a9, u, v);
            a10 = _mm512_dpbusd_epi32(a10, u, v); a11 = _mm512_dpbusd_epi32(a11, u, v);
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
            __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        }
        iters += 100000;
        t = now_s();
    }
    volatile int sink = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a11));
    (void)sink;
    return (double)iters * 12 * 64 * 2 / (t - t0) * 1e-9;
#else
    (void)seconds;
    return 0;
#endif
}

double gemm_peak_amx_gops(bool int8, double seconds) { return gemm_amx_peak(int8, seconds); }

double gemm_peak_f32_gflops(double seconds)
{
#ifdef GEMM_AVX512
    if (quant_isa_max() < QUANT_ISA_AVX512) return 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
           a9 = a0, a10 = a0, a11 = a0;
    const __m512 u = _mm512_set1_ps(1e-7f), v = _mm512_set1_ps(1e-7f);
    double t0 = now_s(), t = t0;
    long iters = 0;
    while (t - t0 < seconds) {
        for (int i = 0; i < 100000; i++) {
            a0 = _mm512_fmadd_ps(u, v, a0); a1 = _mm512_fmadd_ps(u, v, a1);
            a2 = _mm512_fmadd_ps(u, v, a2); a3 = _mm512_fmadd_ps(u, v, a3);
            a4 = _mm512_fmadd_ps(u, v, a4); a5 = _mm512_fmadd_ps(u, v, a5);
            a6 = _mm512_fmadd_ps(u, v, a6); a7 = _mm512_fmadd_ps(u, v, a7);
            a8 = _mm512_fmadd_ps(u, v, a8); a9 = _mm512_fmadd_ps(u, v, a9);
            a10 = _mm512_fmadd_ps(u, v, a10); a11 = _mm512_fmadd_ps(u, v, a11);
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
            __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        }
        iters += 100000;
        t = now_s();
    }
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(a0, a11));
    (void)sink;
    return (double)iters * 12 * 16 * 2 / (t - t0) * 1e-9;
#else
    (void)seconds;
    return 0;
#endif
}
