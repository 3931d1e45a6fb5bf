/*
 * repack.h - row-interleaved weight panels for the GEMM micro-kernels (gemm.h).
 *
 * A panel holds REPACK_ROWS (16) consecutive output rows of a weight matrix,
 * interleaved so that one 512-bit vector carries the same few input columns
 * of all 16 rows: one load then feeds a multiply-add for 16 output rows at
 * once, and every 32-bit lane of the accumulator belongs to one output row
 * (no horizontal sums). The technique is ik_llama.cpp's row-interleaved
 * repacking (Q4_0_R8, Q8_0_R8, Q4_K_R4; its pull requests #54, #132, #533);
 * the layouts below are our own. Rows past the matrix's end are zero.
 *
 * Float panel (F16, BF16 weights; F32 weights are read in place), n_in columns:
 *   float v[16][n_in]            v[r][i] = W[r0 + r][i] (F16/BF16 -> F32 is exact)
 *   REPACK_F32_BYTES(n_in) = 64 * n_in bytes. Rows stay whole here: the float
 *   kernel keeps a 4-row x 6-token tile of 16-lane partial sums in registers
 *   and reduces them once per K chunk, so it needs no interleave, only the
 *   conversion done once per call instead of once per token tile.
 *
 * Integer panel (Q8_0, Q4_0, IQ4_NL, Q4_K, IQ4_XS weights), n_in / 32 blocks
 * of 32 columns, each block
 *   uint8_t q[8][16][4]          q[k][r][j] = code of column 32 b + 4 k + j of row r
 *   float   s[16], o[16]         W[r][c] = s[r] * q + o[r] for every column c of the block
 *   (640 bytes; REPACK_Q8_BYTES(n_in) = 20 * n_in)
 * The codes are unsigned so that VNNI's u8 x s8 dot (vpdpbusd) multiplies them
 * by the signed Q8 activations directly:
 *   Q8_0    q = qs + 128          s = d           o = -128 d
 *   Q4_0    q = nibble            s = d           o = -8 d
 *   IQ4_NL  q = kvalues[nib]+128  s = d           o = -128 d
 *   Q4_K    q = nibble            s = d * sc_j    o = -dmin * m_j      (sub-block j of 32)
 *   IQ4_XS  q = kvalues[nib]+128  s = d*(ls-32)   o = -128 s
 * All these are exact rewrites of the type's dequantisation (an F16 scale
 * times a small integer is exact in float), so repack_unpack_row reproduces
 * quant_dequantize_row to within one rounding of the final s * q + o.
 *
 * These panels are built by the caller into its own scratch (gemm.c packs one
 * panel per output tile on the fly and reuses it for every token of the
 * call): the path of every type above except Q8_0 / Q4_0 / Q4_K weights read into
 * memory, which are repacked once at load into the compact layout at the end
 * of this file instead. All functions are pure and thread-safe.
 */
#ifndef SA_REPACK_H
#define SA_REPACK_H

#include "quant.h"

#include <stdbool.h>
#include <stddef.h>

#define REPACK_ROWS 16
#define REPACK_F32_BYTES(n_in) ((size_t)(n_in) * REPACK_ROWS * sizeof(float))
#define REPACK_Q8_BLOCK_BYTES (8 * REPACK_ROWS * 4 + 2 * REPACK_ROWS * sizeof(float))
#define REPACK_Q8_BYTES(n_in) ((size_t)(n_in) / QUANT_BLOCK * REPACK_Q8_BLOCK_BYTES)

enum repack_kind {
    REPACK_NONE = 0, /* the type has no panel: callers use another path */
    REPACK_F32,
    REPACK_Q8,
};

/* The panel kind of weight type t. */
enum repack_kind repack_kind_of(enum quant_type t);
/* Bytes of one panel of n_in columns for type t (0 for REPACK_NONE). */
size_t repack_panel_bytes(enum quant_type t, size_t n_in);

/* Pack rows [r0, r0 + nr) (nr <= REPACK_ROWS; the rest are zero) of a matrix of
 * type t, n_in columns, rows row_bytes apart starting at data, into panel
 * (repack_panel_bytes(t, n_in) bytes, 64-byte aligned). */
void repack_panel(enum quant_type t, const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                  void *panel);

/* Row r (< REPACK_ROWS) of a panel back to floats: the round-trip test. */
void repack_unpack_row(enum quant_type t, const void *panel, size_t n_in, int r, float *out);

/* ---- the load-time layout: groups of 16 rows, repacked once, in place ----
 *
 * Weights read into memory (not --mmap) of type Q8_0, Q4_0, Q4_K, Q5_K or Q6_K are
 * rewritten at load (model.c) where the active quant ISA has a kernel for them
 * (gemm_r16_supported: AVX-512 VNNI for all five, AVX2 for Q8_0 / Q4_0; never
 * with SASERVE_QUANT_ISA=scalar), group by group of REPACK_ROWS (16)
 * consecutive rows, into the same bytes: a group of 16 rows occupies exactly
 * 16 * row_bytes. Q8_0 / Q4_0, nb = n_in / 32 blocks:
 *   uint16_t d[nb][16]            F16 scale of block b of row r
 *   then per block b the codes of the 16 rows, 64-byte vectors:
 *     Q4_0: uint8_t qs[4][16][4]  qs[i][r][j] = byte 4 i + j of the block's qs in row r
 *           (low nibble = column 4 i + j, high nibble = column 16 + 4 i + j: one AND
 *           and one shift+AND give the u8 codes of 8 columns x 16 rows)
 *     Q8_0: uint8_t q[8][16][4]   q[k][r][j] = qs[4 k + j] of row r + 128 (unsigned)
 *   so that W[r][c] = d[b][r] * (code - z) with z = 8 (Q4_0) or 128 (Q8_0): the
 *   kernel of gemm.h multiplies the u8 codes by the int8 activations with VNNI
 *   (or, on AVX2, maddubs) and corrects by z * sum(activation codes).
 * Q4_K, per super-block of 256 columns (REPACK_R16_Q4K_BYTES = 2304 = 16 x 144):
 *   uint16_t d[16], dmin[16]; uint8_t sc[3][16][4] (sc[k][r][j] = scales[4 k + j]
 *   of row r: ggml's 6-bit packing kept, decoded per 32-bit lane by the kernel);
 *   uint8_t qs[32][16][4] (qs[v][r][j] = qs[4 v + j] of row r: vectors 8 p ..
 *   8 p + 7 hold sub-blocks 2 p (low nibbles) and 2 p + 1 (high nibbles));
 *   W = d sc_j q - dmin m_j for sub-block j.
 * Q5_K, per super-block (REPACK_R16_Q5K_BYTES = 2816 = 16 x 176): Q4_K's 2304
 *   bytes, then uint8_t qh[8][16][4] (qh[v][r][j] = qh[4 v + j] of row r): the
 *   code of column 4 i + j of sub-block s is its nibble | (bit s of qh quad i,
 *   byte j) << 4, 0..31; W as Q4_K's.
 * Q6_K, per super-block of 256 columns (REPACK_R16_Q6K_BYTES = 3360 = 16 x 210):
 *   int8_t sc[4][16][4]  (sc[k][r][j] = scales[4 k + j] of row r: sub-block 4 k + j
 *                         of 16 columns), at 0
 *   uint8_t ql[32][16][4] (ql[v][r][j] = ql[4 v + j] of row r), at REPACK_R16_Q6K_QL
 *   uint8_t qh[16][16][4] (qh[v][r][j] = qh[4 v + j] of row r), at REPACK_R16_Q6K_QH
 *   uint16_t d[16]        (F16), at REPACK_R16_Q6K_D
 *   so that for half h, column quad q of 32-column block g of the half (block
 *   4 h + g of the super-block), A = ql[16 h + q], B = ql[16 h + 8 + q],
 *   H = qh[8 h + q]: the 6-bit codes are g = 0: A & 15 | (H & 3) << 4;
 *   1: B & 15 | (H >> 2 & 3) << 4; 2: A >> 4 | (H >> 4 & 3) << 4;
 *   3: B >> 4 | (H >> 6) << 4 (ggml's order), and W = d sc_j (code - 32).
 * Memory: the file's size, no copy. The last n_out % 16 rows of a matrix stay
 * in the plain layout (gemm.c packs them per call into a zero-padded group in
 * scratch). Row rearrangements only: repack_r16_unpack_row gives back the
 * plain bytes exactly. */
#define REPACK_R16_ROWS REPACK_ROWS

#define REPACK_R16_Q4K_BYTES (16 * 144)
#define REPACK_R16_Q5K_BYTES (16 * 176)
#define REPACK_R16_Q6K_BYTES (16 * 210)
#define REPACK_R16_Q6K_QL 256
#define REPACK_R16_Q6K_QH (256 + 2048)
#define REPACK_R16_Q6K_D (256 + 2048 + 1024)

/* true if type t has the load-time layout (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). */
bool repack_r16_type(enum quant_type t);
/* Rows [r0, r0 + nr) (nr <= 16; the rest zero: scale 0) of a plain matrix into
 * one group at out (16 * row_bytes bytes; out must not overlap the source). */
void repack_r16_group(enum quant_type t, const void *data, size_t row_bytes, size_t n_in, size_t r0, size_t nr,
                      void *out);
/* Row r (< 16) of a group back to its plain bytes (row_bytes of them) at row. */
void repack_r16_unpack_row(enum quant_type t, const void *group, size_t n_in, int r, void *row);
/* Every full group of a plain matrix (rows [0, n_out - n_out % 16)) rewritten in
 * place; tmp holds 16 * row_bytes bytes. */
void repack_r16_matrix(enum quant_type t, void *data, size_t row_bytes, size_t n_in, size_t n_out, void *tmp);

#endif
