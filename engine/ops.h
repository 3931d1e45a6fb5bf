/*
 * ops.h - compute kernels of the forward pass.
 *
 * ops_matmul is the one place weights are multiplied (and the only user of
 * OpenBLAS): y[t][o] = sum_i W[o][i] * x[t][i] for a batch of T activation
 * rows. Five paths, chosen by the weights' layout, T and the weight type:
 *   - weights in the load-time layout (MODEL_LAYOUT_R16, model.h: Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K
 *     read into memory on an AVX2 or AVX-512 VNNI CPU): gemm_matmul_r16 at the
 *     active quant ISA for every T,
 *     1 to a prefill chunk (the same integers and float order at every T,
 *     AMX-INT8 from 16 rows where the CPU has it, so a row's result does not
 *     depend on its batch); ops_matmul_many runs Q/K/V or gate/up as one task with the
 *     activations quantised once. Measured faster than the per-call panels at
 *     48 and 128 rows (tools/gemm_rate, README) and than the matrix-vector
 *     kernels for decode (build/bench);
 *   - T < OPS_GEMM_MIN_TOKENS: a threaded matrix-vector product over weight
 *     rows with the type's SIMD dot kernel (quant_dot); the activations are
 *     converted once (to Q8_0 for quantised weights). Each weight byte is
 *     read once for all T rows (the quantised kernels are compute-bound here,
 *     well below the bandwidth ceiling: README). Except F32 weights at the
 *     active ISA AVX-512 (OPS_GEMM_DECODE_F32): the gemm float kernel, for
 *     every T including 1, so a row's result does not depend on its batch;
 *   - otherwise, where the active quant ISA is AVX-512 VNNI and gemm.h has a
 *     kernel for the type (F16, BF16, Q8_0, Q4_0, IQ4_NL, Q4_K, IQ4_XS): our
 *     own GEMM on 16-row panels packed per call (gemm.h, repack.h; F16 and
 *     BF16 on the AMX tile kernel where the CPU has it), F32
 *     excluded (OPS_GEMM_F32); Q8_0 / Q4_0 / Q4_K take this path only when mapped
 *     (--mmap) or in a tied token embedding table (mapped Q5_K / Q6_K take the
 *     dequantise + sgemm path below);
 *   - otherwise, F32 weights: one cblas_sgemm straight on the mapped weights.
 *   - otherwise, other types: blocks of rows are dequantised to F32 in
 *     parallel, then multiplied with cblas_sgemm.
 * With reference = true every path is replaced by a plain double-precision
 * loop over dequantised rows (load-time layout rows unpacked first): no BLAS,
 * no SIMD. The numerics tests compare the
 * two on the real models.
 *
 * A struct ops is owned by one step workspace (transformer.h) and used by its thread;
 * all scratch is allocated in ops_init, nothing in the calls.
 */
#ifndef SA_OPS_H
#define SA_OPS_H

#include "gemm.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>

struct workers;

/* sgemm from this many rows. OpenBLAS packs the weight matrix on every call,
 * a full extra pass over the weights, which a decode step of a few dozen rows
 * does not win back: measured on the 110M F32 shape (bench_step --batch, 2
 * threads), 16 and 32 decode rows ran at 160 and 200 tok/s through sgemm
 * against 205-257 through the matrix-vector path. Prefill chunks (128 rows)
 * are several times faster through sgemm. */
#ifndef OPS_GEMM_MIN_TOKENS
#define OPS_GEMM_MIN_TOKENS 48
#endif
#define OPS_DEQ_ROWS 256 /* rows dequantised per sgemm block */
/* F32 weights from OPS_GEMM_MIN_TOKENS rows: 1 = our AVX-512 kernel, 0 = cblas_sgemm.
 * Measured (tools/gemm_rate, T 128, 2 threads, 4 runs): our float kernel runs at
 * 0.66-0.73x one cblas_sgemm on the mapped F32 weights, so F32 stays on sgemm;
 * for F16/BF16 it is 1.1-1.7x the dequantise + sgemm path it replaces. */
#ifndef OPS_GEMM_F32
#define OPS_GEMM_F32 0
#endif
/* F32 weights below OPS_GEMM_MIN_TOKENS rows (decode steps, 1 row included so a
 * sequence decodes bit-identically alone and batched): 1 = our float kernel, which
 * reads each weight row once for up to 6 rows at a time in registers, 0 = the
 * matrix-vector path. */
#ifndef OPS_GEMM_DECODE_F32
#define OPS_GEMM_DECODE_F32 1
#endif

struct ops {
    struct workers *pool; /* borrowed */
    bool reference;
    size_t max_tokens, max_in;
    void *qbuf;   /* [max_tokens][quant_vec_bytes(Q8_0/F32, max_in)] converted activations */
    float *deq;   /* [OPS_DEQ_ROWS][max_in] dequantised weight rows */
    struct gemm_scratch gemm; /* activations [max_tokens][max_in] + one panel per pool thread */
};

int ops_init(struct ops *o, struct workers *pool, size_t max_tokens, size_t max_in, bool reference);
void ops_cleanup(struct ops *o);

/* y [T][w->n_out] = x [T][w->n_in] . W^T. T <= max_tokens, w->n_in <= max_in. */
void ops_matmul(struct ops *o, const struct model_weight *w, const float *x, size_t T, float *y);

/* Several products of the same input x (same n_in and type for the matrix-vector
 * path): ys[i] = x . ws[i]^T. On the matrix-vector path all rows go out in one
 * parallel task, so Q/K/V or gate/up cost one thread hand-off instead of three. */
void ops_matmul_many(struct ops *o, const struct model_weight *const *ws, size_t n, const float *x, size_t T,
                     float *const *ys);

/* out = x / rms(x) * weight (n elements). out may equal x. */
void ops_rmsnorm(float *out, const float *x, const float *weight, size_t n, float eps, bool reference);
/* In-place softmax over n elements. */
void ops_softmax(float *x, size_t n);
/* a[i] = silu(a[i]) * b[i] */
void ops_silu_mul(float *a, const float *b, size_t n);
/* Rotate n_heads heads of head_dim in x for one position; cos/sin hold n_rot/2 values. */
void ops_rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cos_t, const float *sin_t,
              enum rope_mode mode);
/* y += a * x */
void ops_axpy(float *y, float a, const float *x, size_t n);
float ops_dot_f32(const float *a, const float *b, size_t n);
/* out[j] = scale * dot(q, k + j * stride) for j < n_rows, d elements each:
 * attention scores against n_rows cached keys (4 keys at a time). */
void ops_dot_rows(const float *q, const float *k, size_t stride, size_t n_rows, size_t d, float scale, float *out);
/* The same with x / b in F16 (an F16 KV cache). */
void ops_axpy_f16(float *y, float a, const uint16_t *x, size_t n);
float ops_dot_f32_f16(const float *a, const uint16_t *b, size_t n);

/* Machine ceilings for the benchmark: cblas_sgemm GFLOP/s for an m x n x k product. */
double ops_sgemm_gflops(int m, int n, int k, int reps);

#endif
