/* phidnn.c - load and run a phiDNN model; see phidnn.h for the formulas and the file. */
#include "phidnn.h"

#include "errors.h"
#include "gguf.h"
#include "quant.h"
#include "vision_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conv {
    const float *w, *b; /* [cout][cin*9], [cout] */
    int cin, cout, stride;
};
struct dense {
    const float *w, *b; /* [out][in], [out] */
    int in, out;
};
struct net {
    struct conv r[6];        /* e1 e2 e3 d1 d2 d3 (absent for off) */
    struct conv c1, c2;
    struct dense f1, f2;
};

struct phidnn {
    struct gguf *g;
    struct phidnn_info info;
    struct net net[PHIDNN_MODE_COUNT];
};

static const char *const mode_names[PHIDNN_MODE_COUNT] = {"off", "identity", "sr", "inpaint"};
static const char *const r_layer[6] = {"e1", "e2", "e3", "d1", "d2", "d3"};

const char *phidnn_mode_name(enum phidnn_mode m)
{
    return (unsigned)m < PHIDNN_MODE_COUNT ? mode_names[m] : NULL;
}

int phidnn_mode_parse(const char *s, size_t n)
{
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++)
        if (strlen(mode_names[m]) == n && memcmp(mode_names[m], s, n) == 0) return m;
    return -1;
}

const struct phidnn_info *phidnn_get_info(const struct phidnn *p) { return &p->info; }

void phidnn_free(struct phidnn *p)
{
    if (!p) return;
    gguf_close(p->g);
    free(p);
}

/* ---- loading ---- */

static int get_u32_range(const struct gguf *g, const char *key, uint32_t lo, uint32_t hi, uint32_t *out,
                         char *msg, size_t len)
{
    int rc = gguf_get_u32(g, key, out);
    if (rc == SA_ERR_NOT_FOUND) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: missing", key);
    if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: must be an unsigned 32-bit integer", key);
    if (*out < lo || *out > hi)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: %u outside [%u, %u]", key, *out, lo, hi);
    return 0;
}

static int get_widths(const struct gguf *g, const char *key, uint32_t out[3], char *msg, size_t len)
{
    const void *d;
    uint64_t n;
    int rc = gguf_get_arr(g, key, GGUF_TYPE_UINT32, &d, &n);
    if (rc == SA_ERR_NOT_FOUND) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: missing", key);
    if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: must be an array of u32", key);
    if (n != 3) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s: %llu elements, expected 3", key, (unsigned long long)n);
    for (int i = 0; i < 3; i++) {
        out[i] = gguf_arr_u32(d, (uint64_t)i);
        if (out[i] < 1 || out[i] > PHIDNN_MAX_WIDTH)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "%s[%d]: %u outside [1, %d]", key, i, out[i], PHIDNN_MAX_WIDTH);
    }
    return 0;
}

/* Find an F32 tensor of exactly ne0 x ne1 (ne1 = 0: 1-D of ne0) with finite values. */
static int get_tensor(const struct gguf *g, const char *name, int64_t ne0, int64_t ne1, const float **out,
                      char *msg, size_t len)
{
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': missing", name);
    if (t->type != QUANT_F32) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': type must be F32", name);
    const uint32_t dims = ne1 ? 2 : 1;
    bool ok = t->n_dims == dims && t->ne[0] == ne0 && (dims == 1 || t->ne[1] == ne1);
    if (!ok) {
        if (dims == 1)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': shape must be [%lld]", name, (long long)ne0);
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': shape must be [%lld, %lld]", name, (long long)ne0,
                       (long long)ne1);
    }
    if (((uintptr_t)t->data & 3u) != 0)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': data not 4-byte aligned", name);
    const float *f = t->data;
    for (uint64_t i = 0; i < t->n_elements; i++)
        if (!isfinite(f[i])) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': element %llu is not finite", name,
                                            (unsigned long long)i);
    *out = f;
    return 0;
}

static int load_conv(const struct gguf *g, const char *prefix, int cin, int cout, int stride, struct conv *c,
                     uint64_t *n_params, char *msg, size_t len)
{
    char name[96];
    int rc;
    snprintf(name, sizeof name, "%s.weight", prefix);
    if ((rc = get_tensor(g, name, (int64_t)cin * 9, cout, &c->w, msg, len))) return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((rc = get_tensor(g, name, cout, 0, &c->b, msg, len))) return rc;
    c->cin = cin;
    c->cout = cout;
    c->stride = stride;
    *n_params += (uint64_t)cin * 9 * cout + cout;
    return 0;
}

static int load_dense(const struct gguf *g, const char *prefix, int in, int out, struct dense *d, uint64_t *n_params,
                      char *msg, size_t len)
{
    char name[96];
    int rc;
    snprintf(name, sizeof name, "%s.weight", prefix);
    if ((rc = get_tensor(g, name, in, out, &d->w, msg, len))) return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((rc = get_tensor(g, name, out, 0, &d->b, msg, len))) return rc;
    d->in = in;
    d->out = out;
    *n_params += (uint64_t)in * out + out;
    return 0;
}

static int load_meta(struct phidnn *p, char *msg, size_t len)
{
    const struct gguf *g = p->g;
    struct phidnn_info *in = &p->info;
    char arch[32];
    int rc = gguf_get_cstr(g, "general.architecture", arch, sizeof arch);
    if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "general.architecture: missing or not a string");
    if (strcmp(arch, "phidnn") != 0)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "general.architecture: '%s', expected 'phidnn'", arch);
    struct gguf_str s;
    if (gguf_get_str(g, "general.name", &s) == 0) {
        if (s.len == 0 || s.len >= sizeof in->name)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "general.name: length %llu outside [1, %zu]",
                           (unsigned long long)s.len, sizeof in->name - 1);
        for (uint64_t i = 0; i < s.len; i++) {
            const char c = s.data[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_' || c == '.'))
                return sa_errf(SA_ERR_BAD_MODEL, msg, len, "general.name: character %llu must be [A-Za-z0-9._-]",
                               (unsigned long long)i);
        }
        memcpy(in->name, s.data, s.len);
        in->name[s.len] = 0;
    } else {
        strcpy(in->name, "phidnn");
    }
    if ((rc = get_u32_range(g, "phidnn.input.channels", 1, 4, &in->channels, msg, len))) return rc;
    if ((rc = get_u32_range(g, "phidnn.input.height", 4, PHIDNN_MAX_SIDE, &in->height, msg, len))) return rc;
    if ((rc = get_u32_range(g, "phidnn.input.width", 4, PHIDNN_MAX_SIDE, &in->width, msg, len))) return rc;
    if (in->height % 4 || in->width % 4)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.input.height/width: %ux%u must be multiples of 4",
                       in->height, in->width);
    /* classes */
    uint64_t n;
    const void *d;
    rc = gguf_get_arr(g, "phidnn.classes", GGUF_TYPE_STRING, &d, &n);
    if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.classes: missing or not an array of strings");
    if (n < 2 || n > PHIDNN_MAX_CLASSES)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.classes: %llu classes outside [2, %d]",
                       (unsigned long long)n, PHIDNN_MAX_CLASSES);
    in->n_classes = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        if (gguf_get_arr_str(g, "phidnn.classes", i, &s) != 0)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.classes[%llu]: unreadable", (unsigned long long)i);
        if (s.len == 0 || s.len >= PHIDNN_MAX_CLASS_NAME)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.classes[%llu]: length %llu outside [1, %d]",
                           (unsigned long long)i, (unsigned long long)s.len, PHIDNN_MAX_CLASS_NAME - 1);
        for (uint64_t j = 0; j < s.len; j++)
            if ((unsigned char)s.data[j] < 0x20 || s.data[j] == '"' || s.data[j] == '\\' || s.data[j] == 0x7f)
                return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.classes[%llu]: control, quote or backslash byte",
                               (unsigned long long)i);
        memcpy(in->classes[i], s.data, s.len);
        in->classes[i][s.len] = 0;
    }
    /* modes */
    rc = gguf_get_arr(g, "phidnn.modes", GGUF_TYPE_STRING, &d, &n);
    if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.modes: missing or not an array of strings");
    if (n < 1 || n > PHIDNN_MODE_COUNT)
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.modes: %llu modes outside [1, %d]", (unsigned long long)n,
                       PHIDNN_MODE_COUNT);
    int order[PHIDNN_MODE_COUNT];
    for (uint64_t i = 0; i < n; i++) {
        if (gguf_get_arr_str(g, "phidnn.modes", i, &s) != 0)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.modes[%llu]: unreadable", (unsigned long long)i);
        const int m = phidnn_mode_parse(s.data, (size_t)s.len);
        if (m < 0)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.modes[%llu]: unknown mode (off, identity, sr, inpaint)",
                           (unsigned long long)i);
        if (in->has_mode[m])
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.modes[%llu]: duplicate mode '%s'", (unsigned long long)i,
                           mode_names[m]);
        in->has_mode[m] = true;
        order[i] = m;
    }
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) in->accuracy[m] = NAN;
    rc = gguf_get_arr(g, "phidnn.accuracy", GGUF_TYPE_FLOAT32, &d, &n);
    if (rc == 0) {
        uint64_t n_modes = 0;
        for (int m = 0; m < PHIDNN_MODE_COUNT; m++) n_modes += in->has_mode[m];
        if (n != n_modes)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.accuracy: %llu values for %llu modes",
                           (unsigned long long)n, (unsigned long long)n_modes);
        for (uint64_t i = 0; i < n; i++) {
            const float a = gguf_arr_f32(d, i);
            if (!(a >= 0.0f && a <= 100.0f))
                return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.accuracy[%llu]: must be in [0, 100]",
                               (unsigned long long)i);
            in->accuracy[order[i]] = a;
        }
    } else if (rc != SA_ERR_NOT_FOUND) {
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.accuracy: must be an array of f32");
    }
    in->accuracy_inpaint_random = NAN;
    float ar;
    rc = gguf_get_f32(g, "phidnn.accuracy.inpaint_random", &ar);
    if (rc == 0) {
        if (!(ar >= 0.0f && ar <= 100.0f))
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.accuracy.inpaint_random: must be in [0, 100]");
        in->accuracy_inpaint_random = ar;
    } else if (rc != SA_ERR_NOT_FOUND) {
        return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.accuracy.inpaint_random: must be f32");
    }
    const bool any_r = in->has_mode[PHIDNN_MODE_IDENTITY] || in->has_mode[PHIDNN_MODE_SR] ||
                       in->has_mode[PHIDNN_MODE_INPAINT];
    if (any_r && (rc = get_widths(g, "phidnn.recreator.widths", in->r_widths, msg, len))) return rc;
    if ((rc = get_widths(g, "phidnn.classifier.widths", in->c_widths, msg, len))) return rc;
    if (in->has_mode[PHIDNN_MODE_SR]) {
        if ((rc = get_u32_range(g, "phidnn.sr.scale", 2, 2, &in->sr_scale, msg, len))) return rc;
        rc = gguf_get_f32(g, "phidnn.sr.sigma", &in->sr_sigma);
        if (rc) return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.sr.sigma: missing or not f32");
        if (!(in->sr_sigma >= 0.0f && in->sr_sigma <= 1.0f))
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.sr.sigma: must be in [0, 1]");
    }
    if (in->has_mode[PHIDNN_MODE_INPAINT]) {
        if ((rc = get_u32_range(g, "phidnn.inpaint.k", 4, 4, &in->inpaint_k, msg, len))) return rc;
        char part[16];
        if (gguf_get_cstr(g, "phidnn.inpaint.partition", part, sizeof part) != 0 || strcmp(part, "grid") != 0)
            return sa_errf(SA_ERR_BAD_MODEL, msg, len, "phidnn.inpaint.partition: must be \"grid\"");
    }
    return 0;
}

static int load_nets(struct phidnn *p, char *msg, size_t len)
{
    struct phidnn_info *in = &p->info;
    const int C = (int)in->channels, r1 = (int)in->r_widths[0], r2 = (int)in->r_widths[1], r3 = (int)in->r_widths[2];
    const int c1 = (int)in->c_widths[0], c2 = (int)in->c_widths[1], d1 = (int)in->c_widths[2];
    const int flat = c2 * (int)(in->height / 4) * (int)(in->width / 4);
    char name[64];
    int rc;
    for (int m = 0; m < PHIDNN_MODE_COUNT; m++) {
        if (!in->has_mode[m]) continue;
        struct net *nt = &p->net[m];
        if (m != PHIDNN_MODE_OFF) {
            const int cin = m == PHIDNN_MODE_INPAINT ? C + 1 : C;
            const int shape[6][3] = {{cin, r1, 1}, {r1, r2, 2}, {r2, r2, 1}, {r2, r1, 1}, {r1, r3, 1}, {r3, C, 1}};
            for (int l = 0; l < 6; l++) {
                snprintf(name, sizeof name, "%s.r.%s", mode_names[m], r_layer[l]);
                if ((rc = load_conv(p->g, name, shape[l][0], shape[l][1], shape[l][2], &nt->r[l], &in->n_params, msg,
                                    len)))
                    return rc;
            }
        }
        snprintf(name, sizeof name, "%s.c.c1", mode_names[m]);
        if ((rc = load_conv(p->g, name, C, c1, 1, &nt->c1, &in->n_params, msg, len))) return rc;
        snprintf(name, sizeof name, "%s.c.c2", mode_names[m]);
        if ((rc = load_conv(p->g, name, c1, c2, 1, &nt->c2, &in->n_params, msg, len))) return rc;
        snprintf(name, sizeof name, "%s.c.f1", mode_names[m]);
        if ((rc = load_dense(p->g, name, flat, d1, &nt->f1, &in->n_params, msg, len))) return rc;
        snprintf(name, sizeof name, "%s.c.f2", mode_names[m]);
        if ((rc = load_dense(p->g, name, d1, (int)in->n_classes, &nt->f2, &in->n_params, msg, len))) return rc;
    }
    return 0;
}

int phidnn_load_gguf(struct gguf *g, struct phidnn **out, char *msg, size_t msg_len)
{
    *out = NULL;
    struct phidnn *p = calloc(1, sizeof *p);
    if (!p) {
        gguf_close(g);
        return SA_ERR_NOMEM;
    }
    p->g = g;
    int rc = load_meta(p, msg, msg_len);
    if (!rc) rc = load_nets(p, msg, msg_len);
    if (rc) {
        phidnn_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

bool phidnn_is_file(const char *path)
{
    struct gguf *g;
    char msg[256], arch[32] = "";
    if (gguf_open_file(path, &g, msg, sizeof msg) != 0) return false;
    bool is = gguf_get_cstr(g, "general.architecture", arch, sizeof arch) == 0 && strcmp(arch, "phidnn") == 0;
    gguf_close(g);
    return is;
}

int phidnn_load(const char *path, struct phidnn **out, char *msg, size_t msg_len)
{
    struct gguf *g;
    *out = NULL;
    int rc = gguf_open_file(path, &g, msg, msg_len);
    if (rc) return rc;
    return phidnn_load_gguf(g, out, msg, msg_len);
}

/* ---- forward ---- */

struct scratch {
    float *a, *b, *col; /* ping-pong activations and the im2col buffer */
};

/* conv + activation from *src into *dst, then swap; act 0 none, 1 relu, 2 sigmoid */
static void conv_layer(const struct conv *c, int nb, int *h, int *w, float **src, float **dst, float *col, int act)
{
    vops_conv3(*src, c->cin, nb, *h, *w, c->stride, c->w, c->b, c->cout, col, *dst);
    *h = vops_conv_out(*h, c->stride);
    *w = vops_conv_out(*w, c->stride);
    const size_t n = (size_t)c->cout * nb * *h * *w;
    if (act == 1) vops_relu(*dst, n);
    if (act == 2) vops_sigmoid(*dst, n);
    float *t = *src;
    *src = *dst;
    *dst = t;
}

/* R over nb images in s->a (CBHW, cin x h0 x w0; sr: half size); result (C x H x W) in s->a. */
static void run_r(const struct phidnn *p, const struct net *nt, bool sr, int nb, struct scratch *s)
{
    const struct phidnn_info *in = &p->info;
    int h = (int)in->height, w = (int)in->width;
    float *src = s->a, *dst = s->b;
    if (sr) {
        vops_upsample(src, (size_t)nt->r[0].cin * nb, h / 2, w / 2, 2, dst);
        float *t = src;
        src = dst;
        dst = t;
    }
    for (int l = 0; l < 4; l++) conv_layer(&nt->r[l], nb, &h, &w, &src, &dst, s->col, 1);
    vops_upsample(src, (size_t)nt->r[3].cout * nb, h, w, 2, dst);
    h *= 2;
    w *= 2;
    float *t = src;
    src = dst;
    dst = t;
    conv_layer(&nt->r[4], nb, &h, &w, &src, &dst, s->col, 1);
    conv_layer(&nt->r[5], nb, &h, &w, &src, &dst, s->col, 2);
    if (src != s->a) memcpy(s->a, src, sizeof(float) * in->channels * nb * h * w);
}

/* C over nb images in s->a (CBHW); logits [nb][n_classes] into out. */
static void run_c(const struct phidnn *p, const struct net *nt, int nb, struct scratch *s, float *out)
{
    const struct phidnn_info *in = &p->info;
    int h = (int)in->height, w = (int)in->width;
    float *src = s->a, *dst = s->b;
    conv_layer(&nt->c1, nb, &h, &w, &src, &dst, s->col, 1);
    vops_maxpool2(src, (size_t)nt->c1.cout * nb, h, w, dst);
    h /= 2;
    w /= 2;
    conv_layer(&nt->c2, nb, &h, &w, &dst, &src, s->col, 1); /* input in dst, output lands in dst after swap */
    vops_maxpool2(dst, (size_t)nt->c2.cout * nb, h, w, src);
    h /= 2;
    w /= 2;
    vops_cbhw_to_rows(src, nt->c2.cout, nb, h * w, dst);
    vops_dense(dst, nb, nt->f1.in, nt->f1.w, nt->f1.b, nt->f1.out, src);
    vops_relu(src, (size_t)nb * nt->f1.out);
    vops_dense(src, nb, nt->f2.in, nt->f2.w, nt->f2.b, nt->f2.out, out);
}

/* Largest per-image activation and im2col sizes over both networks (floats). */
static void per_image_sizes(const struct phidnn *p, size_t *act, size_t *col)
{
    const struct phidnn_info *in = &p->info;
    const size_t hw = (size_t)in->height * in->width;
    size_t widest = in->channels + 1;
    for (int i = 0; i < 3; i++) {
        if (in->r_widths[i] > widest) widest = in->r_widths[i];
        if (in->c_widths[i] > widest) widest = in->c_widths[i];
    }
    *act = widest * hw;
    *col = 9 * widest * hw; /* every im2col has at most cin*9 rows of at most hw columns */
}

/* M_k at (i, j) for unit u: the 2x2 grid (part NULL) or the unit's drawn partition */
static inline float inpaint_mask(const uint8_t *part, int u, int k, int i, int j, int h, int w)
{
    if (!part) return vops_grid_mask(k, i, j);
    return part[((size_t)u * h + i) * w + j] == k ? 1.0f : 0.0f;
}

struct phidnn_run {
    const struct phidnn *p;
    struct phidnn_job job;
    struct scratch s;
    float *rec, *logits; /* [chunk_units][C*H*W] recreations (CBHW), [chunk_units][n_classes] */
    uint8_t *part;       /* inpaint, random partition: [chunk_units][H*W] mask index of each pixel */
    struct vops_rng rng, *rngp;
    uint32_t S;          /* samples actually computed (1 for the deterministic modes) */
    int chunk_units;     /* (image, sample) units per chunk: PHIDNN_CHUNK R images */
    uint64_t n_units, u0;
};

void phidnn_run_end(struct phidnn_run *r)
{
    if (!r) return;
    free(r->s.a);
    free(r->s.b);
    free(r->s.col);
    free(r->rec);
    free(r->logits);
    free(r->part);
    free(r);
}

int phidnn_run_begin(const struct phidnn *p, const struct phidnn_job *job, struct phidnn_run **out)
{
    const struct phidnn_info *in = &p->info;
    *out = NULL;
    if (!job || job->n_images == 0 || !job->images || !job->probs) return SA_ERR_INVALID_ARG;
    if (job->samples < 1 || job->samples > PHIDNN_MAX_SAMPLES) return SA_ERR_INVALID_ARG;
    if ((unsigned)job->mode >= PHIDNN_MODE_COUNT) return SA_ERR_INVALID_ARG;
    if (!in->has_mode[job->mode]) return SA_ERR_UNSUPPORTED;
    struct phidnn_run *r = calloc(1, sizeof *r);
    if (!r) return SA_ERR_NOMEM;
    r->p = p;
    r->job = *job;
    const size_t chw = (size_t)in->channels * in->height * in->width;
    const bool random_part = job->mode == PHIDNN_MODE_INPAINT && job->random_partition;
    /* sr and inpaint with random partitions draw per sample; the others are deterministic */
    r->S = job->mode == PHIDNN_MODE_SR || random_part ? job->samples : 1;
    r->chunk_units = PHIDNN_CHUNK / (job->mode == PHIDNN_MODE_INPAINT ? (int)in->inpaint_k : 1);
    r->n_units = (uint64_t)job->n_images * r->S;
    size_t act, colsz;
    per_image_sizes(p, &act, &colsz);
    r->s.a = malloc(sizeof(float) * act * PHIDNN_CHUNK);
    r->s.b = malloc(sizeof(float) * act * PHIDNN_CHUNK);
    r->s.col = malloc(sizeof(float) * colsz * PHIDNN_CHUNK);
    r->rec = malloc(sizeof(float) * chw * r->chunk_units);
    r->logits = malloc(sizeof(float) * in->n_classes * r->chunk_units);
    if (random_part) r->part = malloc((size_t)in->height * in->width * r->chunk_units);
    if (!r->s.a || !r->s.b || !r->s.col || !r->rec || !r->logits || (random_part && !r->part)) {
        phidnn_run_end(r);
        return SA_ERR_NOMEM;
    }
    vops_rng_seed(&r->rng, job->seed);
    r->rngp = &r->rng;
    memset(job->probs, 0, sizeof(float) * in->n_classes * job->n_images);
    *out = r;
    return 0;
}

bool phidnn_run_step(struct phidnn_run *r)
{
    if (r->u0 >= r->n_units) return true;
    const struct phidnn *p = r->p;
    const struct phidnn_info *in = &p->info;
    const struct phidnn_job *job = &r->job;
    const enum phidnn_mode mode = job->mode;
    const struct net *nt = &p->net[mode];
    const int C = (int)in->channels, H = (int)in->height, W = (int)in->width, K = (int)in->inpaint_k;
    const size_t chw = (size_t)C * H * W, hw = (size_t)H * W, ncls = in->n_classes;
    const uint32_t S = r->S;
    const int chunk_units = r->chunk_units;
    const uint64_t n_units = r->n_units, u0 = r->u0;
    struct scratch s = r->s;
    float *rec = r->rec, *logits = r->logits;
    const int nu = (int)(n_units - u0 < (uint64_t)chunk_units ? n_units - u0 : (uint64_t)chunk_units);
    /* 1. corrupt into s.a (CBHW over the R batch) and run R; recreations to rec (CBHW, nu) */
    if (mode == PHIDNN_MODE_OFF || mode == PHIDNN_MODE_IDENTITY) {
        for (int u = 0; u < nu; u++) {
            const float *x = job->images + (size_t)((u0 + u) / S) * chw;
            for (int c = 0; c < C; c++) memcpy(s.a + ((size_t)c * nu + u) * hw, x + c * hw, sizeof(float) * hw);
        }
        if (mode == PHIDNN_MODE_IDENTITY) run_r(p, nt, false, nu, &s);
        memcpy(rec, s.a, sizeof(float) * chw * nu);
    } else if (mode == PHIDNN_MODE_SR) {
        const int hs = H / 2, ws = W / 2;
        for (int u = 0; u < nu; u++) {
            const float *x = job->images + (size_t)((u0 + u) / S) * chw;
            for (int c = 0; c < C; c++) {
                float *lo = s.a + ((size_t)c * nu + u) * hs * ws;
                vops_area_down(x + c * hw, 1, H, W, 2, lo);
                for (int i = 0; i < hs * ws; i++) {
                    const float v = lo[i] + in->sr_sigma * vops_rng_normal(r->rngp);
                    lo[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
                }
            }
            if (job->corrupted && (u0 + u) % S == 0) {
                float *dst = job->corrupted + (size_t)((u0 + u) / S) * chw;
                for (int c = 0; c < C; c++)
                    vops_upsample(s.a + ((size_t)c * nu + u) * hs * ws, 1, hs, ws, 2, dst + c * hw);
            }
        }
        run_r(p, nt, true, nu, &s);
        memcpy(rec, s.a, sizeof(float) * chw * nu);
    } else { /* inpaint: R batch index k * nu + u, channels 0..C-1 the masked image, C the mask */
        const int nr = nu * K;
        const uint8_t *part = r->part; /* NULL: the 2x2 grid */
        if (part)
            for (size_t q = 0; q < (size_t)nu * hw; q++) r->part[q] = (uint8_t)vops_rng_index(r->rngp, (uint32_t)K);
        for (int k = 0; k < K; k++)
            for (int u = 0; u < nu; u++) {
                const float *x = job->images + (size_t)((u0 + u) / S) * chw;
                const int b = k * nu + u;
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++) {
                        const float m = inpaint_mask(part, u, k, i, j, H, W);
                        for (int c = 0; c < C; c++)
                            s.a[((size_t)c * nr + b) * hw + i * W + j] = x[c * hw + i * W + j] * (1.0f - m);
                        s.a[((size_t)C * nr + b) * hw + i * W + j] = m;
                    }
            }
        if (job->corrupted)
            for (int u = 0; u < nu; u++) {
                if ((u0 + u) % S) continue;
                float *dst = job->corrupted + (size_t)((u0 + u) / S) * chw;
                for (int c = 0; c < C; c++) memcpy(dst + c * hw, s.a + ((size_t)c * nr + u) * hw, sizeof(float) * hw);
            }
        run_r(p, nt, false, nr, &s);
        /* x_hat = sum_k M_k . R_k */
        for (int c = 0; c < C; c++)
            for (int u = 0; u < nu; u++) {
                float *o = rec + ((size_t)c * nu + u) * hw;
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++) {
                        float v = 0.0f;
                        for (int k = 0; k < K; k++)
                            v += inpaint_mask(part, u, k, i, j, H, W) * s.a[((size_t)c * nr + k * nu + u) * hw + i * W + j];
                        o[i * W + j] = v;
                    }
            }
    }
    for (int u = 0; u < nu; u++) {
        const uint64_t img = (u0 + u) / S;
        if ((u0 + u) % S) continue;
        if (mode == PHIDNN_MODE_OFF && job->corrupted) {
            for (int c = 0; c < C; c++)
                memcpy(job->corrupted + img * chw + c * hw, rec + ((size_t)c * nu + u) * hw, sizeof(float) * hw);
        }
        if (mode == PHIDNN_MODE_IDENTITY && job->corrupted)
            memcpy(job->corrupted + img * chw, job->images + img * chw, sizeof(float) * chw);
        if (job->recreated)
            for (int c = 0; c < C; c++)
                memcpy(job->recreated + img * chw + c * hw, rec + ((size_t)c * nu + u) * hw, sizeof(float) * hw);
    }
    /* 2. classify the recreations */
    memcpy(s.a, rec, sizeof(float) * chw * nu);
    run_c(p, nt, nu, &s, logits);
    for (int u = 0; u < nu; u++) {
        const uint64_t img = (u0 + u) / S;
        float *l = logits + (size_t)u * ncls;
        if (job->logits && (u0 + u) % S == 0) memcpy(job->logits + img * ncls, l, sizeof(float) * ncls);
        vops_softmax(l, 1, (int)ncls);
        for (size_t c = 0; c < ncls; c++) job->probs[img * ncls + c] += l[c] / (float)S;
    }
    r->u0 += (uint64_t)chunk_units;
    return r->u0 >= r->n_units;
}

int phidnn_forward(const struct phidnn *p, const struct phidnn_job *job)
{
    struct phidnn_run *r;
    int rc = phidnn_run_begin(p, job, &r);
    if (rc) return rc;
    while (!phidnn_run_step(r)) {
    }
    phidnn_run_end(r);
    return 0;
}
