/*
 * heatmap.h - draw an n x n matrix of values in [lo, 1] as a PNG (libpng),
 * one square cell per entry with a perceptual blue-to-yellow colour ramp,
 * row/column indices along the edges and the value (two decimals) in each
 * cell, drawn with a built-in 3x5 digit font.
 */
#ifndef SA_HEATMAP_H
#define SA_HEATMAP_H

#include <stddef.h>

/* Returns 0 or -1 (errno set by stdio or the message printed by libpng). */
int heatmap_write_png(const char *path, const float *m, int n, float lo);
/* The same PNG in memory: 0 and *out (malloc'd, the caller frees) / *len, or -1
 * (out of memory; *out NULL). Thread-safe (no shared state). */
int heatmap_png(const float *m, int n, float lo, unsigned char **out, size_t *len);
/* Width = height in pixels of the PNG of an n x n matrix: 28 + n * cell + 4,
 * cell 64 (n <= 12), 40 (n <= 24), else 24. */
int heatmap_png_side(int n);

#endif
