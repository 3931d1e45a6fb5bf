#include "heatmap.h"

#include <png.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 3x5 glyphs for '0'..'9' and '.', one row per 3 bits (MSB = left). */
static const uint8_t glyphs[11][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7},
    {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}, {0, 0, 0, 0, 2},
};

struct canvas {
    int w, h;
    uint8_t *px; /* RGB */
};

static void put(struct canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + ((size_t)y * c->w + x) * 3, rgb, 3);
}

static void text(struct canvas *c, int x, int y, const char *s, int scale, const uint8_t rgb[3])
{
    for (; *s; s++, x += 4 * scale) {
        int g = *s == '.' ? 10 : (*s >= '0' && *s <= '9') ? *s - '0' : -1;
        if (g < 0) continue;
        for (int r = 0; r < 5; r++)
            for (int b = 0; b < 3; b++)
                if (glyphs[g][r] & (4 >> b))
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale; dx++) put(c, x + b * scale + dx, y + r * scale + dy, rgb);
    }
}

/* dark blue -> teal -> yellow, roughly perceptual (viridis-like anchors) */
static void ramp(float t, uint8_t out[3])
{
    static const float stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    float f = t * 4;
    int i = (int)f;
    if (i > 3) i = 3;
    float u = f - (float)i;
    for (int k = 0; k < 3; k++) out[k] = (uint8_t)(stops[i][k] + (stops[i + 1][k] - stops[i][k]) * u + 0.5f);
}

/* Draw the matrix into c (c->px malloc'd); 0 or -1 (out of memory). */
static int draw(struct canvas *c, const float *m, int n, float lo)
{
    const int cell = n <= 12 ? 64 : n <= 24 ? 40 : 24, margin = 28;
    c->w = c->h = heatmap_png_side(n);
    c->px = malloc((size_t)c->w * c->h * 3);
    if (!c->px) return -1;
    memset(c->px, 255, (size_t)c->w * c->h * 3);
    const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
    for (int i = 0; i < n; i++) {
        char lab[16];
        snprintf(lab, sizeof lab, "%d", i);
        text(c, margin + i * cell + cell / 2 - 4, 8, lab, 2, black);
        text(c, 4, margin + i * cell + cell / 2 - 5, lab, 2, black);
        for (int j = 0; j < n; j++) {
            float v = m[i * n + j];
            uint8_t col[3];
            ramp((v - lo) / (1 - lo), col);
            for (int y = 1; y < cell; y++)
                for (int x = 1; x < cell; x++) put(c, margin + j * cell + x, margin + i * cell + y, col);
            if (cell >= 40) {
                char val[16];
                snprintf(val, sizeof val, "%.2f", (double)v);
                int lum = col[0] * 3 + col[1] * 6 + col[2];
                text(c, margin + j * cell + cell / 2 - 7 * (cell >= 64 ? 2 : 1), margin + i * cell + cell / 2 - 5,
                     val, cell >= 64 ? 2 : 1, lum > 1300 ? black : white);
            }
        }
    }
    return 0;
}

int heatmap_png_side(int n)
{
    const int cell = n <= 12 ? 64 : n <= 24 ? 40 : 24, margin = 28;
    return margin + n * cell + 4;
}

/* Encode c as PNG through libpng: to f (write_fn NULL) or through write_fn/ctx. 0 or -1. */
static int encode(const struct canvas *c, FILE *f, png_rw_ptr write_fn, void *ctx)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    if (write_fn) png_set_write_fn(png, ctx, write_fn, NULL);
    else png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, c->px + (size_t)y * c->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int heatmap_write_png(const char *path, const float *m, int n, float lo)
{
    struct canvas c;
    if (draw(&c, m, n, lo) != 0) return -1;
    FILE *f = fopen(path, "wb");
    int rc = f ? encode(&c, f, NULL, NULL) : -1;
    if (f && fclose(f) != 0) rc = -1;
    free(c.px);
    return rc;
}

struct membuf {
    unsigned char *p;
    size_t len, cap;
    bool failed;
};

static void mem_write(png_structp png, png_bytep data, size_t n)
{
    struct membuf *b = png_get_io_ptr(png);
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = true;
            png_error(png, "out of memory");
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

int heatmap_png(const float *m, int n, float lo, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    struct canvas c;
    if (draw(&c, m, n, lo) != 0) return -1;
    struct membuf b = {0};
    int rc = encode(&c, NULL, mem_write, &b);
    free(c.px);
    if (rc != 0 || b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
