/*
 * gemm_amx.h - the AMX tile kernel for F16 and BF16 weights (internal to gemm.c).
 *
 * y [T][n_out] = x [T][n_in] . W^T with Intel AMX (TDPBF16PS: a 16 x 16 F32
 * tile += a 16 x 32 BF16 tile times a 32 x 16 BF16 tile, products exact, sums
 * in F32). Operands are split into two BF16 terms so the result keeps close to
 * F32 accuracy:
 *   x = xh + xl (xh = bf16(x), xl = bf16(x - xh), |x - xh - xl| <= 2^-18 |x|)
 *   F16 w = wh + wl exactly (an F16 significand has 11 bits, wh takes 8, the
 *   rest fits wl); BF16 w = wh.
 *   y = sum wh xh + wh xl (+ wl xh for F16): 2 (BF16) or 3 (F16) tile products
 *   per 32 columns; the dropped wl xl is <= 2^-18 |w x|, so each product is
 *   within 2^-17 |w x| plus the F32 accumulation.
 * Layout: W is the A operand (16 output rows x 32 columns, converted per call
 * into per-thread scratch, K_CHUNK columns of a block of AMX_ROWS rows at a
 * time); x is the B operand, converted once per call into the pair-interleaved
 * ("VNNI") layout, tokens padded with zeros to a multiple of 32 and columns to
 * a multiple of 32. Each thread owns blocks of AMX_ROWS output rows; its tiles
 * accumulate a 32-row x 32-token square over a K chunk, kept between chunks
 * in the thread's accumulator scratch, and written to y transposed at the end.
 *
 * AMX-INT8 (gemm_amx_int8_group, for gemm.c's load-time Q8_0 / Q4_0 / Q4_K / Q5_K
 * groups of 16 rows, repack.h): TDPBSUD multiplies a 16-token x 32-column tile
 * of int8 activation codes (A) by the group's u8 weight codes of one block of
 * 32 columns (B: 8 column quads x 16 rows x 4, the load-time layout's Q8_0
 * vectors; gemm.c copies or unpacks each group into per-thread scratch first,
 * which measured faster than tile loads from the weights in place). Two tile
 * sets (A, B, C) take even and odd blocks in turn. The 16 x 16 int32 block dot products are
 * the same integers the VNNI kernels compute, so the float epilogue below,
 * done per block in the VNNI kernels' order, gives their bits exactly.
 *
 * Threading: gemm_amx_matmul runs on the worker pool (thread 0 = the caller);
 * each pool thread loads its own tile configuration and releases it before
 * returning. Permission for the tile state is asked of the kernel once per
 * process (arch_prctl ARCH_REQ_XCOMP_PERM) by gemm_amx_usable.
 */
#ifndef SA_GEMM_AMX_H
#define SA_GEMM_AMX_H

#include "quant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct workers;
struct gemm_scratch;

#define GEMM_AMX_ROWS 128   /* output rows per thread task */
#define GEMM_AMX_KCHUNK 256 /* columns per weight conversion */

/* CPU reports AMX-TILE, AMX-BF16 and AVX-512 BF16, the kernel granted the tile
 * state, it is compiled in, and SASERVE_AMX is not "off" (read once). */
bool gemm_amx_available(void);

/* Scratch: the split activations (shared) and per thread the converted weight
 * chunk + accumulators. */
size_t gemm_amx_act_bytes(size_t max_tokens, size_t max_in);
size_t gemm_amx_panel_bytes(size_t max_tokens, size_t max_in);

/* CPU reports AMX-TILE, AMX-INT8 and AVX-512 VNNI, the kernel granted the tile
 * state, it is compiled in, and SASERVE_AMX is not "off". */
bool gemm_amx_int8_available(void);

/* One group of 16 weight rows, prepared by gemm.c, times T tokens of
 * activations quantised per block of 32 (gemm.h). Per block b, row r, token t:
 *   idot = sum_k xq[t][32 b + k] * codes[b][k / 4][r][k % 4]
 *   o == NULL: y += s[b][r] * (idot * xd[b][t] + xa[b][t])   (Q8_0, Q4_0: xa = z a)
 *   else:      y += s[b][r] * (idot * xd[b][t]);  y += o[b][r] * xa[b][t]   (Q4_K: xa = a)
 * xq holds R16(T) rows n_in apart, xd and xa R16(T) columns (rows and columns
 * past T are read, their sums dropped). */
struct gemm_amx_q8 {
    const uint8_t *codes; /* [nb][8][16][4] u8 */
    const float *s, *o;   /* [nb][16], 64-byte aligned; o NULL: the zero-point form */
    const int8_t *xq;     /* [R16(T)][n_in] */
    const float *xd, *xa; /* [nb][R16(T)]: the tokens' scales of each block, side by side */
    size_t n_in, nb, T;
    const char *next;     /* the next group's bytes, fetched into the caches during the first tokens */
    size_t next_bytes;
};

/* Load / release this thread's tile configuration around gemm_amx_int8_group calls. */
void gemm_amx_int8_begin(void);
void gemm_amx_int8_end(void);
/* y[t][r] for t < T, r < nr (rows ys floats apart); cbuf: 2 KB, 64-byte aligned. */
void gemm_amx_int8_group(const struct gemm_amx_q8 *g, float *y, size_t ys, int nr, int32_t *cbuf);

/* The tile unit's peak on the calling thread over about `seconds`: independent
 * TDPBSUD (int8) or TDPBF16PS products, in ops/s (a multiply-add = 2), 0
 * where unavailable. */
double gemm_amx_peak(bool int8, double seconds);

/* t is QUANT_F16 or QUANT_BF16; any n_in, n_out, T >= 1. */
void gemm_amx_matmul(struct workers *pool, enum quant_type t, const void *data, size_t row_bytes, size_t n_in,
                     size_t n_out, const float *x, size_t T, float *y, const struct gemm_scratch *s);

#endif
