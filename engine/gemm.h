/*
 * gemm.h - our own GEMM micro-kernels: y[t][o] = sum_i W[o][i] * x[t][i].
 *
 * Kernel families on panels of 16 weight rows (layouts in repack.h), packed
 * once per call into per-thread scratch and then used for every token (except
 * gemm_matmul_r16 below: Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K weights repacked once at load):
 *   - float (F32, F16 weights x F32 activations): a 4-row x 6-token register
 *     tile of 16-lane AVX-512 FMA partial sums over a K chunk of 1024 columns,
 *     reduced and added to y once per chunk (F32 weights are read in place,
 *     F16 rows converted to F32 once per call);
 *   - bf16 (BF16 weights, where the CPU has AVX-512 BF16 and GEMM_BF16_DOT): the same tile with
 *     vdpbf16ps (two products per F32 lane), BF16 weights read in place, the
 *     activations rounded to BF16 once per call (gemm_uses_bf16);
 *   - AMX (F16, BF16 weights where the CPU grants AMX-BF16: gemm_uses_amx,
 *     gemm_amx.h): TDPBF16PS tiles on operands split into two BF16 terms,
 *     in place of the two kernels above;
 *   - integer (Q8_0, Q4_0, IQ4_NL, Q4_K, IQ4_XS weights): the activations are
 *     quantised per block of 32 to int8 with a float scale d and its offset
 *     term a = d * sum(q); one 512-bit load of the row-interleaved panel feeds a
 *     VNNI u8 x s8 dot (vpdpbusd) for 16 output rows, for a tile of up to 8
 *     tokens; per block, y += (s * d) * idot + o * a (repack.h gives s, o).
 *     The K-quants' activations are per-32 Q8 here, not Q8_K as in quant_dot:
 *     same 8-bit precision, finer scales.
 * Threads split the 16-row output tiles of the matrix on the worker pool; the
 * caller is thread 0 (workers.h). Nothing is allocated: the caller passes
 * scratch sized by gemm_act_bytes and gemm_panel_bytes.
 *
 * ISA: the AVX-512 kernels are compiled in where -march has AVX-512 F/BW/VL/VNNI
 * and used when the CPU reports them (quant_isa_max() == QUANT_ISA_AVX512).
 * QUANT_ISA_SCALAR runs plain-C kernels on the same panels, the same integer
 * arithmetic and the same float operation order as the AVX-512 integer kernel
 * (bit-identical results; the float kernel's reduction order differs). ops.c
 * uses the gemm only at the active ISA AVX512 (SASERVE_QUANT_ISA=avx2 or
 * =scalar therefore also turns it off, restoring the previous paths).
 */
#ifndef SA_GEMM_H
#define SA_GEMM_H

#include "quant.h"

#include <stdbool.h>
#include <stddef.h>

struct workers;

/* BF16 weights through the vdpbf16ps kernel (1) or the exact F32 FMA kernel (0).
 * Measured (tools/gemm_rate, T 128, 2 threads, 4 runs on the shared VM): the BF16
 * kernel gave 0.68-0.79x sgemm where the F32 kernel gave 0.81-1.00x on F16 weights
 * in the same runs, so it is off; 1 builds it in (test_gemm then checks it). */
#ifndef GEMM_BF16_DOT
#define GEMM_BF16_DOT 0
#endif
/* F16 weights through the BF16 kernel (1: rounded to BF16 when packed, 3 mantissa
 * bits lost) or the F32 FMA kernel (0: exact weights). */
#ifndef GEMM_F16_AS_BF16
#define GEMM_F16_AS_BF16 0
#endif

/* true if type t has a gemm kernel at ISA level isa. */
bool gemm_supported(enum quant_isa isa, enum quant_type t);

/* true if the product of type t at isa runs the BF16 dot-product kernel
 * (AVX-512 BF16 reported by the CPU): BF16 weights, and F16 ones when
 * GEMM_F16_AS_BF16. Activations are then rounded to BF16 (relative error
 * <= 2^-8 each: 8 significant bits), the products summed in F32. */
bool gemm_uses_bf16(enum quant_isa isa, enum quant_type t);

/* Scratch bytes: activations for up to max_tokens rows of max_in, and one
 * weight panel per thread (64-byte aligned pointers expected). */
size_t gemm_act_bytes(size_t max_tokens, size_t max_in);
size_t gemm_panel_bytes(size_t max_tokens, size_t max_in);

struct gemm_scratch {
    void *act;       /* gemm_act_bytes(max_tokens, max_in) */
    void *panels;    /* n_panels * panel_stride bytes */
    size_t panel_stride;
    int n_panels;    /* >= workers_count(pool) */
    bool no_amx;     /* true: F16 / BF16 through the FMA (or vdpbf16ps) kernel even where AMX runs */
};

/* true if gemm_matmul of type t at isa with scratch s runs the AMX tile kernel
 * (gemm_amx.h): F16 or BF16 weights, isa AVX512, !s->no_amx, and the CPU and
 * kernel grant AMX-BF16 (SASERVE_AMX=off turns it off for the process). The
 * operands are then split into two BF16 terms each: |y - exact| <= 2^-17 *
 * sum |w x| plus the F32 accumulation. */
bool gemm_uses_amx(enum quant_isa isa, enum quant_type t, const struct gemm_scratch *s);

/* y [T][n_out] = x [T][n_in] . W^T for a matrix of type t (n_out rows row_bytes
 * apart at data). gemm_supported(isa, t) must hold; n_in a multiple of the
 * block size. Runs on pool (thread 0 = the caller). */
void gemm_matmul(enum quant_isa isa, struct workers *pool, enum quant_type t, const void *data, size_t row_bytes,
                 size_t n_in, size_t n_out, const float *x, size_t T, float *y, const struct gemm_scratch *s);

/* ---- weights in the load-time layout (repack.h: Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K groups of 16 rows) ----
 * One product for every row count, decode (1 row) to prefill chunks: the
 * activations are quantised per block of 32 as above (on the caller for 1-2
 * rows, else on the pool), then the threads split the 16-row groups of all the
 * matrices (numbered one after the other) and run a 16-row x up-to-8-token VNNI
 * tile on each group in place, nibbles unpacked in registers (no per-call
 * packing); a matrix's last n_out % 16 plain rows are packed per call into a
 * zero-padded group in the thread's panel scratch. Per block:
 *   y += d_w * (idot * d_x + z * a_x),  z = -8 (Q4_0) or -128 (Q8_0)
 * (Q4_K and Q5_K per sub-block j: y += (d sc_j) * (idot * d_x) + (-dmin m_j) * a_x;
 * Q6_K per sub-block j of 16 columns: y += (d sc_j) * ((idot - 32 s16) * d_x),
 * s16 the sum of the activation codes of those columns)
 * in the same order in the scalar, AVX2 and AVX-512 kernels (bit-identical),
 * and the same for a row whatever the other rows of the batch (batched =
 * alone). ISA: AVX-512 VNNI (16 rows per vector, vpdpbusd), AVX2 (+FMA, F16C:
 * two halves of 8 rows, up to 4 tokens, maddubs: exact for these codes; Q8_0
 * and Q4_0 only, so an AVX2 run keeps the K-quants plain), and scalar, each where
 * compiled in and reported by the CPU. At AVX-512, products of 16 rows or
 * more run on AMX-INT8 where the CPU grants it (gemm_r16_uses_amx,
 * gemm_amx.h): TDPBSUD gives each block's idot for 16 tokens x 16 rows, the
 * same integers, and the float steps above follow in the same order, so it
 * too is bit-identical to the scalar kernel. */
#define GEMM_MAX_MATS 4
struct gemm_mat {
    enum quant_type t;  /* Q8_0, Q4_0, Q4_K, Q5_K or Q6_K (repack_r16_type) */
    const void *data;   /* rows in the load-time layout (the tail rows plain) */
    size_t row_bytes, n_out;
    float *y;           /* [T][n_out] */
};

/* true if weights of type t in the load-time layout have a kernel at isa. */
bool gemm_r16_supported(enum quant_isa isa, enum quant_type t);

/* true if gemm_matmul_r16 of T rows of a type-t matrix at isa with scratch s
 * runs on AMX-INT8: t Q8_0, Q4_0, Q4_K or Q5_K (Q6_K's scales are per 16 columns,
 * half the 32-column tile product the kernel is built on: Q6_K stays on the
 * VNNI tile at every T), isa AVX512, T >= 16, !s->no_amx, and the CPU and kernel grant AMX-INT8
 * (SASERVE_AMX=off turns it off for the process). */
bool gemm_r16_uses_amx(enum quant_isa isa, enum quant_type t, size_t T, const struct gemm_scratch *s);

/* ms[i].y = x [T][n_in] . W_i^T for n <= GEMM_MAX_MATS matrices sharing n_in
 * (the activations are quantised once for all of them). */
void gemm_matmul_r16(enum quant_isa isa, struct workers *pool, const struct gemm_mat *ms, size_t n, size_t n_in,
                     const float *x, size_t T, const struct gemm_scratch *s);

/* The activation quantisation of the integer kernels, exposed for the tests:
 * x [n] (n a multiple of 32) -> q [n], d [n / 32], a [n / 32] (a = d * sum q). */
void gemm_quantize_act(const float *x, size_t n, int8_t *q, float *d, float *a);

/* Machine ceilings for the benchmark, on the calling thread: the rate of
 * independent 512-bit vpdpbusd (int8 multiply-adds, counted as 2 ops each) and
 * vfmadd231ps (2 FLOPs per lane) over about `seconds`. 0 where not compiled in
 * or not supported by the CPU. */
double gemm_peak_int8_gops(double seconds);
double gemm_peak_f32_gflops(double seconds);
/* The AMX tile unit's peak, the same way: independent TDPBSUD (int8, 64 per
 * output) or TDPBF16PS (32 BF16 pairs) products; 0 where AMX is not granted. */
double gemm_peak_amx_gops(bool int8, double seconds);

#endif
