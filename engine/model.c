#define _DEFAULT_SOURCE
#include "model.h"

#include "errors.h"
#include "gemm.h"
#include "gguf.h"
#include "hf.h"
#include "log.h"
#include "repack.h"
#include "tokenizer.h"

#include <errno.h>
#include <float.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define fail(msg, msg_len, ...) sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, __VA_ARGS__)

/* Read a required/optional u32 hyper-parameter "<arch>.<suffix>". */
static int hp_u32(const struct gguf *g, const char *arch, const char *suffix, bool required, uint32_t def,
                  uint32_t lo, uint32_t hi, uint32_t *out, char *msg, size_t msg_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_u32(g, key, out);
    if (rc == SA_ERR_NOT_FOUND) {
        if (required) return fail(msg, msg_len, "%s: required key is missing", key);
        *out = def;
        return 0;
    }
    if (rc == SA_ERR_TYPE) return fail(msg, msg_len, "%s: must be an integer", key);
    if (rc) return fail(msg, msg_len, "%s: value out of range", key);
    if (*out < lo || *out > hi) return fail(msg, msg_len, "%s: %u not in %u..%u", key, *out, lo, hi);
    return 0;
}

static int hp_f32(const struct gguf *g, const char *arch, const char *suffix, float def, float lo, float hi,
                  float *out, char *msg, size_t msg_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(g, key, out);
    if (rc == SA_ERR_NOT_FOUND) {
        *out = def;
        return 0;
    }
    if (rc) return fail(msg, msg_len, "%s: must be a float", key);
    if (!(*out >= lo && *out <= hi)) return fail(msg, msg_len, "%s: %g not in %g..%g", key, *out, lo, hi);
    return 0;
}

/* A tensor by name in any shard (a single file is one shard). */
static const struct gguf_tensor *find_tensor(const struct model *m, const char *name)
{
    for (uint32_t s = 0; s < m->n_shards; s++) {
        const struct gguf_tensor *t = gguf_find_tensor(m->shards[s], name);
        if (t) return t;
    }
    return NULL;
}

/* Look up a 2-D weight and check its shape [n_in, n_out]. */
static int get_weight(const struct model *m, const char *name, uint32_t n_in, uint32_t n_out,
                      struct model_weight *w, char *msg, size_t msg_len)
{
    const struct gguf_tensor *t = find_tensor(m, name);
    if (!t) return fail(msg, msg_len, "%s: required tensor is missing", name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return fail(msg, msg_len, "%s: shape [%lld, %lld, %lld, %lld] does not match the expected [%u, %u]", name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], n_in,
                    n_out);
    if (!quant_scales_finite((enum quant_type)t->type, t->data, (size_t)t->n_elements))
        return fail(msg, msg_len, "%s: NaN or infinite block scale (%s)", name, quant_type_name(t->type));
    w->type = (enum quant_type)t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = quant_row_bytes(w->type, n_in);
    w->data = t->data;
    return 0;
}

/* Convert a 1-D norm vector of length n into dst (F32). */
static int get_norm(const struct model *m, const char *name, uint32_t n, float *dst, char *msg, size_t msg_len)
{
    const struct gguf_tensor *t = find_tensor(m, name);
    if (!t) return fail(msg, msg_len, "%s: required tensor is missing", name);
    if (t->n_elements != n || t->ne[0] != n)
        return fail(msg, msg_len, "%s: %llu elements, expected %u", name, (unsigned long long)t->n_elements, n);
    if (!quant_scales_finite((enum quant_type)t->type, t->data, n))
        return fail(msg, msg_len, "%s: NaN or infinite block scale (%s)", name, quant_type_name(t->type));
    quant_dequantize_row((enum quant_type)t->type, t->data, dst, n);
    for (uint32_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return fail(msg, msg_len, "%s: element %u is %g", name, i, (double)dst[i]);
    return 0;
}

static int read_whole_file(const char *path, void **buf, size_t *len, char *msg, size_t msg_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, msg_len, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? SA_ERR_NOT_FOUND : SA_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, msg_len, "%s: not a regular file", path);
        close(fd);
        return SA_ERR_IO;
    }
    size_t n = (size_t)st.st_size, align = 2u << 20;
    size_t cap = (n + align - 1) / align * align;
    void *p = cap ? aligned_alloc(align, cap) : NULL;
    if (!p) {
        close(fd);
        snprintf(msg, msg_len, "%s: cannot allocate %zu bytes for --no-mmap", path, n);
        return SA_ERR_NOMEM;
    }
#ifdef MADV_HUGEPAGE
    madvise(p, cap, MADV_HUGEPAGE); /* fewer TLB misses when streaming weights */
#endif
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, (char *)p + off, n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(msg, msg_len, "%s: read: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
            free(p);
            close(fd);
            return SA_ERR_IO;
        }
        off += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return 0;
}

/* Open one file: mapped, or read into a malloc'd copy (*copy, owned by the caller). */
static int open_one(const char *path, bool use_mmap, struct gguf **g, void **copy, size_t *copy_len, char *msg,
                    size_t msg_len)
{
    *copy = NULL;
    if (use_mmap) return gguf_open_file(path, g, msg, msg_len);
    int rc = read_whole_file(path, copy, copy_len, msg, msg_len);
    if (!rc) rc = gguf_open_memory(*copy, *copy_len, g, msg, msg_len);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct gguf_str *x = *(const struct gguf_str *const *)a, *y = *(const struct gguf_str *const *)b;
    size_t n = x->len < y->len ? (size_t)x->len : (size_t)y->len;
    int r = memcmp(x->data, y->data, n);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* A split model (llama-gguf-split): the first shard, <prefix>-00001-of-0000M.gguf,
 * carries split.count = M, split.no = 0 and split.tensors.count; the others
 * are <prefix>-0000N-of-0000M.gguf with split.no = N-1 and the same counts.
 * m->shards[0] is already open; this opens the rest and checks them. */
static int open_split(struct model *m, const char *path, bool use_mmap, char *msg, size_t msg_len)
{
    const struct gguf *g0 = m->shards[0];
    uint32_t count = 0, no = 0;
    int64_t n_tensors = 0;
    int rc = gguf_get_u32(g0, "split.count", &count);
    if (rc == SA_ERR_NOT_FOUND) return 0;
    if (rc) return fail(msg, msg_len, "split.count: must be an integer in 1..%d", MODEL_MAX_SHARDS);
    if (count < 1 || count > MODEL_MAX_SHARDS)
        return fail(msg, msg_len, "split.count: %u not in 1..%d", count, MODEL_MAX_SHARDS);
    if (gguf_get_u32(g0, "split.no", &no)) return fail(msg, msg_len, "split.no: missing or not an integer");
    if (no != 0)
        return fail(msg, msg_len, "split.no: this is shard %u of %u; load the first one (-00001-of-%05u.gguf)", no + 1,
                    count, count);
    if (gguf_get_i64(g0, "split.tensors.count", &n_tensors))
        return fail(msg, msg_len, "split.tensors.count: missing or not an integer");
    /* the shard names follow from the first one's */
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-%05u-of-%05u.gguf", 1u, count);
    size_t plen = strlen(path), slen = strlen(suffix);
    if (count > 1 && (plen < slen || strcmp(path + plen - slen, suffix) != 0))
        return fail(msg, msg_len, "split.count: %u shards, but the file name does not end in %s", count, suffix);
    struct gguf **sh = realloc(m->shards, count * sizeof *sh);
    if (!sh) return SA_ERR_NOMEM;
    m->shards = sh;
    void **cp = realloc(m->shard_copies, count * sizeof *cp);
    if (!cp) return SA_ERR_NOMEM;
    m->shard_copies = cp;
    uint64_t total = gguf_n_tensors(g0);
    for (uint32_t i = 1; i < count; i++) {
        char sp[4096], sub[256];
        if (plen - slen + 32 > sizeof sp) return fail(msg, msg_len, "split.count: path too long");
        snprintf(sp, sizeof sp, "%.*s-%05u-of-%05u.gguf", (int)(plen - slen), path, i + 1, count);
        size_t copy_len = 0;
        rc = open_one(sp, use_mmap, &m->shards[i], &m->shard_copies[i], &copy_len, sub, sizeof sub);
        if (rc) {
            m->shards[i] = NULL;
            free(m->shard_copies[i]);
            m->shard_copies[i] = NULL;
            size_t spl = strlen(sp); /* open errors already start with the path */
            const char *why = strncmp(sub, sp, spl) == 0 && sub[spl] == ':' ? sub + spl + 2 : sub;
            return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "split shard %u of %u %s: %s", i + 1, count, sp, why);
        }
        m->n_shards = i + 1;
        const struct gguf *g = m->shards[i];
        uint32_t c2 = 0, n2 = 0;
        int64_t t2 = 0;
        if (gguf_get_u32(g, "split.count", &c2) || c2 != count)
            return fail(msg, msg_len, "split shard %u of %u %s: split.count %u, the first shard says %u", i + 1,
                        count, sp, c2, count);
        if (gguf_get_u32(g, "split.no", &n2) || n2 != i)
            return fail(msg, msg_len, "split shard %u of %u %s: split.no %u, expected %u", i + 1, count, sp, n2, i);
        if (gguf_get_i64(g, "split.tensors.count", &t2) || t2 != n_tensors)
            return fail(msg, msg_len, "split shard %u of %u %s: split.tensors.count %lld does not match the first shard's %lld",
                        i + 1, count, sp, (long long)t2, (long long)n_tensors);
        total += gguf_n_tensors(g);
    }
    if ((uint64_t)n_tensors != total)
        return fail(msg, msg_len, "split.tensors.count: %lld, but the %u shards hold %llu tensors",
                    (long long)n_tensors, count, (unsigned long long)total);
    /* a tensor name may appear in one shard only */
    const struct gguf_str **names = malloc((size_t)(total ? total : 1) * sizeof *names);
    if (!names) return SA_ERR_NOMEM;
    size_t k = 0;
    for (uint32_t s = 0; s < m->n_shards; s++)
        for (uint64_t i = 0; i < gguf_n_tensors(m->shards[s]); i++) names[k++] = &gguf_tensor(m->shards[s], i)->name;
    qsort(names, k, sizeof *names, cmp_tensor_name);
    for (size_t i = 1; i < k; i++)
        if (cmp_tensor_name(&names[i - 1], &names[i]) == 0) {
            rc = fail(msg, msg_len, "tensor '%.*s': appears in more than one split shard",
                      (int)(names[i]->len > 200 ? 200 : names[i]->len), names[i]->data);
            break;
        }
    free(names);
    return rc;
}

/* Weights read into memory: Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K matrices into the load-time layout of
 * repack.h, in place (the copy is ours), where the active ISA has its kernel.
 * token_embd stays plain (rows are looked up one at a time), and so does a tied
 * output head, its alias. */
static int repack_weights(struct model *m)
{
    enum quant_isa isa = quant_isa_active();
    if (isa == QUANT_ISA_SCALAR) return 0; /* SASERVE_QUANT_ISA=scalar: the plain layout */
    struct model_weight *ws[8];
    size_t n = 0, max_rb = 0;
    void *tmp = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t l = 0; l <= m->hp.n_layer; l++) {
            n = 0;
            if (l == m->hp.n_layer) {
                if (!m->tied_output) ws[n++] = &m->output;
            } else {
                struct model_layer *L = &m->layers[l];
                ws[n++] = &L->wq, ws[n++] = &L->wk, ws[n++] = &L->wv, ws[n++] = &L->wo;
                ws[n++] = &L->w_gate, ws[n++] = &L->w_up, ws[n++] = &L->w_down;
            }
            for (size_t i = 0; i < n; i++) {
                struct model_weight *w = ws[i];
                if (!gemm_r16_supported(isa, w->type) || w->layout != MODEL_LAYOUT_PLAIN) continue;
                if (pass == 0) {
                    max_rb = w->row_bytes > max_rb ? w->row_bytes : max_rb;
                    continue;
                }
                repack_r16_matrix(w->type, (void *)(uintptr_t)w->data, w->row_bytes, w->n_in, w->n_out, tmp);
                w->layout = MODEL_LAYOUT_R16;
            }
        }
        if (pass == 0) {
            if (!max_rb) return 0;
            tmp = malloc(REPACK_R16_ROWS * max_rb);
            if (!tmp) return SA_ERR_NOMEM;
        }
    }
    free(tmp);
    return 0;
}

int model_load(const char *path, const struct model_load_opts *opts, struct model **out, char *msg,
               size_t msg_len)
{
    struct model_load_opts def = {.use_mmap = true};
    if (!opts) opts = &def;
    *out = NULL;
    if (msg && msg_len) msg[0] = 0;
    struct model *m = calloc(1, sizeof *m);
    if (!m) return SA_ERR_NOMEM;
    int rc;
    if (hf_is_checkpoint(path)) { /* Hugging Face directory: hf.c does the rest */
        rc = hf_load(path, opts, m, msg, msg_len);
        if (rc) goto err;
        *out = m;
        return 0;
    }
    m->shards = calloc(1, sizeof *m->shards);
    m->shard_copies = calloc(1, sizeof *m->shard_copies);
    if (!m->shards || !m->shard_copies) {
        rc = SA_ERR_NOMEM;
        goto err;
    }
    rc = open_one(path, opts->use_mmap, &m->gguf, &m->file_copy, &m->file_copy_len, msg, msg_len);
    if (rc) goto err;
    m->shards[0] = m->gguf;
    m->n_shards = 1;
    if ((rc = open_split(m, path, opts->use_mmap, msg, msg_len))) goto err;
    const struct gguf *g = m->gguf;

    char arch[64];
    rc = gguf_get_cstr(g, "general.architecture", arch, sizeof arch);
    if (rc) {
        rc = fail(msg, msg_len, "general.architecture: %s",
                  rc == SA_ERR_NOT_FOUND ? "missing" : rc == SA_ERR_INVALID_ARG ? "contains a NUL byte" : "must be a string");
        goto err;
    }
    if (strcmp(arch, "llama") != 0) {
        rc = fail(msg, msg_len, "general.architecture: '%s' is not supported (llama is)", arch);
        rc = SA_ERR_UNSUPPORTED;
        goto err;
    }
    if (gguf_get_cstr(g, "general.name", m->name, sizeof m->name)) snprintf(m->name, sizeof m->name, "llama");

    struct model_hparams *hp = &m->hp;
    if ((rc = hp_u32(g, arch, "embedding_length", true, 0, 1, 65536, &hp->dim, msg, msg_len)) ||
        (rc = hp_u32(g, arch, "block_count", true, 0, 1, 1024, &hp->n_layer, msg, msg_len)) ||
        (rc = hp_u32(g, arch, "feed_forward_length", true, 0, 1, 1u << 20, &hp->ffn, msg, msg_len)) ||
        (rc = hp_u32(g, arch, "attention.head_count", true, 0, 1, 1024, &hp->n_head, msg, msg_len)) ||
        (rc = hp_u32(g, arch, "attention.head_count_kv", false, hp->n_head, 1, 1024, &hp->n_head_kv, msg,
                     msg_len)) ||
        (rc = hp_u32(g, arch, "context_length", false, 2048, 1, 1u << 20, &hp->n_ctx_train, msg, msg_len)))
        goto err;
    if (hp->dim % hp->n_head) {
        rc = fail(msg, msg_len, "%s.attention.head_count: %u does not divide embedding_length %u", arch, hp->n_head,
                  hp->dim);
        goto err;
    }
    if (hp->n_head % hp->n_head_kv) {
        rc = fail(msg, msg_len, "%s.attention.head_count_kv: %u does not divide head_count %u", arch,
                  hp->n_head_kv, hp->n_head);
        goto err;
    }
    hp->head_dim = hp->dim / hp->n_head;
    if ((rc = hp_u32(g, arch, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->n_rot, msg,
                     msg_len)))
        goto err;
    if (hp->n_rot % 2) {
        rc = fail(msg, msg_len, "%s.rope.dimension_count: %u must be even", arch, hp->n_rot);
        goto err;
    }
    /* epsilon > 0: a zero hidden state would otherwise divide by zero */
    if ((rc = hp_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, FLT_MIN, 1.0f, &hp->rms_eps, msg, msg_len)) ||
        (rc = hp_f32(g, arch, "rope.freq_base", 10000.0f, 1.0f, 1e9f, &hp->rope_base, msg, msg_len)))
        goto err;
    hp->rope = ROPE_NORMAL; /* llama in GGUF: Q/K rows already permuted for adjacent-pair rotation */

    const struct gguf_tensor *te = find_tensor(m, "token_embd.weight");
    if (!te) {
        rc = fail(msg, msg_len, "token_embd.weight: required tensor is missing");
        goto err;
    }
    if (te->n_dims != 2 || te->ne[0] != hp->dim || te->ne[1] < 1 || te->ne[1] > (1 << 22)) {
        rc = fail(msg, msg_len, "token_embd.weight: shape [%lld, %lld] does not match embedding_length %u",
                  (long long)te->ne[0], (long long)te->ne[1], hp->dim);
        goto err;
    }
    hp->n_vocab = (uint32_t)te->ne[1];
    uint32_t dim = hp->dim, qdim = hp->n_head * hp->head_dim, kvdim = hp->n_head_kv * hp->head_dim;
    if ((rc = get_weight(m, "token_embd.weight", dim, hp->n_vocab, &m->token_embd, msg, msg_len))) goto err;
    if (find_tensor(m, "output.weight")) {
        if ((rc = get_weight(m, "output.weight", dim, hp->n_vocab, &m->output, msg, msg_len))) goto err;
    } else {
        m->output = m->token_embd;
        m->tied_output = true;
    }
    m->norms = malloc(((size_t)hp->n_layer * 2 + 1) * dim * sizeof(float));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->norms || !m->layers) {
        rc = SA_ERR_NOMEM;
        goto err;
    }
    if ((rc = get_norm(m, "output_norm.weight", dim, m->norms, msg, msg_len))) goto err;
    m->output_norm = m->norms;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        struct model_layer *L = &m->layers[l];
        char name[96];
        float *an = m->norms + (size_t)(1 + 2 * l) * dim, *fn = an + dim;
#define W(field, suffix, nin, nout)                                                       \
    snprintf(name, sizeof name, "blk.%u." suffix ".weight", l);                          \
    if ((rc = get_weight(m, name, nin, nout, &L->field, msg, msg_len))) goto err;
        W(wq, "attn_q", dim, qdim)
        W(wk, "attn_k", dim, kvdim)
        W(wv, "attn_v", dim, kvdim)
        W(wo, "attn_output", qdim, dim)
        W(w_gate, "ffn_gate", dim, hp->ffn)
        W(w_up, "ffn_up", dim, hp->ffn)
        W(w_down, "ffn_down", hp->ffn, dim)
#undef W
        snprintf(name, sizeof name, "blk.%u.attn_norm.weight", l);
        if ((rc = get_norm(m, name, dim, an, msg, msg_len))) goto err;
        snprintf(name, sizeof name, "blk.%u.ffn_norm.weight", l);
        if ((rc = get_norm(m, name, dim, fn, msg, msg_len))) goto err;
        L->attn_norm = an;
        L->ffn_norm = fn;
    }
    for (uint32_t s = 0; s < m->n_shards; s++)
        for (uint64_t i = 0; i < gguf_n_tensors(m->shards[s]); i++)
            m->weight_bytes += gguf_tensor(m->shards[s], i)->n_bytes;
    if (!opts->use_mmap && (rc = repack_weights(m))) goto err;

    if (!opts->no_tokenizer) {
        rc = tok_create(g, &m->tok, msg, msg_len);
        if (rc) goto err;
        if (tok_n_vocab(m->tok) != (int32_t)hp->n_vocab) { /* fewer: rows no token names could be sampled */
            rc = fail(msg, msg_len, "tokenizer.ggml.tokens: %d tokens but token_embd.weight has %u rows",
                      tok_n_vocab(m->tok), hp->n_vocab);
            goto err;
        }
    }
    *out = m;
    return 0;
err:
    model_free(m);
    return rc ? rc : SA_ERR_BAD_MODEL;
}

/* One weight matrix, every element (name for the message). */
static int check_weight(const struct model_weight *w, const char *name, float *buf, size_t buf_n, char *msg,
                        size_t msg_len)
{
    size_t bad;
    if (w->layout == MODEL_LAYOUT_R16) { /* row by row, back in the plain layout */
        void *row = malloc(w->row_bytes);
        if (!row) return SA_ERR_NOMEM;
        for (size_t r = 0; r < w->n_out; r++) {
            const char *src = (const char *)w->data + r * w->row_bytes;
            if (r < w->n_out - w->n_out % REPACK_R16_ROWS)
                repack_r16_unpack_row(w->type, (const char *)w->data + (r - r % REPACK_R16_ROWS) * w->row_bytes,
                                      w->n_in, (int)(r % REPACK_R16_ROWS), row);
            else
                memcpy(row, src, w->row_bytes);
            if (!quant_values_finite(w->type, row, w->n_in, buf, buf_n, &bad)) {
                free(row);
                return fail(msg, msg_len, "%s: element %zu is not a finite number", name, r * w->n_in + bad);
            }
        }
        free(row);
        return 0;
    }
    if (!quant_values_finite(w->type, w->data, (size_t)w->n_in * w->n_out, buf, buf_n, &bad))
        return fail(msg, msg_len, "%s: element %zu is not a finite number", name, bad);
    return 0;
}

int model_check_values(const struct model *m, char *msg, size_t msg_len)
{
    float buf[4096];
    int rc = check_weight(&m->token_embd, "token_embd.weight", buf, 4096, msg, msg_len);
    if (!rc && !m->tied_output) rc = check_weight(&m->output, "output.weight", buf, 4096, msg, msg_len);
    for (uint32_t l = 0; l < m->hp.n_layer && !rc; l++) {
        const struct model_layer *L = &m->layers[l];
        const struct {
            const struct model_weight *w;
            const char *suffix;
        } ws[] = {{&L->wq, "attn_q"},       {&L->wk, "attn_k"},   {&L->wv, "attn_v"},      {&L->wo, "attn_output"},
                  {&L->w_gate, "ffn_gate"}, {&L->w_up, "ffn_up"}, {&L->w_down, "ffn_down"}};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0] && !rc; i++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, ws[i].suffix);
            rc = check_weight(ws[i].w, name, buf, 4096, msg, msg_len);
        }
    }
    return rc; /* norms: checked at load */
}

void model_free(struct model *m)
{
    if (!m) return;
    tok_destroy(m->tok);
    gguf_close(m->gguf);
    hf_storage_free(m->hf);
    free(m->file_copy);
    for (uint32_t s = 1; s < m->n_shards; s++) {
        gguf_close(m->shards[s]);
        free(m->shard_copies[s]);
    }
    free(m->shards);
    free(m->shard_copies);
    free(m->norms);
    free(m->layers);
    free(m);
}

uint64_t model_n_params(const struct model *m)
{
    const struct model_hparams *hp = &m->hp;
    uint64_t qdim = (uint64_t)hp->n_head * hp->head_dim, kvdim = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t per_layer = (uint64_t)hp->dim * (qdim + 2 * kvdim) + qdim * hp->dim + 3ull * hp->dim * hp->ffn +
                         2ull * hp->dim;
    uint64_t n = per_layer * hp->n_layer + (uint64_t)hp->n_vocab * hp->dim + hp->dim;
    if (!m->tied_output) n += (uint64_t)hp->n_vocab * hp->dim;
    return n;
}
