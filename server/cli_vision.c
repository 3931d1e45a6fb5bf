/*
 * cli_vision.c - the phiDNN side of the command line: check-model for
 * architecture "phidnn" files, and `saserve recreate`, which writes a PNG grid
 * of originals, corruptions and recreations (libpng).
 */
#include "cli.h"

#include "engine/errors.h"
#include "engine/phidnn.h"

#include <errno.h>
#include <getopt.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_check_vision_model(const char *path)
{
    if (!phidnn_is_file(path)) return -1; /* the language-model check reports it */
    struct phidnn *p;
    char msg[512] = "";
    int rc = phidnn_load(path, &p, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", path, msg[0] ? msg : sa_err_str(rc));
        return 2;
    }
    const struct phidnn_info *in = phidnn_get_info(p);
    printf("%s: ok: %s, phidnn, input %ux%ux%u, %u classes, modes", path, in->name, in->channels, in->height,
           in->width, in->n_classes);
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++)
        if (in->has_mode[m]) printf(" %s", phidnn_mode_name((enum phidnn_mode)m));
    printf(", %llu parameters\n", (unsigned long long)in->n_params);
    phidnn_free(p);
    return 0;
}

/* Test-set images of an idx3 .gz file (via gzip -dc), scaled to [0, 1]. */
static float *read_idx_images(const char *path, const int *idx, int n, uint32_t side)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    if (strchr(path, '\'')) return NULL;
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    uint8_t hdr[16];
    float *x = NULL;
    if (fread(hdr, 1, 16, f) != 16) goto out;
    const uint32_t count = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
    const uint32_t rows = (uint32_t)hdr[8] << 24 | (uint32_t)hdr[9] << 16 | (uint32_t)hdr[10] << 8 | hdr[11];
    if (rows != side || count == 0 || count > 1000000) goto out;
    const size_t hw = (size_t)side * side;
    uint8_t *all = malloc(hw * count);
    if (!all) goto out;
    if (fread(all, 1, hw * count, f) == hw * count) {
        x = malloc(sizeof(float) * hw * n);
        for (int i = 0; x && i < n; i++) {
            if (idx[i] < 0 || (uint32_t)idx[i] >= count) {
                free(x);
                x = NULL;
                break;
            }
            for (size_t p = 0; p < hw; p++) x[i * hw + p] = (float)all[(size_t)idx[i] * hw + p] / 255.0f;
        }
    }
    free(all);
out:
    pclose(f);
    return x;
}

static int write_gray_png(const char *path, const uint8_t *px, int w, int h)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(px + (size_t)y * w));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0 ? 0 : -1;
}

/* --images: 1..16 indices 0..9999 separated by commas into idx[0..*n); 0, or 1 (said why). */
static int parse_images(const char *arg, int idx[16], int *n)
{
    char *end;
    const char *p = arg;
    *n = 0;
    while (*p && *n < 16) {
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > 9999 || (*end && *end != ',')) {
            fprintf(stderr, "saserve: --images: expected indices 0..9999 separated by commas\n");
            return 1;
        }
        idx[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0 || *p) {
        fprintf(stderr, "saserve: --images: 1..16 indices\n");
        return 1;
    }
    return 0;
}

/* The grid's layout: n rows of side x side images drawn zoom times, gap pixels apart. */
struct grid {
    uint8_t *px;
    int W, n, side, zoom, gap;
};

/* Draw images [n][side*side] (values in [0, 1], dark = 1) as column col of the grid;
 * the originals (column 0) are set apart by an extra gap pair. */
static void grid_draw_column(const struct grid *g, int col, const float *imgs)
{
    const int cell = g->side * g->zoom, x0 = g->gap + col * (cell + g->gap) + (col > 0 ? 2 * g->gap : 0);
    const size_t hw = (size_t)g->side * g->side;
    for (int r = 0; r < g->n; r++) {
        const int y0 = g->gap + r * (cell + g->gap);
        for (int i = 0; i < cell; i++)
            for (int j = 0; j < cell; j++) {
                float v = imgs[(size_t)r * hw + (size_t)(i / g->zoom) * g->side + j / g->zoom];
                v = v < 0 ? 0 : (v > 1 ? 1 : v);
                g->px[(size_t)(y0 + i) * g->W + x0 + j] = (uint8_t)(255.0f - 255.0f * v + 0.5f);
            }
    }
}

/* One line on stderr: each image's most probable class under mode. */
static void print_labels(enum phidnn_mode mode, const struct phidnn_info *in, const int *idx, int n, const float *probs)
{
    fprintf(stderr, "%-8s:", phidnn_mode_name(mode));
    for (int i = 0; i < n; i++) {
        uint32_t best = 0;
        for (uint32_t cl = 1; cl < in->n_classes; cl++)
            if (probs[i * in->n_classes + cl] > probs[i * in->n_classes + best]) best = cl;
        fprintf(stderr, " %d=%s", idx[i], in->classes[best]);
    }
    fprintf(stderr, "\n");
}

#define RECREATE_DATA_DIR "/usr/share/datasets/fashion-mnist" /* the dataset-fashion-mnist package (make deps) */

static void recreate_usage(void)
{
    fprintf(stderr, "usage: saserve recreate -m PHIDNN.gguf --png OUT.png [--images 0,1,2,3] [--seed N]\n"
                    "                        [--data DIR]   (default " RECREATE_DATA_DIR ")\n"
                    "  one row per test image: original | identity: input, recreation | sr: corrupted,\n"
                    "  recreation | inpaint: phase-0 masked input, recreation; top label per mode on stderr\n");
}

int cli_recreate(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *data = RECREATE_DATA_DIR;
    int idx[16] = {0, 1, 2, 3, 4, 5}, n = 6;
    unsigned long long seed = 1;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"png", required_argument, 0, 'o'},
                                       {"images", required_argument, 0, 'i'}, {"seed", required_argument, 0, 's'},
                                       {"data", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:i:s:d:h", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'd': data = optarg; break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg) {
                fprintf(stderr, "saserve: --seed: '%s' is not an unsigned integer\n", optarg);
                return 1;
            }
            break;
        case 'i':
            if (parse_images(optarg, idx, &n)) return 1;
            break;
        default: recreate_usage(); return c == 'h' ? 0 : 1;
        }
    }
    if (!model || !out) {
        recreate_usage();
        return 1;
    }
    struct phidnn *p;
    char msg[512] = "";
    int rc = phidnn_load(model, &p, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "saserve: %s: %s\n", model, msg[0] ? msg : sa_err_str(rc));
        return 2;
    }
    const struct phidnn_info *in = phidnn_get_info(p);
    if (in->channels != 1 || in->height != in->width) {
        fprintf(stderr, "saserve: recreate draws square one-channel models only\n");
        phidnn_free(p);
        return 1;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", data);
    float *x = read_idx_images(path, idx, n, in->height);
    if (!x) {
        fprintf(stderr, "saserve: cannot read images %s (make deps installs dataset-fashion-mnist)\n", path);
        phidnn_free(p);
        return 1;
    }
    const int side = (int)in->height, zoom = 3, cell = side * zoom, gap = 4;
    const enum phidnn_mode cols[3] = {PHIDNN_MODE_IDENTITY, PHIDNN_MODE_SR, PHIDNN_MODE_INPAINT};
    const int ncol = 7, W = ncol * cell + (ncol + 1) * gap + 2 * gap, H = n * cell + (n + 1) * gap;
    uint8_t *px = malloc((size_t)W * H);
    const size_t hw = (size_t)side * side;
    float *rec = malloc(sizeof(float) * hw * n), *cor = malloc(sizeof(float) * hw * n),
          *probs = malloc(sizeof(float) * in->n_classes * n);
    rc = (!px || !rec || !cor || !probs) ? SA_ERR_NOMEM : 0;
    if (!rc) memset(px, 255, (size_t)W * H);
    const struct grid g = {.px = px, .W = W, .n = n, .side = side, .zoom = zoom, .gap = gap};
    if (!rc) grid_draw_column(&g, 0, x);
    /* per mode the model has: its input (corrupted) and its recreation, in columns 1 + 2k, 2 + 2k */
    for (int k = 0; k < 3 && !rc; k++) {
        if (!in->has_mode[cols[k]]) continue;
        struct phidnn_job job = {.mode = cols[k], .seed = seed, .samples = 1, .n_images = (uint32_t)n,
                                 .images = x, .probs = probs, .recreated = rec, .corrupted = cor};
        if ((rc = phidnn_forward(p, &job))) break;
        print_labels(cols[k], in, idx, n, probs);
        grid_draw_column(&g, 1 + 2 * k, cor);
        grid_draw_column(&g, 2 + 2 * k, rec);
    }
    if (!rc && write_gray_png(out, px, W, H) != 0) {
        fprintf(stderr, "saserve: cannot write %s\n", out);
        rc = SA_ERR_IO;
    } else if (rc) {
        fprintf(stderr, "saserve: %s\n", sa_err_str(rc));
    } else {
        printf("%s: %d images x (original, identity, sr, inpaint), %dx%d pixels\n", out, n, W, H);
    }
    free(px);
    free(rec);
    free(cor);
    free(probs);
    free(x);
    phidnn_free(p);
    return rc ? 1 : 0;
}
