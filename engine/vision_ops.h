/*
 * vision_ops.h - image operators of the phiDNN forward pass (phidnn.h), and its
 * seeded noise source. No HTTP, no JSON, no allocation: callers pass scratch.
 *
 * Activation layout: "CBHW", float32, channel-major with the batch inside, so
 * x[c][b][i][j] = x[((c * nb + b) * h + i) * w + j]. A 3x3 convolution over a
 * batch of nb images is then ONE sgemm:
 *
 *   col[(ci*9 + di*3 + dj)][b*ho*wo + oi*wo + oj] = x[ci][b][oi*s + di - 1][oj*s + dj - 1]
 *                                                   (0 outside the image: pad 1)
 *   y[co][n] = bias[co] + sum_k W[co][k] * col[k][n]      (W = torch's [cout][cin][3][3])
 *
 * with ho = (h - 1) / s + 1, wo = (w - 1) / s + 1 (stride s = 1 or 2).
 * Plane operators (ReLU, sigmoid, max-pool, up-sample, down-scale) treat the
 * tensor as c*nb independent h x w planes. Dense layers take rows [nb][in]
 * (vops_cbhw_to_rows flattens CBHW into torch's per-image C,H,W order):
 *   y[b][o] = bias[o] + sum_i x[b][i] * W[o][i]    (one sgemm, W = torch's [out][in]).
 *
 * Threading: every function is reentrant; the sgemm calls use OpenBLAS, so they
 * follow workers.h: call them only from the engine's step thread (thread 0).
 *
 * Noise source (reproduced bit for bit by tests/tools/phidnn/phidnn_rng.py):
 *   seeding:  s[0..3] = four successive splitmix64 outputs from state = seed
 *             (state += 0x9E3779B97F4A7C15; z = state; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *              z = (z ^ z>>27) * 0x94D049BB133111EB; out = z ^ z>>31)
 *   next:     xoshiro256** (Blackman & Vigna 2018): out = rotl(s1 * 5, 7) * 9, then the
 *             usual state update
 *   uniform:  (next >> 11) * 2^-53, a double in [0, 1)
 *   normal:   u1 = 1 - uniform(), u2 = uniform(), z = sqrt(-2 ln u1) * cos(2 pi u2)
 *             computed in double with libm, then rounded to float (one normal per 2 draws)
 *   index:    ((next >> 32) * n) >> 32, an integer in [0, n) (the inpaint random partition)
 */
#ifndef SA_VISION_OPS_H
#define SA_VISION_OPS_H

#include <stddef.h>
#include <stdint.h>

/* Output side of a 3x3, pad-1 convolution with stride s. */
static inline int vops_conv_out(int n, int stride) { return (n - 1) / stride + 1; }

/* col must hold cin*9 * nb*ho*wo floats. */
void vops_im2col3(const float *x, int cin, int nb, int h, int w, int stride, float *col);
/* y[cout][nb*ho*wo] = W col + bias; col is scratch as above. W is [cout][cin*9]. */
void vops_conv3(const float *x, int cin, int nb, int h, int w, int stride, const float *weight,
                const float *bias, int cout, float *col, float *y);
void vops_relu(float *x, size_t n);
void vops_sigmoid(float *x, size_t n); /* 1 / (1 + exp(-x)) */
/* 2x2 max-pool, stride 2 (h, w even): y is planes x (h/2) x (w/2). */
void vops_maxpool2(const float *x, size_t planes, int h, int w, float *y);
/* Nearest up-sample by s: y[p][i][j] = x[p][i/s][j/s]; y is planes x (h*s) x (w*s). */
void vops_upsample(const float *x, size_t planes, int h, int w, int s, float *y);
/* Area down-scale by s (h, w multiples of s): the mean of each s x s block. */
void vops_area_down(const float *x, size_t planes, int h, int w, int s, float *y);
/* CBHW [c][nb][hw] -> rows [nb][c*hw]. */
void vops_cbhw_to_rows(const float *x, int c, int nb, int hw, float *y);
/* y[nb][out] = x[nb][in] W^T + bias, W is [out][in]. */
void vops_dense(const float *x, int nb, int in, const float *weight, const float *bias, int out, float *y);
/* Row-wise softmax in place (max-subtracted, sums in double). */
void vops_softmax(float *x, int rows, int n);
/* Mask k of the 2x2 grid partition (K = 4): M_k[i][j] = 1 iff 2*(i%2) + (j%2) == k. */
static inline float vops_grid_mask(int k, int i, int j) { return (2 * (i & 1) + (j & 1)) == k ? 1.0f : 0.0f; }

struct vops_rng {
    uint64_t s[4];
};
void vops_rng_seed(struct vops_rng *r, uint64_t seed);
uint64_t vops_rng_next(struct vops_rng *r);
double vops_rng_uniform(struct vops_rng *r);
float vops_rng_normal(struct vops_rng *r);
uint32_t vops_rng_index(struct vops_rng *r, uint32_t n);

#endif
