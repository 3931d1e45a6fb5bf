/*
 * tokenizer_hf.c - a struct tokenizer from a Hugging Face tokenizer.json.
 *
 * Reads the JSON (jansson; used only for model file formats, see
 * safetensors.h) into a struct tok_vocab and hands it to tok_create_vocab, so
 * encoding and decoding are tokenizer.c's. What is supported, and how each
 * piece of the HF pipeline maps onto it, is in tokenizer.h
 * (tok_create_hf_json); the HF semantics followed are those of the
 * `tokenizers` crate: added tokens are cut out of the text first (longest
 * first), the BPE model merges symbol pairs by their rank in model.merges
 * (lowest first, leftmost on ties), and with byte_fallback a character that
 * is not in the vocabulary becomes its UTF-8 bytes as <0xXX> tokens.
 *
 * Known difference: merges that involve <0xXX> byte tokens are ignored.
 * Metaspace prepends U+2581 only to a piece that does not already start with
 * it (a space), as HF does; the Prepend normalizer always prepends.
 */
#include "tokenizer.h"

#include "errors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_MAX_VOCAB (1 << 21) /* ids above this are refused (the largest real vocabularies have ~256K) */

static const char spiece[] = "\xE2\x96\x81"; /* U+2581 */

struct hf_setup {
    bool prepend, replace;  /* normalizer: Prepend U+2581, Replace " " -> U+2581 */
    bool metaspace, byte_level;
    enum tok_prefix prefix;
    bool split_words;
    const char *regex[6];
    size_t n_regex;
};

static int unsupported(char *msg, size_t msg_len, const char *field, const char *what)
{
    return sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "tokenizer.json %s: %s is not supported", field, what);
}

static const char *type_of(const json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "(no type)";
}

static int one_normalizer(const json_t *n, struct hf_setup *h, char *msg, size_t msg_len)
{
    const char *ty = type_of(n);
    if (strcmp(ty, "Prepend") == 0) {
        const char *p = json_string_value(json_object_get(n, "prepend"));
        if (!p || strcmp(p, spiece) != 0) return unsupported(msg, msg_len, "normalizer", "Prepend of a string other than U+2581");
        h->prepend = true;
        return 0;
    }
    if (strcmp(ty, "Replace") == 0) {
        const char *pat = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
        const char *c = json_string_value(json_object_get(n, "content"));
        if (!pat || !c || strcmp(pat, " ") != 0 || strcmp(c, spiece) != 0)
            return unsupported(msg, msg_len, "normalizer", "Replace other than \" \" -> U+2581");
        h->replace = true;
        return 0;
    }
    return unsupported(msg, msg_len, "normalizer", ty);
}

static int parse_normalizer(const json_t *n, struct hf_setup *h, char *msg, size_t msg_len)
{
    if (!n || json_is_null(n)) return 0;
    if (!json_is_object(n)) return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json normalizer: not an object");
    if (strcmp(type_of(n), "Sequence") == 0) {
        const json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list))
            return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json normalizer.normalizers: not an array");
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = one_normalizer(json_array_get(list, i), h, msg, msg_len);
            if (rc) return rc;
        }
        return 0;
    }
    return one_normalizer(n, h, msg, msg_len);
}

static int one_pre(const json_t *p, struct hf_setup *h, bool in_sequence, char *msg, size_t msg_len)
{
    const char *ty = type_of(p);
    if (strcmp(ty, "Metaspace") == 0) {
        const char *r = json_string_value(json_object_get(p, "replacement"));
        if (r && strcmp(r, spiece) != 0) return unsupported(msg, msg_len, "pre_tokenizer.replacement", "a replacement other than U+2581");
        h->metaspace = true;
        const json_t *split = json_object_get(p, "split");
        h->split_words = !split || json_is_true(split);
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        const json_t *aps = json_object_get(p, "add_prefix_space");
        if (scheme) {
            if (strcmp(scheme, "always") == 0) h->prefix = TOK_PREFIX_EACH;
            else if (strcmp(scheme, "first") == 0) h->prefix = TOK_PREFIX_FIRST;
            else if (strcmp(scheme, "never") == 0) h->prefix = TOK_PREFIX_NONE;
            else return unsupported(msg, msg_len, "pre_tokenizer.prepend_scheme", scheme);
        } else {
            h->prefix = (!aps || json_is_true(aps)) ? TOK_PREFIX_EACH : TOK_PREFIX_NONE;
        }
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return unsupported(msg, msg_len, "pre_tokenizer.add_prefix_space", "true");
        const json_t *ur = json_object_get(p, "use_regex");
        bool use_regex = !ur || json_is_true(ur);
        if (use_regex && h->n_regex) return unsupported(msg, msg_len, "pre_tokenizer", "Split followed by ByteLevel with use_regex");
        h->byte_level = true;
        return 0;
    }
    if (strcmp(ty, "Split") == 0 && in_sequence) {
        const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        if (!re) return unsupported(msg, msg_len, "pre_tokenizer.pattern", "a Split without a Regex");
        if (!beh || strcmp(beh, "Isolated") != 0) return unsupported(msg, msg_len, "pre_tokenizer.behavior", beh ? beh : "(none)");
        if (json_is_true(json_object_get(p, "invert"))) return unsupported(msg, msg_len, "pre_tokenizer.invert", "true");
        if (h->n_regex >= sizeof h->regex / sizeof h->regex[0] || h->byte_level)
            return unsupported(msg, msg_len, "pre_tokenizer", "this Sequence");
        h->regex[h->n_regex++] = re;
        return 0;
    }
    return unsupported(msg, msg_len, "pre_tokenizer", ty);
}

static int parse_pre(const json_t *p, struct hf_setup *h, char *msg, size_t msg_len)
{
    if (!p || json_is_null(p)) return 0;
    if (!json_is_object(p)) return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json pre_tokenizer: not an object");
    if (strcmp(type_of(p), "Sequence") == 0) {
        const json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json pre_tokenizer.pretokenizers: not an array");
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = one_pre(json_array_get(list, i), h, true, msg, msg_len);
            if (rc) return rc;
        }
        return 0;
    }
    return one_pre(p, h, false, msg, msg_len);
}

/* add_bos / add_eos from a TemplateProcessing post-processor: does "single"
 * start (end) with a special token whose ids are [bos] ([eos])? */
static void post_processor_flags(const json_t *pp, int32_t bos, int32_t eos, int *add_bos, int *add_eos)
{
    const json_t *single = json_object_get(pp, "single");
    const json_t *specials = json_object_get(pp, "special_tokens");
    size_t n = json_array_size(single);
    int found_bos = 0, found_eos = 0;
    for (int end = 0; end < 2 && n; end++) {
        const json_t *item = json_object_get(json_array_get(single, end ? n - 1 : 0), "SpecialToken");
        const char *name = json_string_value(json_object_get(item, "id"));
        const json_t *ids = name ? json_object_get(json_object_get(specials, name), "ids") : NULL;
        if (json_array_size(ids) != 1) continue;
        json_int_t id = json_integer_value(json_array_get(ids, 0));
        if (!end && id == bos) found_bos = 1;
        if (end && id == eos) found_eos = 1;
    }
    if (*add_bos < 0) *add_bos = found_bos;
    if (*add_eos < 0) *add_eos = found_eos;
}

/* Id of a vocabulary piece s[0..n), or -1. */
static int32_t vocab_id(const json_t *vocab, const char *s, size_t n)
{
    const json_t *v = json_object_getn(vocab, s, n);
    return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

int tok_create_hf_json(const char *text, size_t len, int32_t bos, int32_t eos, int add_bos, int add_eos,
                       struct tokenizer **out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!out || (!text && len)) return SA_ERR_INVALID_ARG;
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json: invalid JSON at line %d: %.80s", jerr.line,
                       jerr.text);
    const char **texts = NULL;
    uint32_t *lens = NULL;
    uint8_t *types = NULL;
    int32_t(*merges)[2] = NULL;
    int rc = 0;
    struct hf_setup h = {.prefix = TOK_PREFIX_NONE};

    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model: missing or not an object");
        goto done;
    }
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0) {
        rc = unsupported(msg, msg_len, "model.type", mtype);
        goto done;
    }
    const json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0.0) {
        rc = unsupported(msg, msg_len, "model.dropout", "a dropout > 0");
        goto done;
    }
    const json_t *csp = json_object_get(model, "continuing_subword_prefix");
    const json_t *eows = json_object_get(model, "end_of_word_suffix");
    if ((csp && !json_is_null(csp) && json_string_length(csp)) || (eows && !json_is_null(eows) && json_string_length(eows))) {
        rc = unsupported(msg, msg_len, "model", "continuing_subword_prefix / end_of_word_suffix");
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) {
        rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.vocab: missing or not an object");
        goto done;
    }
    const json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) {
        rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json added_tokens: not an array");
        goto done;
    }

    /* n_vocab: one past the largest id of the vocabulary and added tokens */
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= HF_MAX_VOCAB) {
            rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.vocab: '%.60s' has no id in 0..%d", key,
                         HF_MAX_VOCAB - 1);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const json_t *idv = json_object_get(a, "id");
        json_int_t id = json_is_integer(idv) ? json_integer_value(idv) : -1;
        if (id < 0 || id >= HF_MAX_VOCAB || !json_is_string(json_object_get(a, "content"))) {
            rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json added_tokens[%zu]: needs an id in 0..%d and a content string",
                         i, HF_MAX_VOCAB - 1);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) {
        rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.vocab: empty");
        goto done;
    }
    int32_t n_vocab = (int32_t)max_id + 1;
    texts = calloc((size_t)n_vocab, sizeof *texts);
    lens = calloc((size_t)n_vocab, sizeof *lens);
    types = calloc((size_t)n_vocab, sizeof *types);
    if (!texts || !lens || !types) {
        rc = sa_errf(SA_ERR_NOMEM, msg, msg_len, "tokenizer.json: out of memory");
        goto done;
    }
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (texts[id]) {
            rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.vocab: id %d is used twice", id);
            goto done;
        }
        texts[id] = key;
        lens[id] = (uint32_t)strlen(key); /* jansson keys hold no NUL */
        types[id] = TOK_TYPE_NORMAL;
    }
    for (int32_t i = 0; i < n_vocab; i++)
        if (!texts[i]) types[i] = TOK_TYPE_UNUSED;
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const json_t *c = json_object_get(a, "content");
        texts[id] = json_string_value(c);
        lens[id] = (uint32_t)json_string_length(c);
        types[id] = json_is_true(json_object_get(a, "special")) ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }

    if ((rc = parse_normalizer(json_object_get(root, "normalizer"), &h, msg, msg_len))) goto done;
    if ((rc = parse_pre(json_object_get(root, "pre_tokenizer"), &h, msg, msg_len))) goto done;
    struct tok_vocab v = {.n_vocab = n_vocab, .texts = texts, .lens = lens, .types = types, .bos = bos, .eos = eos};
    if (h.byte_level) {
        if (h.prepend || h.replace || h.metaspace) {
            rc = unsupported(msg, msg_len, "pre_tokenizer", "ByteLevel mixed with SentencePiece-style U+2581 handling");
            goto done;
        }
        v.kind = TOK_KIND_BPE;
        v.pre_regex = h.n_regex ? h.regex : NULL;
        v.n_pre_regex = h.n_regex;
    } else if (h.metaspace || h.replace) {
        if (h.n_regex) {
            rc = unsupported(msg, msg_len, "pre_tokenizer", "Split without ByteLevel");
            goto done;
        }
        v.kind = TOK_KIND_SPM;
        v.prefix_mode = h.metaspace ? h.prefix : h.prepend ? TOK_PREFIX_TEXT : TOK_PREFIX_NONE;
        v.split_words = h.metaspace && h.split_words;
        v.prefix_unless_space = h.metaspace; /* Metaspace prepends only if not already there */
    } else {
        rc = unsupported(msg, msg_len, "normalizer/pre_tokenizer",
                         "a setup that is neither SentencePiece-style (Metaspace, Prepend+Replace) nor ByteLevel");
        goto done;
    }
    v.byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    v.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    v.fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    if (v.byte_fallback && v.kind == TOK_KIND_SPM) {
        for (int32_t i = 0; i < n_vocab; i++) {
            const char *s = texts[i];
            if (types[i] == TOK_TYPE_NORMAL && lens[i] == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
                strchr("0123456789ABCDEF", s[3]) && strchr("0123456789ABCDEF", s[4]))
                types[i] = TOK_TYPE_BYTE;
        }
    }
    v.unk = -1;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) {
        v.unk = vocab_id(vocab, unk, strlen(unk));
        if (v.unk < 0) {
            rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.unk_token: '%.60s' is not in the vocabulary", unk);
            goto done;
        }
        types[v.unk] = TOK_TYPE_UNKNOWN;
    }

    const json_t *ml = json_object_get(model, "merges");
    if (!json_is_array(ml)) {
        rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len, "tokenizer.json model.merges: missing or not an array");
        goto done;
    }
    size_t n_merges = json_array_size(ml);
    merges = malloc((n_merges ? n_merges : 1) * sizeof *merges);
    if (!merges) {
        rc = sa_errf(SA_ERR_NOMEM, msg, msg_len, "tokenizer.json: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_merges; i++) {
        const json_t *m = json_array_get(ml, i);
        int32_t l = -1, r = -1;
        if (json_is_string(m)) { /* "left right": exactly one space */
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = memchr(s, ' ', n);
            if (sp && !memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1)) {
                l = vocab_id(vocab, s, (size_t)(sp - s));
                r = vocab_id(vocab, sp + 1, n - (size_t)(sp - s) - 1);
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            const json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            l = vocab_id(vocab, json_string_value(a), json_string_length(a));
            r = vocab_id(vocab, json_string_value(b), json_string_length(b));
        }
        if (l < 0 || r < 0) {
            rc = sa_errf(SA_ERR_BAD_MODEL, msg, msg_len,
                         "tokenizer.json model.merges[%zu]: not two vocabulary pieces", i);
            goto done;
        }
        merges[i][0] = l;
        merges[i][1] = r;
    }
    v.merges = (const int32_t(*)[2])merges;
    v.n_merges = n_merges;
    const json_t *pp = json_object_get(root, "post_processor");
    if (strcmp(type_of(pp), "TemplateProcessing") == 0) post_processor_flags(pp, bos, eos, &add_bos, &add_eos);
    v.add_bos = add_bos > 0 && bos >= 0;
    v.add_eos = add_eos > 0 && eos >= 0;
    rc = tok_create_vocab(&v, out, msg, msg_len);
    if (rc == SA_ERR_BAD_MODEL && msg && msg_len) { /* say which file */
        char tmp[256];
        snprintf(tmp, sizeof tmp, "tokenizer.json: %s", msg);
        snprintf(msg, msg_len, "%s", tmp);
    }
done:
    free(merges);
    free(texts);
    free(lens);
    free(types);
    json_decref(root);
    return rc;
}
