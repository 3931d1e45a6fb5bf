/*
 * hf.c - Hugging Face Llama checkpoints (config.json + model.safetensors +
 * tokenizer.json) into struct model; the contract is in hf.h. jansson reads
 * the JSON files only (see safetensors.h).
 */
#define _DEFAULT_SOURCE
#include "hf.h"

#include "errors.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define fail(msg, msg_len, ...) sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, __VA_ARGS__)
#define HF_MAX_JSON (64u << 20) /* config / tokenizer files larger than this are refused */

struct hf_storage {
    struct safetensors *st;
    char *chat_template; /* tokenizer_config.json chat_template, or NULL */
    void **owned; /* permuted or realigned weight copies */
    size_t n_owned, cap_owned;
};

void hf_storage_free(struct hf_storage *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_owned; i++) free(s->owned[i]);
    free(s->owned);
    free(s->chat_template);
    safetensors_close(s->st);
    free(s);
}

static void *own_alloc(struct hf_storage *s, size_t n)
{
    if (s->n_owned == s->cap_owned) {
        size_t nc = s->cap_owned ? 2 * s->cap_owned : 16;
        void **p = realloc(s->owned, nc * sizeof *p);
        if (!p) return NULL;
        s->owned = p;
        s->cap_owned = nc;
    }
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (p) s->owned[s->n_owned++] = p;
    return p;
}

const char *hf_chat_template(const struct hf_storage *s)
{
    return s ? s->chat_template : NULL;
}

bool hf_is_checkpoint(const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return false;
    if (S_ISDIR(sb.st_mode)) return true;
    size_t n = strlen(path);
    return S_ISREG(sb.st_mode) && n >= 12 && strcmp(path + n - 12, ".safetensors") == 0;
}

/* Read a whole (small) file. *buf is malloc'd and NUL-terminated. */
static int read_file(const char *path, char **buf, size_t *len, char *msg, size_t msg_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return sa_errf(e == ENOENT ? SA_ERR_NOT_FOUND : SA_ERR_IO, msg, msg_len, "%s: %s", path, strerror(e));
    }
    size_t cap = 4096, n = 0;
    char *p = malloc(cap + 1);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        if (cap >= HF_MAX_JSON) {
            free(p);
            fclose(f);
            return fail(msg, msg_len, "%s: larger than %u bytes", path, HF_MAX_JSON);
        }
        char *q = realloc(p, 2 * cap + 1);
        if (!q) {
            free(p);
            p = NULL;
            break;
        }
        p = q;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!p) return sa_errf(SA_ERR_NOMEM, msg, msg_len, "%s: out of memory", path);
    if (err) {
        free(p);
        return sa_errf(SA_ERR_IO, msg, msg_len, "%s: read error", path);
    }
    p[n] = 0;
    *buf = p;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* config.json                                                              */

static int cfg_u32(const json_t *c, const char *key, bool required, uint32_t def, uint32_t lo, uint32_t hi,
                   uint32_t *out, char *msg, size_t msg_len)
{
    const json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) {
        if (required) return fail(msg, msg_len, "config.json %s: required key is missing", key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return fail(msg, msg_len, "config.json %s: must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < (json_int_t)lo || x > (json_int_t)hi)
        return fail(msg, msg_len, "config.json %s: %lld not in %u..%u", key, (long long)x, lo, hi);
    *out = (uint32_t)x;
    return 0;
}

static int cfg_f32(const json_t *c, const char *key, float def, float lo, float hi, float *out, char *msg,
                   size_t msg_len)
{
    const json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return fail(msg, msg_len, "config.json %s: must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return fail(msg, msg_len, "config.json %s: %g not in %g..%g", key, x, lo, hi);
    *out = (float)x;
    return 0;
}

/* bos/eos: an integer, or a list whose first entry is used; -1 if absent. */
static int cfg_token_id(const json_t *c, const char *key, int32_t *out, char *msg, size_t msg_len)
{
    const json_t *v = json_object_get(c, key);
    *out = -1;
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return fail(msg, msg_len, "config.json %s: must be a non-negative integer", key);
    *out = (int32_t)json_integer_value(v);
    return 0;
}

static int parse_config(const char *text, size_t len, struct model_hparams *hp, bool *tied, int32_t *bos,
                        int32_t *eos, char *name, size_t name_cap, char *msg, size_t msg_len)
{
    json_error_t jerr;
    json_t *c = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!c) return fail(msg, msg_len, "config.json: invalid JSON at line %d: %.80s", jerr.line, jerr.text);
    int rc = 0;
    if (!json_is_object(c)) {
        rc = fail(msg, msg_len, "config.json: not a JSON object");
        goto out;
    }
    const json_t *arch = json_object_get(c, "architectures");
    const char *mt = json_string_value(json_object_get(c, "model_type"));
    bool llama = mt && strcmp(mt, "llama") == 0;
    for (size_t i = 0; i < json_array_size(arch); i++) {
        const char *a = json_string_value(json_array_get(arch, i));
        if (a && strcmp(a, "LlamaForCausalLM") == 0) llama = true;
    }
    if (!llama) {
        const char *a = json_string_value(json_array_get(arch, 0));
        rc = sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "config.json architectures: '%.60s' is not supported (LlamaForCausalLM is)",
                     a ? a : mt ? mt : "(missing)");
        goto out;
    }
    if ((rc = cfg_u32(c, "hidden_size", true, 0, 1, 65536, &hp->dim, msg, msg_len)) ||
        (rc = cfg_u32(c, "num_hidden_layers", true, 0, 1, 1024, &hp->n_layer, msg, msg_len)) ||
        (rc = cfg_u32(c, "intermediate_size", true, 0, 1, 1u << 20, &hp->ffn, msg, msg_len)) ||
        (rc = cfg_u32(c, "num_attention_heads", true, 0, 1, 1024, &hp->n_head, msg, msg_len)) ||
        (rc = cfg_u32(c, "num_key_value_heads", false, hp->n_head, 1, 1024, &hp->n_head_kv, msg, msg_len)) ||
        (rc = cfg_u32(c, "max_position_embeddings", false, 2048, 1, 1u << 20, &hp->n_ctx_train, msg, msg_len)) ||
        (rc = cfg_u32(c, "vocab_size", false, 0, 0, 1u << 22, &hp->n_vocab, msg, msg_len)) ||
        (rc = cfg_f32(c, "rms_norm_eps", 1e-6f, FLT_MIN, 1.0f, &hp->rms_eps, msg, msg_len)) || /* > 0 */
        (rc = cfg_f32(c, "rope_theta", 10000.0f, 1.0f, 1e9f, &hp->rope_base, msg, msg_len)) ||
        (rc = cfg_token_id(c, "bos_token_id", bos, msg, msg_len)) ||
        (rc = cfg_token_id(c, "eos_token_id", eos, msg, msg_len)))
        goto out;
    if (hp->dim % hp->n_head) {
        rc = fail(msg, msg_len, "config.json num_attention_heads: %u does not divide hidden_size %u", hp->n_head, hp->dim);
        goto out;
    }
    if (hp->n_head % hp->n_head_kv) {
        rc = fail(msg, msg_len, "config.json num_key_value_heads: %u does not divide num_attention_heads %u",
                  hp->n_head_kv, hp->n_head);
        goto out;
    }
    hp->head_dim = hp->dim / hp->n_head;
    if (hp->head_dim % 2) {
        rc = fail(msg, msg_len, "config.json hidden_size: head dimension %u must be even", hp->head_dim);
        goto out;
    }
    uint32_t hd;
    if ((rc = cfg_u32(c, "head_dim", false, hp->head_dim, 1, 65536, &hd, msg, msg_len))) goto out;
    if (hd != hp->head_dim) {
        rc = sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "config.json head_dim: %u != hidden_size / num_attention_heads = %u",
                     hd, hp->head_dim);
        goto out;
    }
    hp->n_rot = hp->head_dim;
    hp->rope = ROPE_NORMAL; /* after the Q/K row permutation below */
    const json_t *rs = json_object_get(c, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        rc = sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "config.json rope_scaling: only null is supported");
        goto out;
    }
    static const char *const no_bias[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *b = json_object_get(c, no_bias[i]);
        if (json_is_true(b)) {
            rc = sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "config.json %s: true is not supported", no_bias[i]);
            goto out;
        }
    }
    const char *act = json_string_value(json_object_get(c, "hidden_act"));
    if (act && strcmp(act, "silu") != 0) {
        rc = sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "config.json hidden_act: '%.40s' is not supported (silu is)", act);
        goto out;
    }
    const json_t *tw = json_object_get(c, "tie_word_embeddings");
    if (tw && !json_is_boolean(tw)) {
        rc = fail(msg, msg_len, "config.json tie_word_embeddings: must be a boolean");
        goto out;
    }
    *tied = json_is_true(tw);
    const char *nm = json_string_value(json_object_get(c, "_name_or_path"));
    if (nm && *nm) snprintf(name, name_cap, "%s", nm);
out:
    json_decref(c);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                  */

static int weight_type(const struct safetensors_tensor *t, enum quant_type *out, char *msg, size_t msg_len)
{
    switch (t->dtype) {
    case SAFETENSORS_F32: *out = QUANT_F32; return 0;
    case SAFETENSORS_F16: *out = QUANT_F16; return 0;
    case SAFETENSORS_BF16: *out = QUANT_BF16; return 0;
    default:
        return sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "model.safetensors %s: dtype %s is not supported (F32, F16, BF16 are)",
                       t->name, safetensors_dtype_name(t->dtype));
    }
}

static const struct safetensors_tensor *find_shaped(const struct safetensors *st, const char *name, uint32_t n_dims,
                                                    uint64_t d0, uint64_t d1, char *msg, size_t msg_len, int *rc)
{
    const struct safetensors_tensor *t = safetensors_find(st, name);
    if (!t) {
        *rc = fail(msg, msg_len, "model.safetensors %s: required tensor is missing", name);
        return NULL;
    }
    if (t->n_dims != n_dims || t->shape[0] != d0 || (n_dims == 2 && t->shape[1] != d1)) {
        if (n_dims == 2)
            *rc = fail(msg, msg_len, "model.safetensors %s: shape [%llu%s%llu] does not match the expected [%llu, %llu]", name,
                       (unsigned long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                       t->n_dims > 1 ? (unsigned long long)t->shape[1] : 0ull, (unsigned long long)d0,
                       (unsigned long long)d1);
        else
            *rc = fail(msg, msg_len, "model.safetensors %s: shape with %u dims / %llu elements, expected [%llu]", name,
                       t->n_dims, (unsigned long long)t->n_elements, (unsigned long long)d0);
        return NULL;
    }
    *rc = 0;
    return t;
}

/* A [n_out, n_in] weight; permute_heads > 0 applies the rotate-half ->
 * adjacent-pair row permutation for that many heads of head_dim rows. */
static int get_weight(struct hf_storage *s, const char *name, uint32_t n_in, uint32_t n_out, uint32_t permute_heads,
                      uint32_t head_dim, struct model_weight *w, char *msg, size_t msg_len)
{
    int rc;
    const struct safetensors_tensor *t = find_shaped(s->st, name, 2, n_out, n_in, msg, msg_len, &rc);
    if (!t) return rc;
    if ((rc = weight_type(t, &w->type, msg, msg_len))) return rc;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = quant_row_bytes(w->type, n_in);
    w->data = t->data;
    uint32_t es = safetensors_dtype_size(t->dtype);
    if (!permute_heads && (uintptr_t)t->data % es == 0) return 0;
    char *dst = own_alloc(s, (size_t)t->n_bytes);
    if (!dst) return sa_errf(SA_ERR_NOMEM, msg, msg_len, "model.safetensors %s: out of memory", name);
    const char *src = t->data;
    if (!permute_heads) {
        memcpy(dst, src, (size_t)t->n_bytes);
    } else {
        uint32_t half = head_dim / 2;
        for (uint32_t h = 0; h < permute_heads; h++)
            for (uint32_t i = 0; i < half; i++)
                for (uint32_t j = 0; j < 2; j++) {
                    size_t to = (size_t)h * head_dim + 2 * i + j, from = (size_t)h * head_dim + (size_t)j * half + i;
                    memcpy(dst + to * w->row_bytes, src + from * w->row_bytes, w->row_bytes);
                }
    }
    w->data = dst;
    return 0;
}

static int get_norm(const struct safetensors *st, const char *name, uint32_t n, float *dst, char *msg, size_t msg_len)
{
    int rc;
    const struct safetensors_tensor *t = find_shaped(st, name, 1, n, 0, msg, msg_len, &rc);
    if (!t) return rc;
    enum quant_type ty;
    if ((rc = weight_type(t, &ty, msg, msg_len))) return rc;
    if (ty == QUANT_F32) {
        memcpy(dst, t->data, (size_t)n * sizeof(float));
    } else {
        uint16_t *tmp = malloc((size_t)n * sizeof *tmp); /* aligned copy of the 16-bit values */
        if (!tmp) return sa_errf(SA_ERR_NOMEM, msg, msg_len, "model.safetensors %s: out of memory", name);
        memcpy(tmp, t->data, (size_t)n * sizeof *tmp);
        quant_dequantize_row(ty, tmp, dst, n);
        free(tmp);
    }
    for (uint32_t i = 0; i < n; i++) /* as the GGUF loader: a norm that is not a number is refused */
        if (!isfinite(dst[i]))
            return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "model.safetensors %s: element %u is %g", name, i,
                           (double)dst[i]);
    return 0;
}

/* Prefix "DIR/" + file in buf; the message names the file when too long. */
static int join(char *buf, size_t cap, const char *dir, const char *file, char *msg, size_t msg_len)
{
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "%s/%s: path too long", dir, file);
    return 0;
}

static int load_tokenizer(const char *dir, struct model *m, int32_t bos, int32_t eos, char *msg, size_t msg_len)
{
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    int add_bos = -1, add_eos = -1;
    int rc = join(path, sizeof path, dir, "tokenizer_config.json", msg, msg_len);
    if (rc) return rc;
    rc = read_file(path, &text, &len, msg, msg_len);
    if (rc && rc != SA_ERR_NOT_FOUND) return rc; /* optional, but readable and valid if present */
    if (rc == 0) {
        json_error_t jerr;
        /* INT_AS_REAL: transformers writes model_max_length = 1e30 as an integer */
        json_t *tc = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &jerr);
        if (!tc) {
            free(text);
            return fail(msg, msg_len, "tokenizer_config.json: invalid JSON at line %d: %.80s", jerr.line, jerr.text);
        }
        const json_t *b = json_object_get(tc, "add_bos_token"), *e = json_object_get(tc, "add_eos_token");
        if (json_is_boolean(b)) add_bos = json_is_true(b);
        if (json_is_boolean(e)) add_eos = json_is_true(e);
        const char *tpl = json_string_value(json_object_get(tc, "chat_template"));
        if (tpl && !(m->hf->chat_template = strdup(tpl))) {
            json_decref(tc);
            free(text);
            return sa_errf(SA_ERR_NOMEM, msg, msg_len, "tokenizer_config.json: out of memory");
        }
        json_decref(tc);
        free(text);
        text = NULL;
    }
    if (msg && msg_len) msg[0] = 0;
    if ((rc = join(path, sizeof path, dir, "tokenizer.json", msg, msg_len))) return rc;
    if ((rc = read_file(path, &text, &len, msg, msg_len))) return rc;
    rc = tok_create_hf_json(text, len, bos, eos, add_bos, add_eos, &m->tok, msg, msg_len);
    free(text);
    if (rc) return rc;
    if (tok_n_vocab(m->tok) > (int32_t)m->hp.n_vocab)
        return fail(msg, msg_len, "tokenizer.json: %d tokens but the embedding matrix has %u rows",
                    tok_n_vocab(m->tok), m->hp.n_vocab);
    return 0;
}

int hf_load(const char *path, const struct model_load_opts *opts, struct model *m, char *msg, size_t msg_len)
{
    char dir[4096], file[4096];
    struct stat sb;
    int rc;
    if (stat(path, &sb) != 0) return sa_errf(SA_ERR_NOT_FOUND, msg, msg_len, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0; /* "hf/" -> "hf" */
        if ((rc = join(file, sizeof file, dir, "model.safetensors", msg, msg_len))) return rc;
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    m->hf = calloc(1, sizeof *m->hf);
    if (!m->hf) return SA_ERR_NOMEM;

    /* config.json */
    char cpath[4096], *ctext;
    size_t clen;
    if ((rc = join(cpath, sizeof cpath, dir, "config.json", msg, msg_len))) return rc;
    if ((rc = read_file(cpath, &ctext, &clen, msg, msg_len))) return rc;
    struct model_hparams *hp = &m->hp;
    bool tied = false;
    int32_t bos = -1, eos = -1;
    const char *base = strrchr(dir, '/');
    snprintf(m->name, sizeof m->name, "%.*s", (int)sizeof m->name - 1, base && base[1] ? base + 1 : dir);
    rc = parse_config(ctext, clen, hp, &tied, &bos, &eos, m->name, sizeof m->name, msg, msg_len);
    free(ctext);
    if (rc) return rc;

    /* model.safetensors */
    if (stat(file, &sb) != 0) {
        char idx[4096];
        if (join(idx, sizeof idx, dir, "model.safetensors.index.json", msg, msg_len) == 0 && stat(idx, &sb) == 0)
            return sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len,
                           "%s: sharded checkpoints (model.safetensors.index.json) are not supported", dir);
    }
    if ((rc = safetensors_open_file(file, &m->hf->st, msg, msg_len))) {
        if (rc == SA_ERR_BAD_MODEL && msg && msg_len) { /* name the file before the field */
            char tmp[512];
            snprintf(tmp, sizeof tmp, "model.safetensors: %s", msg);
            snprintf(msg, msg_len, "%s", tmp);
        }
        return rc;
    }
    const struct safetensors *st = m->hf->st;
    const struct safetensors_tensor *emb = safetensors_find(st, "model.embed_tokens.weight");
    const struct safetensors_tensor *head = safetensors_find(st, "lm_head.weight");
    const char *emb_name = "model.embed_tokens.weight";
    if (!emb && head && tied) { /* torch dropped the alias: lm_head holds the shared matrix */
        emb = head;
        emb_name = "lm_head.weight";
    }
    if (!emb) return fail(msg, msg_len, "model.safetensors model.embed_tokens.weight: required tensor is missing");
    if (emb->n_dims != 2 || emb->shape[1] != hp->dim || emb->shape[0] < 1 || emb->shape[0] > (1u << 22))
        return fail(msg, msg_len, "model.safetensors %s: shape does not match hidden_size %u", emb_name, hp->dim);
    if (hp->n_vocab && hp->n_vocab != emb->shape[0])
        return fail(msg, msg_len, "config.json vocab_size: %u but %s has %llu rows", hp->n_vocab, emb_name,
                    (unsigned long long)emb->shape[0]);
    hp->n_vocab = (uint32_t)emb->shape[0];
    uint32_t dim = hp->dim, qdim = hp->n_head * hp->head_dim, kvdim = hp->n_head_kv * hp->head_dim;
    if ((rc = get_weight(m->hf, emb_name, dim, hp->n_vocab, 0, 0, &m->token_embd, msg, msg_len))) return rc;
    if (head && emb != head) {
        if ((rc = get_weight(m->hf, "lm_head.weight", dim, hp->n_vocab, 0, 0, &m->output, msg, msg_len))) return rc;
    } else if (head || tied) {
        m->output = m->token_embd;
        m->tied_output = true;
    } else {
        return fail(msg, msg_len, "model.safetensors lm_head.weight: required tensor is missing (tie_word_embeddings is false)");
    }
    m->norms = malloc(((size_t)hp->n_layer * 2 + 1) * dim * sizeof(float));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->norms || !m->layers) return SA_ERR_NOMEM;
    if ((rc = get_norm(st, "model.norm.weight", dim, m->norms, msg, msg_len))) return rc;
    m->output_norm = m->norms;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        struct model_layer *L = &m->layers[l];
        char name[128];
        float *an = m->norms + (size_t)(1 + 2 * l) * dim, *fn = an + dim;
#define W(field, suffix, nin, nout, heads)                                                         \
    snprintf(name, sizeof name, "model.layers.%u." suffix ".weight", l);                           \
    if ((rc = get_weight(m->hf, name, nin, nout, heads, hp->head_dim, &L->field, msg, msg_len))) \
        return rc;
        W(wq, "self_attn.q_proj", dim, qdim, hp->n_head)
        W(wk, "self_attn.k_proj", dim, kvdim, hp->n_head_kv)
        W(wv, "self_attn.v_proj", dim, kvdim, 0)
        W(wo, "self_attn.o_proj", qdim, dim, 0)
        W(w_gate, "mlp.gate_proj", dim, hp->ffn, 0)
        W(w_up, "mlp.up_proj", dim, hp->ffn, 0)
        W(w_down, "mlp.down_proj", hp->ffn, dim, 0)
#undef W
        snprintf(name, sizeof name, "model.layers.%u.input_layernorm.weight", l);
        if ((rc = get_norm(st, name, dim, an, msg, msg_len))) return rc;
        snprintf(name, sizeof name, "model.layers.%u.post_attention_layernorm.weight", l);
        if ((rc = get_norm(st, name, dim, fn, msg, msg_len))) return rc;
        L->attn_norm = an;
        L->ffn_norm = fn;
    }
    for (size_t i = 0; i < safetensors_n_tensors(st); i++) m->weight_bytes += safetensors_tensor(st, i)->n_bytes;
    if (opts && opts->no_tokenizer) return 0;
    return load_tokenizer(dir, m, bos, eos, msg, msg_len);
}
