/* vision_ops.c - see vision_ops.h for the layouts, formulas and the noise source. */
#include "vision_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void vops_im2col3(const float *x, int cin, int nb, int h, int w, int stride, float *col)
{
    const int ho = vops_conv_out(h, stride), wo = vops_conv_out(w, stride);
    const size_t n = (size_t)nb * ho * wo;
    for (int ci = 0; ci < cin; ci++)
        for (int di = 0; di < 3; di++)
            for (int dj = 0; dj < 3; dj++) {
                float *row = col + (size_t)(ci * 9 + di * 3 + dj) * n;
                for (int b = 0; b < nb; b++) {
                    const float *plane = x + ((size_t)ci * nb + b) * h * w;
                    float *out = row + (size_t)b * ho * wo;
                    for (int oi = 0; oi < ho; oi++) {
                        const int i = oi * stride + di - 1;
                        float *o = out + (size_t)oi * wo;
                        if (i < 0 || i >= h) {
                            memset(o, 0, sizeof(float) * wo);
                            continue;
                        }
                        const float *src = plane + (size_t)i * w;
                        for (int oj = 0; oj < wo; oj++) {
                            const int j = oj * stride + dj - 1;
                            o[oj] = (j >= 0 && j < w) ? src[j] : 0.0f;
                        }
                    }
                }
            }
}

void vops_conv3(const float *x, int cin, int nb, int h, int w, int stride, const float *weight,
                const float *bias, int cout, float *col, float *y)
{
    const int ho = vops_conv_out(h, stride), wo = vops_conv_out(w, stride);
    const int n = nb * ho * wo, k = cin * 9;
    vops_im2col3(x, cin, nb, h, w, stride, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, n, k, 1.0f, weight, k, col, n, 0.0f, y, n);
    for (int co = 0; co < cout; co++) {
        float *r = y + (size_t)co * n;
        const float bv = bias[co];
        for (int i = 0; i < n; i++) r[i] += bv;
    }
}

void vops_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void vops_sigmoid(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
}

void vops_maxpool2(const float *x, size_t planes, int h, int w, float *y)
{
    const int ho = h / 2, wo = w / 2;
    for (size_t p = 0; p < planes; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                const float *a = src + (size_t)(2 * i) * w + 2 * j;
                float m = a[0];
                if (a[1] > m) m = a[1];
                if (a[w] > m) m = a[w];
                if (a[w + 1] > m) m = a[w + 1];
                dst[i * wo + j] = m;
            }
    }
}

void vops_upsample(const float *x, size_t planes, int h, int w, int s, float *y)
{
    const int ho = h * s, wo = w * s;
    for (size_t p = 0; p < planes; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) dst[i * wo + j] = src[(i / s) * w + j / s];
    }
}

void vops_area_down(const float *x, size_t planes, int h, int w, int s, float *y)
{
    const int ho = h / s, wo = w / s;
    const float inv = 1.0f / (float)(s * s);
    for (size_t p = 0; p < planes; p++) {
        const float *src = x + p * h * w;
        float *dst = y + p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                float acc = 0.0f;
                for (int di = 0; di < s; di++)
                    for (int dj = 0; dj < s; dj++) acc += src[(i * s + di) * w + j * s + dj];
                dst[i * wo + j] = acc * inv;
            }
    }
}

void vops_cbhw_to_rows(const float *x, int c, int nb, int hw, float *y)
{
    for (int ci = 0; ci < c; ci++)
        for (int b = 0; b < nb; b++)
            memcpy(y + ((size_t)b * c + ci) * hw, x + ((size_t)ci * nb + b) * hw, sizeof(float) * hw);
}

void vops_dense(const float *x, int nb, int in, const float *weight, const float *bias, int out, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, out, in, 1.0f, x, in, weight, in, 0.0f, y, out);
    for (int b = 0; b < nb; b++)
        for (int o = 0; o < out; o++) y[(size_t)b * out + o] += bias[o];
}

void vops_softmax(float *x, int rows, int n)
{
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        float m = v[0];
        for (int i = 1; i < n; i++)
            if (v[i] > m) m = v[i];
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            v[i] = expf(v[i] - m);
            sum += v[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < n; i++) v[i] *= inv;
    }
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void vops_rng_seed(struct vops_rng *r, uint64_t seed)
{
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) {
        sm += UINT64_C(0x9E3779B97F4A7C15);
        uint64_t z = sm;
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        r->s[i] = z ^ (z >> 31);
    }
}

uint64_t vops_rng_next(struct vops_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double vops_rng_uniform(struct vops_rng *r) { return (double)(vops_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

float vops_rng_normal(struct vops_rng *r)
{
    const double u1 = 1.0 - vops_rng_uniform(r), u2 = vops_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

uint32_t vops_rng_index(struct vops_rng *r, uint32_t n) { return (uint32_t)(((vops_rng_next(r) >> 32) * n) >> 32); }
