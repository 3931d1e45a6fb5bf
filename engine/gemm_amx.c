/*
 * gemm_amx.c - the AMX tile kernel for F16 / BF16 weights (see gemm_amx.h).
 */
#define _DEFAULT_SOURCE /* syscall() */
#include "gemm_amx.h"

#include "gemm.h"
#include "workers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__) && defined(__AVX512BF16__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__linux__)
#define GEMM_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define R32(n) (((n) + 31) / 32 * 32)

size_t gemm_amx_act_bytes(size_t max_tokens, size_t max_in)
{
    return R32(max_tokens) * R32(max_in) * 2 * sizeof(uint16_t); /* xh and xl */
}

size_t gemm_amx_panel_bytes(size_t max_tokens, size_t max_in)
{
    (void)max_in;
    return 2 * GEMM_AMX_ROWS * GEMM_AMX_KCHUNK * sizeof(uint16_t) + GEMM_AMX_ROWS * R32(max_tokens) * sizeof(float);
}

#ifdef GEMM_AMX

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* the compiler's tile intrinsics are asm statements without a memory clobber:
 * order the plain stores and loads of the scratch around them */
#define AMX_BARRIER() __asm__ volatile("" ::: "memory")

#define AMX_HAS_BF16 1
#define AMX_HAS_INT8 2

/* AMX_HAS_* bits: what the CPU reports and the kernel grants */
static int amx_probe(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    bool tile = d & (1u << 24), bf16 = d & (1u << 22), int8 = d & (1u << 25);
    if (!tile || a < 1) return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl")) return 0;
    const char *e = getenv("SASERVE_AMX");
    if (e && (strcmp(e, "off") == 0 || strcmp(e, "0") == 0)) return 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
    if (bf16 && !(__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)))) bf16 = false; /* AVX-512 BF16 */
    return (bf16 ? AMX_HAS_BF16 : 0) | (int8 && __builtin_cpu_supports("avx512vnni") ? AMX_HAS_INT8 : 0);
}

static int amx_have(void)
{
    static int have = -1; /* relaxed atomics: every writer stores the same value (the request is idempotent) */
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        h = amx_probe();
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h;
}

bool gemm_amx_available(void) { return amx_have() & AMX_HAS_BF16; }
bool gemm_amx_int8_available(void) { return amx_have() & AMX_HAS_INT8; }

struct amx_cfg { /* the palette-1 tile configuration (64 bytes) */
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static void amx_config(void)
{
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { /* tmm0-3 C (F32 16 x 16), tmm4-5 A (16 x 32 BF16), tmm6-7 B (16 pairs x 16) */
        c.colsb[i] = 64;
        c.rows[i] = 16;
    }
    AMX_BARRIER(); /* the configuration's stores happen before the ldtilecfg reads them */
    _tile_loadconfig(&c);
}

struct amx_task {
    enum quant_type t;
    const char *data;
    size_t row_bytes, n_in, n_out, T;
    size_t k32, t32, kp; /* padded columns, padded tokens, column pairs (k32 / 2) */
    const float *x;
    float *y;
    uint32_t *xh, *xl; /* [t32 / 16][kp][16] pairs of BF16 */
    const struct gemm_scratch *s;
};

/* 16 F32 lanes of the BF16 values in v (16 x 16-bit) */
static inline __m512 bf16_to_f32(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }

/* f0 (columns 0-15), f1 (16-31) -> *hi = bf16 of both, *lo = bf16 of the remainders (32 BF16 each) */
static inline void split32(__m512 f0, __m512 f1, __m512i *hi, __m512i *lo)
{
    __m512i h = (__m512i)_mm512_cvtne2ps_pbh(f1, f0);
    __m512 r0 = _mm512_sub_ps(f0, bf16_to_f32(_mm512_castsi512_si256(h)));
    __m512 r1 = _mm512_sub_ps(f1, bf16_to_f32(_mm512_extracti64x4_epi64(h, 1)));
    *hi = h;
    *lo = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);
}

/* lane i -> i * 16: the dword offsets of one column of a 16 x 16 tile (or of 16 pair rows) */
static inline __m512i lanes_x16(void)
{
    return _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 16, 0);
}

static inline __mmask16 mask16(size_t have) { return have >= 16 ? 0xffff : (__mmask16)((1u << have) - 1); }

/* tokens of 16-token tiles [lo, hi) -> xh, xl: pair p of token t at [t / 16][p][t % 16] (zeros past T and n_in) */
static void act_worker(void *p, int ith, int nth)
{
    const struct amx_task *g = p;
    long lo, hi;
    workers_split((long)(g->t32 / 16), ith, nth, &lo, &hi);
    const __m512i idx = lanes_x16();
    for (size_t t = (size_t)lo * 16; t < (size_t)hi * 16; t++) {
        const float *xt = t < g->T ? g->x + t * g->n_in : NULL;
        for (size_t k = 0; k < g->k32; k += 32) {
            __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
            if (xt && k < g->n_in) {
                f0 = _mm512_maskz_loadu_ps(mask16(g->n_in - k), xt + k);
                if (k + 16 < g->n_in) f1 = _mm512_maskz_loadu_ps(mask16(g->n_in - k - 16), xt + k + 16);
            }
            __m512i h, l;
            split32(f0, f1, &h, &l);
            size_t at = ((t / 16) * g->kp + k / 2) * 16 + t % 16;
            _mm512_i32scatter_epi32(g->xh + at, idx, h, 4);
            _mm512_i32scatter_epi32(g->xl + at, idx, l, 4);
        }
    }
    AMX_BARRIER();
}

/* rows [r0, r0 + nr32) (zeros from nr), columns [k0, k0 + kw) of W -> wh, wl (BF16 rows GEMM_AMX_KCHUNK apart) */
static void convert_weights(const struct amx_task *g, size_t r0, size_t nr, size_t nr32, size_t k0, size_t kw,
                            uint16_t *wh, uint16_t *wl)
{
    for (size_t r = 0; r < nr32; r++) {
        uint16_t *oh = wh + r * GEMM_AMX_KCHUNK, *ol = wl + r * GEMM_AMX_KCHUNK;
        const uint16_t *row = r < nr ? (const uint16_t *)(const void *)(g->data + (r0 + r) * g->row_bytes) : NULL;
        for (size_t k = k0; k < k0 + kw; k += 32) {
            size_t have = row && k < g->n_in ? g->n_in - k : 0;
            __mmask32 m = have >= 32 ? 0xffffffffu : (__mmask32)((1u << have) - 1);
            __m512i w = have ? _mm512_maskz_loadu_epi16(m, row + k) : _mm512_setzero_si512();
            /* this line of the next chunk (or of the next block's first chunk), fetched while the tiles run */
            if (have && k + GEMM_AMX_KCHUNK < g->n_in)
                _mm_prefetch((const char *)(row + k + GEMM_AMX_KCHUNK), _MM_HINT_T0);
            else if (have && r0 + GEMM_AMX_ROWS + r < g->n_out)
                _mm_prefetch(g->data + (r0 + GEMM_AMX_ROWS + r) * g->row_bytes + (k - k0) * sizeof(uint16_t),
                             _MM_HINT_T0);
            if (g->t == QUANT_BF16) {
                _mm512_storeu_si512((void *)(oh + (k - k0)), w);
                continue;
            }
            __m512 f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(w)), f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
            __m512i h, l;
            split32(f0, f1, &h, &l);
            _mm512_storeu_si512((void *)(oh + (k - k0)), h);
            _mm512_storeu_si512((void *)(ol + (k - k0)), l);
        }
    }
    AMX_BARRIER();
}

/* Tile registers are immediates: tmm4-5 = A rows 0-15 / 16-31 (as bytes apart),
 * tmm6-7 = B tokens 0-15 / 16-31 (b1 dwords apart), tmm0-3 = C [a][b]. */
static inline void load_a(const uint16_t *a, size_t as)
{
    _tile_loadd(4, a, as);
    _tile_loadd(5, a + 16 * GEMM_AMX_KCHUNK, as);
}

static inline void load_b(const uint32_t *b, size_t b1)
{
    _tile_loadd(6, b, 64);
    _tile_loadd(7, b + b1, 64);
}

static inline void products(void)
{
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/* C tiles 0-3 (rows a0 / a1 x tokens b0 / b1) += A . B over kw columns */
static void tile_block(const struct amx_task *g, const uint16_t *wh, const uint16_t *wl, size_t ob, size_t tp,
                       size_t k0, size_t kw, float *c, bool first)
{
    const size_t cs = 64, as = GEMM_AMX_KCHUNK * sizeof(uint16_t), ntt = g->t32 / 16;
    float *c00 = c + ((ob * 2) * ntt + tp * 2) * 256, *c01 = c00 + 256;
    float *c10 = c + ((ob * 2 + 1) * ntt + tp * 2) * 256, *c11 = c10 + 256;
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, c00, cs);
        _tile_loadd(1, c01, cs);
        _tile_loadd(2, c10, cs);
        _tile_loadd(3, c11, cs);
    }
    const uint16_t *ah = wh + ob * 32 * GEMM_AMX_KCHUNK, *al = wl + ob * 32 * GEMM_AMX_KCHUNK;
    const uint32_t *bh = g->xh + (tp * 2 * g->kp + k0 / 2) * 16, *bl = g->xl + (tp * 2 * g->kp + k0 / 2) * 16;
    const size_t b1 = g->kp * 16; /* the second token tile */
    const bool f16 = g->t == QUANT_F16;
    for (size_t k = 0; k < kw; k += 32) {
        const size_t bo = k / 2 * 16;
        load_a(ah + k, as);
        load_b(bh + bo, b1);
        products(); /* wh xh */
        load_b(bl + bo, b1);
        products(); /* wh xl */
        if (f16) {
            load_a(al + k, as);
            load_b(bh + bo, b1);
            products(); /* wl xh */
        }
    }
    _tile_stored(0, c00, cs);
    _tile_stored(1, c01, cs);
    _tile_stored(2, c10, cs);
    _tile_stored(3, c11, cs);
}

static void amx_worker(void *p, int ith, int nth)
{
    const struct amx_task *g = p;
    long n_blocks = (long)((g->n_out + GEMM_AMX_ROWS - 1) / GEMM_AMX_ROWS), lo, hi;
    workers_split(n_blocks, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    char *panel = (char *)g->s->panels + (size_t)ith * g->s->panel_stride;
    uint16_t *wh = (uint16_t *)(void *)panel, *wl = wh + GEMM_AMX_ROWS * GEMM_AMX_KCHUNK;
    float *c = (float *)(void *)(wl + GEMM_AMX_ROWS * GEMM_AMX_KCHUNK);
    const size_t ntt = g->t32 / 16;
    amx_config();
    for (long bi = lo; bi < hi; bi++) {
        size_t r0 = (size_t)bi * GEMM_AMX_ROWS, nr = g->n_out - r0 < GEMM_AMX_ROWS ? g->n_out - r0 : GEMM_AMX_ROWS;
        size_t nr32 = R32(nr);
        for (size_t k0 = 0; k0 < g->k32; k0 += GEMM_AMX_KCHUNK) {
            size_t kw = g->k32 - k0 < GEMM_AMX_KCHUNK ? g->k32 - k0 : GEMM_AMX_KCHUNK;
            convert_weights(g, r0, nr, nr32, k0, kw, wh, wl);
            for (size_t ob = 0; ob < nr32 / 32; ob++)
                for (size_t tp = 0; tp < ntt / 2; tp++) tile_block(g, wh, wl, ob, tp, k0, kw, c, k0 == 0);
        }
        AMX_BARRIER();
        const __m512i col = lanes_x16();
        for (size_t ot = 0; ot < nr32 / 16 && ot * 16 < nr; ot++) { /* C is [row][token]: y gets its columns */
            __mmask16 m = mask16(nr - ot * 16);
            for (size_t tt = 0; tt < ntt; tt++) {
                const float *ct = c + (ot * ntt + tt) * 256;
                for (size_t j = 0; j < 16 && tt * 16 + j < g->T; j++)
                    _mm512_mask_storeu_ps(g->y + (tt * 16 + j) * g->n_out + r0 + ot * 16, m,
                                          _mm512_i32gather_ps(col, ct + j, 4));
            }
        }
    }
    _tile_release();
}

void gemm_amx_matmul(struct workers *pool, enum quant_type t, const void *data, size_t row_bytes, size_t n_in,
                     size_t n_out, const float *x, size_t T, float *y, const struct gemm_scratch *s)
{
    struct amx_task g = {.t = t, .data = data, .row_bytes = row_bytes, .n_in = n_in, .n_out = n_out, .T = T,
                         .k32 = R32(n_in), .t32 = R32(T), .x = x, .y = y, .s = s};
    g.kp = g.k32 / 2;
    g.xh = s->act;
    g.xl = g.xh + g.t32 * g.kp;
    workers_run(pool, act_worker, &g);
    workers_run(pool, amx_worker, &g);
}

/* ---- AMX-INT8: quantised weight groups of 16 rows (gemm_amx.h) ---- */

void gemm_amx_int8_begin(void)
{
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 6; i += 3) { /* two sets in turn, for even and odd blocks: */
        c.rows[i] = 16, c.colsb[i] = 32;         /* tmm0 / tmm3: A, 16 tokens x 32 int8 activation codes */
        c.rows[i + 1] = 8, c.colsb[i + 1] = 64;  /* tmm1 / tmm4: B, 8 column quads x 16 rows x 4 u8 codes */
        c.rows[i + 2] = 16, c.colsb[i + 2] = 64; /* tmm2 / tmm5: C, 16 tokens x 16 rows int32 */
    }
    AMX_BARRIER(); /* the configuration's stores happen before the ldtilecfg reads them */
    _tile_loadconfig(&c);
}

void gemm_amx_int8_end(void) { _tile_release(); }

/* C tile (token m, row n) of block b into c (16 x 16 int32), on tile set 0
 * (tmm0-2) or 1 (tmm3-5): tiles are not renamed, so the next block's loads
 * overlap this block's product only on the other set */
#define INT8_BLOCK(ta, tb, tc)                                                 \
    do {                                                                       \
        _tile_zero(tc);                                                        \
        _tile_loadd(ta, g->xq + t0 * g->n_in + b * 32, g->n_in);               \
        _tile_loadd(tb, g->codes + b * 512, 64);                               \
        _tile_dpbsud(tc, ta, tb);                                              \
        _tile_stored(tc, c, 64);                                               \
    } while (0)

static inline void int8_block(int set, const struct gemm_amx_q8 *g, size_t t0, size_t b, int32_t *c)
{
    if (set == 0) /* tile numbers are immediates */
        INT8_BLOCK(0, 1, 2);
    else
        INT8_BLOCK(3, 4, 5);
}
#undef INT8_BLOCK

/* acc[t] (16 rows of token t) += block b's scaled dot products c[t], in the
 * VNNI kernels' float order (gemm.h); xd, xa: block b's scales of the tile's
 * 16 tokens */
static inline void int8_epilogue(const struct gemm_amx_q8 *g, const float *xd, const float *xa, size_t b,
                                 const int32_t *c, __m512 *acc)
{
    const __m512 s = _mm512_load_ps(g->s + b * 16);
    if (g->o) {
        const __m512 o = _mm512_load_ps(g->o + b * 16);
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c + 16 * t))),
                                     _mm512_set1_ps(xd[t]));
            acc[t] = _mm512_fmadd_ps(s, f, acc[t]);
            acc[t] = _mm512_fmadd_ps(o, _mm512_set1_ps(xa[t]), acc[t]);
        }
    } else {
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c + 16 * t))),
                                       _mm512_set1_ps(xd[t]), _mm512_set1_ps(xa[t]));
            acc[t] = _mm512_fmadd_ps(s, f, acc[t]);
        }
    }
}

void gemm_amx_int8_group(const struct gemm_amx_q8 *g, float *y, size_t ys, int nr, int32_t *cbuf)
{
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
    int32_t *c0 = cbuf, *c1 = cbuf + 256;
    const size_t t16 = (g->T + 15) / 16 * 16;
    for (size_t t0 = 0; t0 < g->T; t0 += 16) {
        const size_t nt = g->T - t0 < 16 ? g->T - t0 : 16;
        const float *xd = g->xd + t0, *xa = g->xa + t0; /* + b * t16: block b */
        __m512 acc[16];
        for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
        /* two tile sets in turn: block b + 1's product runs while block b's sums are scaled */
        int8_block(0, g, t0, 0, c0);
        const size_t per_pair = t0 == 0 && g->next ? (g->next_bytes + g->nb - 1) / g->nb * 2 : 0;
        for (size_t b = 0; b < g->nb; b += 2) {
            for (size_t o = b * per_pair / 2; o < (b / 2 + 1) * per_pair && o < g->next_bytes; o += 64)
                _mm_prefetch(g->next + o, _MM_HINT_T1);
            if (b + 1 < g->nb) int8_block(1, g, t0, b + 1, c1);
            AMX_BARRIER();
            int8_epilogue(g, xd + b * t16, xa + b * t16, b, c0, acc);
            AMX_BARRIER();
            if (b + 1 >= g->nb) break;
            if (b + 2 < g->nb) int8_block(0, g, t0, b + 2, c0);
            AMX_BARRIER();
            int8_epilogue(g, xd + (b + 1) * t16, xa + (b + 1) * t16, b + 1, c1, acc);
            AMX_BARRIER();
        }
        for (size_t t = 0; t < nt; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ys, m, acc[t]);
    }
}

double gemm_amx_peak(bool int8, double seconds)
{
    if (!(int8 ? gemm_amx_int8_available() : gemm_amx_available())) return 0;
    struct amx_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { /* tmm0-3: C, tmm4-7: A and B, all 16 x 64 bytes */
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    AMX_BARRIER();
    _tile_loadconfig(&c);
    static const uint8_t zeros[1024] __attribute__((aligned(64)));
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_loadd(6, zeros, 64);
    _tile_loadd(7, zeros, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t0 = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, t = t0;
    long iters = 0;
    while (t - t0 < seconds) {
        for (int i = 0; i < 10000; i++) { /* four independent accumulators */
            if (int8) {
                _tile_dpbsud(0, 4, 5);
                _tile_dpbsud(1, 4, 6);
                _tile_dpbsud(2, 7, 5);
                _tile_dpbsud(3, 7, 6);
            } else {
                _tile_dpbf16ps(0, 4, 5);
                _tile_dpbf16ps(1, 4, 6);
                _tile_dpbf16ps(2, 7, 5);
                _tile_dpbf16ps(3, 7, 6);
            }
        }
        iters += 10000;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    _tile_release();
    /* one product: 16 x 16 outputs x 64 int8 (or 32 BF16) multiply-adds, 2 ops each */
    return (double)iters * 4 * 16 * 16 * (int8 ? 64 : 32) * 2 / (t - t0) * 1e-9;
}

#else /* not compiled in */

double gemm_amx_peak(bool int8, double seconds)
{
    (void)int8, (void)seconds;
    return 0;
}

bool gemm_amx_available(void) { return false; }
bool gemm_amx_int8_available(void) { return false; }
void gemm_amx_int8_begin(void) { abort(); }
void gemm_amx_int8_end(void) { abort(); }
void gemm_amx_int8_group(const struct gemm_amx_q8 *g, float *y, size_t ys, int nr, int32_t *cbuf)
{
    (void)g, (void)y, (void)ys, (void)nr, (void)cbuf;
    abort(); /* gemm.c calls these only where gemm_amx_int8_available() */
}

void gemm_amx_matmul(struct workers *pool, enum quant_type t, const void *data, size_t row_bytes, size_t n_in,
                     size_t n_out, const float *x, size_t T, float *y, const struct gemm_scratch *s)
{
    (void)pool, (void)t, (void)data, (void)row_bytes, (void)n_in, (void)n_out, (void)x, (void)T, (void)y, (void)s;
    abort(); /* gemm.c calls it only where gemm_amx_available() */
}

#endif
