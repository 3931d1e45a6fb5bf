/*
 * quantize.c - quantised copy of a GGUF model. See quantize.h.
 */
#define _DEFAULT_SOURCE
#include "quantize.h"

#include "errors.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define fail(code, ...) sa_errf(code, msg, msg_len, __VA_ARGS__)

static const struct {
    const char *name;
    enum quant_type base;
    bool mixture;
    uint32_t ftype; /* llama.cpp's general.file_type (enum llama_ftype) */
} schemes[] = {
    {"Q8_0", QUANT_Q8_0, false, 7},     {"Q4_0", QUANT_Q4_0, false, 2},     {"Q2_K", QUANT_Q2_K, false, 10},
    {"Q3_K", QUANT_Q3_K, false, 11},    {"Q4_K", QUANT_Q4_K, false, 14},    {"Q5_K", QUANT_Q5_K, false, 16},
    {"Q6_K", QUANT_Q6_K, false, 18},    {"IQ4_NL", QUANT_IQ4_NL, false, 25}, {"IQ4_XS", QUANT_IQ4_XS, false, 30},
    {"Q4_K_M", QUANT_Q4_K, true, 15},   {"Q5_K_M", QUANT_Q5_K, true, 17},
};
#define N_SCHEMES (sizeof schemes / sizeof schemes[0])

bool quantize_parse_scheme(const char *name, enum quant_type *base, bool *mixture)
{
    for (size_t i = 0; i < N_SCHEMES; i++)
        if (strcmp(name, schemes[i].name) == 0) {
            *base = schemes[i].base;
            *mixture = schemes[i].mixture;
            return true;
        }
    return false;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and
 * every third layer in between. */
static bool more_bits(uint32_t i, uint32_t n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2);
}

enum quant_type quantize_tensor_type(const char *name, enum quant_type base, bool mixture, uint32_t n_layer)
{
    if (!mixture) return base;
    if (strcmp(name, "output.weight") == 0) return QUANT_Q6_K;
    unsigned layer;
    char rest[64];
    if (sscanf(name, "blk.%u.%63s", &layer, rest) == 2 &&
        (strcmp(rest, "attn_v.weight") == 0 || strcmp(rest, "ffn_down.weight") == 0) && more_bits(layer, n_layer))
        return QUANT_Q6_K;
    return base;
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
static int put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }
static int put_u64(FILE *f, uint64_t v) { return put(f, &v, 8); }
static int put_str(FILE *f, const char *s, size_t n) { return put_u64(f, n) || put(f, s, n); }

static bool key_is(struct gguf_str k, const char *z) { return k.len == strlen(z) && memcmp(k.data, z, k.len) == 0; }

int quantize_file(const char *in, const char *out, const char *scheme, struct quantize_stats *stats, char *msg,
                  size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    enum quant_type base;
    bool mixture;
    size_t si = 0;
    for (; si < N_SCHEMES && strcmp(scheme, schemes[si].name) != 0; si++) {}
    if (!quantize_parse_scheme(scheme, &base, &mixture))
        return fail(SA_ERR_INVALID_ARG, "type '%s': not one of Q8_0 Q4_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS "
                                        "Q4_K_M Q5_K_M", scheme);
    struct gguf *g = NULL;
    int rc = gguf_open_file(in, &g, msg, msg_len);
    if (rc) return rc;
    uint64_t nt = gguf_n_tensors(g);
    uint32_t n_layer = 0, align = gguf_alignment(g);
    char arch[64], key[96];
    if (gguf_get_cstr(g, "general.architecture", arch, sizeof arch) == 0) {
        snprintf(key, sizeof key, "%s.block_count", arch);
        gguf_get_u32(g, key, &n_layer);
    }
    enum quant_type *types = calloc(nt ? nt : 1, sizeof *types);
    uint64_t *offs = calloc(nt ? nt : 1, sizeof *offs);
    float *row = NULL;
    void *qrow = NULL;
    FILE *f = NULL;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    if (!types || !offs) {
        rc = SA_ERR_NOMEM;
        goto done;
    }
    /* types and offsets */
    uint64_t off = 0, max_row = 1;
    struct quantize_stats st = {.n_tensors = nt};
    for (uint64_t i = 0; i < nt; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.data);
        if (t->type != QUANT_F32 && t->type != QUANT_F16 && t->type != QUANT_BF16) {
            rc = fail(SA_ERR_UNSUPPORTED, "tensor '%s': input is %s; quantize takes F32, F16 or BF16 tensors", nm,
                      quant_type_name(t->type));
            goto done;
        }
        enum quant_type ty = (enum quant_type)t->type;
        if (t->n_dims == 2) {
            enum quant_type q = quantize_tensor_type(nm, base, mixture, n_layer);
            if ((uint64_t)t->ne[0] % quant_block_size(q) == 0) ty = q;
        }
        types[i] = ty;
        if (ty != (enum quant_type)t->type) st.n_quantized++;
        if ((uint64_t)t->ne[0] > max_row) max_row = (uint64_t)t->ne[0];
        off = (off + align - 1) / align * align;
        offs[i] = off;
        off += quant_row_bytes(ty, (size_t)t->ne[0]) * (t->n_elements / (uint64_t)t->ne[0]);
        st.bytes_in += t->n_bytes;
    }
    st.bytes_out = off;
    row = malloc(max_row * sizeof(float));
    qrow = malloc(max_row * sizeof(float));
    f = fopen(tmp, "wb");
    if (!row || !qrow) {
        rc = SA_ERR_NOMEM;
        goto done;
    }
    if (!f) {
        rc = fail(SA_ERR_IO, "%s: cannot create", tmp);
        goto done;
    }
    /* header and metadata: every entry but the two we set */
    uint64_t nkv = 0;
    for (uint64_t k = 0; k < gguf_n_kv(g); k++) {
        struct gguf_str kk = gguf_kv_key(g, k);
        if (!key_is(kk, "general.file_type") && !key_is(kk, "general.quantization_version")) nkv++;
    }
    int e = put(f, "GGUF", 4) || put_u32(f, 3) || put_u64(f, nt) || put_u64(f, nkv + 2);
    for (uint64_t k = 0; k < gguf_n_kv(g) && !e; k++) {
        struct gguf_str kk = gguf_kv_key(g, k);
        if (key_is(kk, "general.file_type") || key_is(kk, "general.quantization_version")) continue;
        const uint8_t *raw;
        size_t len;
        gguf_kv_raw(g, k, &raw, &len);
        e = put(f, raw, len);
    }
    e = e || put_str(f, "general.quantization_version", 28) || put_u32(f, GGUF_TYPE_UINT32) || put_u32(f, 2);
    e = e || put_str(f, "general.file_type", 17) || put_u32(f, GGUF_TYPE_UINT32) || put_u32(f, schemes[si].ftype);
    for (uint64_t i = 0; i < nt && !e; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        e = put_str(f, t->name.data, (size_t)t->name.len) || put_u32(f, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && !e; d++) e = put_u64(f, (uint64_t)t->ne[d]);
        e = e || put_u32(f, (uint32_t)types[i]) || put_u64(f, offs[i]);
    }
    /* tensor data, aligned */
    long pos = e ? -1 : ftell(f);
    static const uint8_t zeros[64];
    if (pos < 0) e = -1;
    uint64_t data_start = e ? 0 : ((uint64_t)pos + align - 1) / align * align, written = 0;
    for (uint64_t pad = data_start - (uint64_t)(pos < 0 ? 0 : pos); pad > 0 && !e;) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        e = put(f, zeros, n);
        pad -= n;
    }
    for (uint64_t i = 0; i < nt && !e; i++) {
        const struct gguf_tensor *t = gguf_tensor(g, i);
        for (; written < offs[i] && !e; written++) e = put(f, zeros, 1);
        size_t n0 = (size_t)t->ne[0], nrows = (size_t)(t->n_elements / (uint64_t)t->ne[0]);
        size_t in_rb = quant_row_bytes((enum quant_type)t->type, n0), out_rb = quant_row_bytes(types[i], n0);
        for (size_t r = 0; r < nrows && !e; r++) {
            const void *src = (const uint8_t *)t->data + r * in_rb;
            if (types[i] == (enum quant_type)t->type) {
                e = put(f, src, in_rb);
            } else {
                quant_dequantize_row((enum quant_type)t->type, src, row, n0);
                quant_quantize_row(types[i], row, qrow, n0);
                e = put(f, qrow, out_rb);
            }
        }
        written += (uint64_t)out_rb * nrows;
    }
    if (e || fflush(f) != 0) {
        rc = fail(SA_ERR_IO, "%s: write failed", tmp);
        goto done;
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = fail(SA_ERR_IO, "%s: write failed", tmp);
        goto done;
    }
    f = NULL;
    if (rename(tmp, out) != 0) {
        rc = fail(SA_ERR_IO, "%s: cannot rename to %s", tmp, out);
        goto done;
    }
    if (stats) *stats = st;
done:
    if (f) fclose(f);
    if (rc) remove(tmp);
    free(row);
    free(qrow);
    free(types);
    free(offs);
    gguf_close(g);
    return rc;
}
