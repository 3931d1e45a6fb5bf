/*
 * heatmap.h - draw an n x n matrix of values in [lo, 1] as a PNG (libpng),
 * one square cell per entry with a perceptual blue-to-yellow colour ramp,
 * row/column indices along the edges and the value (two decimals) in each
 * cell, drawn with a built-in 3x5 digit font.
 */
#ifndef SA_HEATMAP_H
#define SA_HEATMAP_H

/* Returns 0 or -1 (errno set by stdio or the message printed by libpng). */
int heatmap_write_png(const char *path, const float *m, int n, float lo);

#endif
