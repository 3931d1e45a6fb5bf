/*
 * tokenizer.c - SPM and byte-level BPE tokenizers built from GGUF metadata.
 *
 * Behaviour follows llama.cpp (src/llama-vocab.cpp, src/unicode.cpp), which is
 * what the conformance vectors in shared/tokenizer-vectors were checked with:
 *
 *  - Special-token partition: the text is first cut at occurrences of special
 *    token texts, taking the specials longest first; each one splits every
 *    remaining plain-text fragment at its non-overlapping occurrences, left to
 *    right. USER_DEFINED tokens are always cut out (as llama.cpp and HF
 *    tokenizers do: deepseek-coder's "ü" and mpt's runs of spaces are such
 *    tokens and the vectors expect them); CONTROL and UNKNOWN tokens only when
 *    parse_special is set.
 *
 *  - SPM ("llama"): spaces become U+2581, U+2581 is prepended to a plain-text
 *    fragment that starts the text or follows a special token (when
 *    add_space_prefix), the fragment is split into UTF-8 characters, and the
 *    adjacent pair whose concatenation is a vocabulary piece with the highest
 *    score is merged (ties: leftmost) until no pair is a piece. Then every
 *    symbol is looked up again ("resegment"): merges only ever produce
 *    vocabulary pieces, so only single characters can miss, and those fall
 *    back to <0xXX> byte tokens.
 *
 *  - BPE ("gpt2"): the fragment is cut by a list of regexes chosen by
 *    tokenizer.ggml.pre, each regex cutting the pieces of the previous one
 *    (both the matches and the gaps between them become pieces, and each piece
 *    is a subject of its own, so lookaheads and $ stop at piece ends). Each
 *    piece is mapped byte -> GPT-2 code point and merged by rank (lowest
 *    first, ties leftmost). The regexes run in PCRE2 with UTF + UCP, so
 *    \p{L}, \p{N}, \p{P} and \s use PCRE2's Unicode tables;
 *    PCRE2_MATCH_INVALID_UTF lets invalid input bytes through (they never
 *    match, end up in gap pieces and are encoded byte-wise).
 *
 * Data structures: one blob with every token text (NUL-terminated), an
 * open-addressing hash from text to id (last duplicate wins, as in
 * llama.cpp's token_to_id map), an open-addressing hash from the id pair of a
 * merge to (rank, merged id), and per encode call a symbol array plus a binary
 * heap of candidate merges with lazy invalidation, so encoding is
 * O(n log n) in the text length.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "engine/tokenizer.h"

#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/gguf.h"
#include "engine/log.h"
#include "engine/unicode.h"

/* Longest text tok_encode accepts (bytes); keeps every index inside int32. */
#define TOK_MAX_TEXT ((size_t)1 << 28)
/* Most regexes one pre-tokenizer applies in sequence. */
#define TOK_MAX_REGEX 6

/* Special-id slots read from tokenizer.ggml.<name>_token_id. */
enum special_slot {
    SPECIAL_BOS, SPECIAL_EOS, SPECIAL_UNK, SPECIAL_SEP, SPECIAL_PAD, SPECIAL_MASK,
    SPECIAL_CLS, SPECIAL_EOT, SPECIAL_EOM, SPECIAL_PREFIX, SPECIAL_SUFFIX, SPECIAL_MIDDLE,
    SPECIAL_FIM_PRE, SPECIAL_FIM_SUF, SPECIAL_FIM_MID, SPECIAL_FIM_PAD, SPECIAL_FIM_REP,
    SPECIAL_FIM_SEP, SPECIAL_COUNT
};

static const char *const special_keys[SPECIAL_COUNT] = {
    "tokenizer.ggml.bos_token_id",      "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",  "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",  "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.cls_token_id",      "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",      "tokenizer.ggml.prefix_token_id",
    "tokenizer.ggml.suffix_token_id",   "tokenizer.ggml.middle_token_id",
    "tokenizer.ggml.fim_pre_token_id",  "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",  "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",  "tokenizer.ggml.fim_sep_token_id",
};

/* Token texts that end generation whatever the metadata says (llama.cpp
 * detects these by text too, because converters often omit eot_token_id). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};

struct tok_token {
    size_t off;    /* text at blob + off, NUL-terminated */
    uint32_t len;  /* text bytes, excluding the NUL */
    uint32_t hash; /* piece_hash() of the text */
    float score;   /* SPM merge priority (NaN in the file becomes -inf) */
    uint8_t type;  /* enum tok_type */
    uint8_t byte;  /* the byte value of a TOK_TYPE_BYTE token */
    bool eog;      /* ends generation */
};

struct merge_slot {
    uint64_t key;   /* (left id << 32) | right id; MERGE_EMPTY if unused */
    int32_t rank;   /* index in tokenizer.ggml.merges (first occurrence wins) */
    int32_t result; /* id of the concatenated piece, -1 if it is not a token */
};
#define MERGE_EMPTY UINT64_MAX

/* A pre-tokenizer: regexes applied in sequence, plus the defaults its
 * models expect. names is a space-separated list of tokenizer.ggml.pre values. */
struct pre_def {
    const char *names;
    const char *regex[TOK_MAX_REGEX];
    bool ignore_merges; /* a piece that is a whole token skips merging */
    bool add_bos;       /* default for tokenizer.ggml.add_bos_token */
};

struct tokenizer {
    enum tok_kind kind;
    int32_t n_vocab;
    char *blob;               /* all token texts */
    struct tok_token *tokens; /* [n_vocab] */
    int32_t *piece_slots;     /* text -> id hash table, -1 = empty */
    size_t piece_mask;
    struct merge_slot *merges; /* BPE only */
    size_t merge_mask;
    /* SPM: id of <0xXX> (or of the 1-byte piece) for byte b; BPE: id of the
     * piece spelling byte b in the GPT-2 map; -1 if the vocabulary lacks it. */
    int32_t byte_tok[256];
    int32_t *specials; /* CONTROL/UNKNOWN/USER_DEFINED ids, longest text first */
    size_t n_specials;
    int32_t special[SPECIAL_COUNT]; /* -1 = unset */
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    /* tok_create_vocab (tokenizer.json) only: */
    enum tok_prefix prefix_mode; /* SPM: where U+2581 is prepended */
    bool merges_by_rank;         /* SPM: merge by rank in the merge list, not by score */
    bool split_words;            /* SPM: never merge into a symbol that starts with U+2581 */
    bool fuse_unk;               /* SPM by rank: consecutive unknown characters give one <unk> */
    bool prefix_unless_space;    /* no U+2581 prefix for a fragment that starts with ' ' or U+2581 (Metaspace) */
    size_t max_text_len;
    pcre2_code *re[TOK_MAX_REGEX];
    size_t n_re;
};

/* ------------------------------------------------------------------------ */
/* Pre-tokenizer regexes (llama.cpp's llm_tokenizer_bpe, in PCRE2 syntax).   */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                              \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek LLM's letter class: the cased letters (Lu, Ll, Lt) of its
 * tokenizer.json, written as code points. */
#define RE_DEEPSEEK_LETTERS                                                                    \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"        \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"     \
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"              \
    "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"                   \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"            \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"            \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"            \
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"    \
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"   \
    "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"             \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"              \
    "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"   \
    "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"    \
    "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"             \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"            \
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"          \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"    \
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"
#define RE_DEEPSEEK_PUNCT \
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+"
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_PORO " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"

static const struct pre_def pre_defs[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral", {RE_LLAMA3}, true, true},
    {"dbrx smaug-bpe chatglm-bpe glm4", {RE_LLAMA3}, false, false},
    {"deepseek-llm",
     {"[\\r\\n]", RE_DEEPSEEK_LETTERS, RE_DEEPSEEK_PUNCT, "\\s+$", RE_CJK, "\\p{N}+"},
     false, false},
    {"deepseek-v3",
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?"
      "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, false},
    {"deepseek-coder", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}, false, false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, false, false},
    {"starcoder refact command-r smollm codeshell exaone minerva-7b", {"\\p{N}", RE_GPT2}, false,
     false},
    {"gpt-2 mpt olmo jais phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de exaone4 mellum",
     {RE_GPT2}, false, false},
    {"qwen2 deepseek-r1-qwen megrez stablelm2 kormo", {RE_QWEN2}, false, false},
    {"poro-chat bloom gpt3-finnish", {RE_PORO}, false, false},
    {"viking", {RE_PORO, "\\p{N}"}, false, false},
    {"tekken",
     {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
      "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true, true},
    {"chameleon",
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2},
     false, true},
};

/* ------------------------------------------------------------------------ */
/* Errors and small helpers                                                 */

static int fail(char *msg, size_t msg_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write a one-line message (if msg is given) and return code. */
static int fail(char *msg, size_t msg_len, int code, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Render file bytes for a message: printable ASCII as is, the rest as \xNN,
 * at most 32 input bytes. dst gets at least 4*32+4 bytes. */
#define SHOW_CAP 136
static const char *show(char dst[SHOW_CAP], const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < 32; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\') dst[k++] = (char)c;
        else k += (size_t)snprintf(dst + k, SHOW_CAP - k, "\\x%02X", c);
    }
    if (n > 32) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = 0;
    return dst;
}

static uint32_t piece_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static const char *tok_text(const struct tokenizer *t, int32_t id)
{
    return t->blob + t->tokens[id].off;
}

/* Id of the piece s[0..n), or -1. */
static int32_t piece_find(const struct tokenizer *t, const char *s, size_t n)
{
    uint32_t h = piece_hash(s, n);
    for (size_t i = h & t->piece_mask;; i = (i + 1) & t->piece_mask) {
        int32_t id = t->piece_slots[i];
        if (id < 0) return -1;
        const struct tok_token *tk = &t->tokens[id];
        if (tk->hash == h && tk->len == n && memcmp(tok_text(t, id), s, n) == 0) return id;
    }
}

/* Insert id; a later token with the same text replaces the earlier one. */
static void piece_insert(struct tokenizer *t, int32_t id)
{
    const struct tok_token *tk = &t->tokens[id];
    for (size_t i = tk->hash & t->piece_mask;; i = (i + 1) & t->piece_mask) {
        int32_t old = t->piece_slots[i];
        if (old < 0 || (t->tokens[old].hash == tk->hash && t->tokens[old].len == tk->len &&
                        memcmp(tok_text(t, old), tok_text(t, id), tk->len) == 0)) {
            t->piece_slots[i] = id;
            return;
        }
    }
}

static size_t merge_home(const struct tokenizer *t, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->merge_mask;
}

static const struct merge_slot *merge_find(const struct tokenizer *t, int32_t left, int32_t right)
{
    if (!t->merges) return NULL; /* an SPM vocabulary, or a tokenizer.json with no merge list */
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (size_t i = merge_home(t, key);; i = (i + 1) & t->merge_mask) {
        const struct merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == MERGE_EMPTY) return NULL;
    }
}

/* Strict byte-token parser: exactly "<0x" two uppercase hex digits ">". */
static int parse_byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *hi = s[3] ? strchr(hex, s[3]) : NULL;
    const char *lo = s[4] ? strchr(hex, s[4]) : NULL;
    if (!hi || !lo) return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* Check that key holds an array of want. Returns 0 (present, *n set),
 * 1 (absent and optional) or an error with msg naming the key. */
static int find_array(const struct gguf *g, const char *key, enum gguf_type want, bool required,
                      uint64_t *n, char *msg, size_t msg_len)
{
    int64_t idx = gguf_find_key(g, key);
    if (idx < 0) {
        if (!required) return 1;
        return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: missing", key);
    }
    enum gguf_type type = gguf_kv_type(g, (uint64_t)idx);
    if (type != GGUF_TYPE_ARRAY)
        return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected an array of %s, found %s", key,
                    gguf_type_name(want), gguf_type_name(type));
    enum gguf_type et = gguf_kv_arr_type(g, (uint64_t)idx);
    if (et != want)
        return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected an array of %s, found an array of %s",
                    key, gguf_type_name(want), gguf_type_name(et));
    *n = gguf_kv_arr_n(g, (uint64_t)idx);
    return 0;
}

/* Optional bool key: absent keeps *out; any other type is an error. */
static int get_opt_bool(const struct gguf *g, const char *key, bool *out, char *msg, size_t msg_len)
{
    int rc = gguf_get_bool(g, key, out);
    if (rc == SA_ERR_NOT_FOUND) return 0;
    if (rc) return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected a bool", key);
    return 0;
}

static int load_tokens(struct tokenizer *t, const struct gguf *g, char *msg, size_t msg_len)
{
    static const char key[] = "tokenizer.ggml.tokens";
    uint64_t n;
    int rc = find_array(g, key, GGUF_TYPE_STRING, true, &n, msg, msg_len);
    if (rc) return rc;
    if (n == 0 || n > (uint64_t)INT32_MAX - 1)
        return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %llu entries", key, (unsigned long long)n);
    t->n_vocab = (int32_t)n;
    t->tokens = calloc((size_t)n, sizeof *t->tokens);
    if (!t->tokens) return fail(msg, msg_len, SA_ERR_NOMEM, "%s: out of memory", key);

    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (gguf_get_arr_str(g, key, i, &s) != 0 || s.len > UINT32_MAX)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%llu]: unreadable", key,
                        (unsigned long long)i);
        t->tokens[i].off = total;
        t->tokens[i].len = (uint32_t)s.len;
        total += (size_t)s.len + 1; /* strings lie inside the file: no overflow */
    }
    t->blob = malloc(total);
    if (!t->blob) return fail(msg, msg_len, SA_ERR_NOMEM, "%s: out of memory", key);
    size_t n_invalid = 0, first_invalid = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_str s;
        gguf_get_arr_str(g, key, i, &s);
        struct tok_token *tk = &t->tokens[i];
        memcpy(t->blob + tk->off, s.data, tk->len);
        t->blob[tk->off + tk->len] = 0;
        tk->hash = piece_hash(s.data, tk->len);
        tk->type = TOK_TYPE_NORMAL;
        if (tk->len > t->max_text_len) t->max_text_len = tk->len;
        if (!utf8_valid((const unsigned char *)s.data, tk->len) && n_invalid++ == 0) first_invalid = i;
    }
    /* Not an error: decoding repairs such text, and real vocabularies ship
     * partial-character pieces. Logged so a broken export is noticed. */
    if (n_invalid)
        SA_LOGW("%s: %zu token(s) are not valid UTF-8 (first: %zu)", key, n_invalid, first_invalid);
    return 0;
}

static int load_scores_and_types(struct tokenizer *t, const struct gguf *g, char *msg, size_t msg_len)
{
    static const char skey[] = "tokenizer.ggml.scores";
    static const char tkey[] = "tokenizer.ggml.token_type";
    uint64_t n;
    const void *data;
    int rc = find_array(g, skey, GGUF_TYPE_FLOAT32, false, &n, msg, msg_len);
    if (rc < 0) return rc;
    if (rc == 0) {
        if (n != (uint64_t)t->n_vocab)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %llu entries, n_vocab %d", skey,
                        (unsigned long long)n, t->n_vocab);
        gguf_get_arr(g, skey, GGUF_TYPE_FLOAT32, &data, &n);
        for (int32_t i = 0; i < t->n_vocab; i++) {
            float s = gguf_arr_f32(data, (uint64_t)i);
            if (!isfinite(s))
                return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%d]: %g is not a finite number", skey, i, (double)s);
            t->tokens[i].score = s;
        }
    }
    rc = find_array(g, tkey, GGUF_TYPE_INT32, false, &n, msg, msg_len);
    if (rc < 0) return rc;
    if (rc == 0) {
        if (n != (uint64_t)t->n_vocab)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %llu entries, n_vocab %d", tkey,
                        (unsigned long long)n, t->n_vocab);
        gguf_get_arr(g, tkey, GGUF_TYPE_INT32, &data, &n);
        for (int32_t i = 0; i < t->n_vocab; i++) {
            int32_t ty = gguf_arr_i32(data, (uint64_t)i);
            if (ty < TOK_TYPE_UNDEFINED || ty > TOK_TYPE_BYTE)
                return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%d]: %d is not a token type (%d..%d)", tkey, i, ty,
                            TOK_TYPE_UNDEFINED, TOK_TYPE_BYTE);
            t->tokens[i].type = (uint8_t)ty;
        }
    }
    /* Byte tokens index a 256-entry table: parse them strictly (A5). */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        struct tok_token *tk = &t->tokens[i];
        if (tk->type != TOK_TYPE_BYTE) continue;
        int b = parse_byte_token(tok_text(t, i), tk->len);
        if (b < 0) {
            char buf[SHOW_CAP];
            return fail(msg, msg_len, SA_ERR_BAD_MODEL,
                        "tokenizer.ggml.tokens[%d]: byte token '%s' is not of the form <0xXX>", i,
                        show(buf, tok_text(t, i), tk->len));
        }
        tk->byte = (uint8_t)b;
    }
    return 0;
}

static int build_piece_map(struct tokenizer *t, char *msg, size_t msg_len)
{
    size_t slots = pow2_at_least((size_t)t->n_vocab * 2);
    t->piece_slots = malloc(slots * sizeof *t->piece_slots);
    if (!t->piece_slots) return fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->piece_slots, 0xFF, slots * sizeof *t->piece_slots); /* all -1 */
    t->piece_mask = slots - 1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->tokens[i].len > 0) piece_insert(t, i); /* an empty piece can never be matched */
    return 0;
}

/* Special ids: each present key must name a token or be the "unset" value
 * (-1 / 0xFFFFFFFF). Absent keys keep the model-type defaults. */
static int load_special_ids(struct tokenizer *t, const struct gguf *g, char *msg, size_t msg_len)
{
    for (int s = 0; s < SPECIAL_COUNT; s++) t->special[s] = -1;
    if (t->kind == TOK_KIND_SPM) { /* llama.cpp's SPM defaults */
        t->special[SPECIAL_UNK] = 0;
        t->special[SPECIAL_BOS] = t->n_vocab > 1 ? 1 : -1;
        t->special[SPECIAL_EOS] = t->n_vocab > 2 ? 2 : -1;
    }
    for (int s = 0; s < SPECIAL_COUNT; s++) {
        int64_t v;
        int rc = gguf_get_i64(g, special_keys[s], &v);
        if (rc == SA_ERR_NOT_FOUND) continue;
        if (rc == SA_ERR_TYPE)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected an integer", special_keys[s]);
        if (rc) return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: value out of range", special_keys[s]);
        if (v == -1 || v == (int64_t)UINT32_MAX) {
            t->special[s] = -1;
            continue;
        }
        if (v < 0)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %lld is negative", special_keys[s],
                        (long long)v);
        if (v >= t->n_vocab)
            return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %lld >= n_vocab %d", special_keys[s],
                        (long long)v, t->n_vocab);
        t->special[s] = (int32_t)v;
    }
    return 0;
}

static const struct pre_def *find_pre(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++) {
        const char *p = pre_defs[i].names;
        while (*p) {
            size_t w = strcspn(p, " ");
            if (w == n && memcmp(p, name, n) == 0) return &pre_defs[i];
            p += w;
            while (*p == ' ') p++;
        }
    }
    return NULL;
}

static int compile_regexes(struct tokenizer *t, const struct pre_def *pre, char *msg, size_t msg_len)
{
    const uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_MATCH_INVALID_UTF;
    for (size_t i = 0; i < TOK_MAX_REGEX && pre->regex[i]; i++) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pre->regex[i], PCRE2_ZERO_TERMINATED, opts, &err,
                                       &off, NULL);
        if (!re) {
            PCRE2_UCHAR ebuf[128];
            pcre2_get_error_message(err, ebuf, sizeof ebuf);
            return fail(msg, msg_len, SA_ERR_INTERNAL, "tokenizer.ggml.pre: regex %zu at %zu: %s", i,
                        (size_t)off, (const char *)ebuf);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
        t->re[t->n_re++] = re;
    }
    return 0;
}

static int load_pre(struct tokenizer *t, const struct gguf *g, char *msg, size_t msg_len)
{
    static const char key[] = "tokenizer.ggml.pre";
    struct gguf_str s = {"default", 7};
    int rc = gguf_get_str(g, key, &s);
    if (rc == SA_ERR_TYPE) return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected a string", key);
    const struct pre_def *pre = find_pre(s.data, (size_t)s.len);
    if (!pre) {
        char buf[SHOW_CAP];
        return fail(msg, msg_len, SA_ERR_UNSUPPORTED, "%s: unsupported pre-tokenizer '%s'", key,
                    show(buf, s.data, (size_t)s.len));
    }
    t->ignore_merges = pre->ignore_merges;
    t->add_bos = pre->add_bos;
    return compile_regexes(t, pre, msg, msg_len);
}

/* Room for n merges in the (left, right) -> (rank, result) table. */
static int merge_table_alloc(struct tokenizer *t, size_t n)
{
    size_t slots = pow2_at_least(n * 2);
    t->merges = malloc(slots * sizeof *t->merges);
    if (!t->merges) return SA_ERR_NOMEM;
    for (size_t i = 0; i < slots; i++) t->merges[i].key = MERGE_EMPTY;
    t->merge_mask = slots - 1;
    return 0;
}

/* Add merge (l, r) with rank; cat is scratch of 2 * max_text_len bytes. A
 * duplicate keeps the first (lowest) rank. */
static void merge_insert(struct tokenizer *t, int32_t rank, int32_t l, int32_t r, char *cat)
{
    /* Both parts are tokens, so the concatenation fits the scratch. */
    uint32_t nl = t->tokens[l].len, nr = t->tokens[r].len;
    memcpy(cat, tok_text(t, l), nl);
    memcpy(cat + nl, tok_text(t, r), nr);
    uint64_t mkey = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (size_t j = merge_home(t, mkey);; j = (j + 1) & t->merge_mask) {
        struct merge_slot *m = &t->merges[j];
        if (m->key == mkey) return;
        if (m->key == MERGE_EMPTY) {
            m->key = mkey;
            m->rank = rank;
            m->result = piece_find(t, cat, (size_t)nl + nr);
            return;
        }
    }
}

static int load_merges(struct tokenizer *t, const struct gguf *g, char *msg, size_t msg_len)
{
    static const char key[] = "tokenizer.ggml.merges";
    uint64_t n;
    int rc = find_array(g, key, GGUF_TYPE_STRING, true, &n, msg, msg_len);
    if (rc) return rc;
    if (n > (uint64_t)INT32_MAX)
        return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: %llu entries", key, (unsigned long long)n);
    if (merge_table_alloc(t, (size_t)n)) return fail(msg, msg_len, SA_ERR_NOMEM, "%s: out of memory", key);

    char *cat = malloc(2 * (size_t)t->max_text_len + 1); /* concatenation scratch */
    if (!cat) return fail(msg, msg_len, SA_ERR_NOMEM, "%s: out of memory", key);
    char buf[SHOW_CAP];
    for (uint64_t i = 0; i < n; i++) {
        struct gguf_str s;
        if (gguf_get_arr_str(g, key, i, &s) != 0) {
            rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%llu]: unreadable", key, (unsigned long long)i);
            break;
        }
        /* "left right", split at the first space after the first byte (a
         * piece never starts with a space in a byte-level vocabulary). */
        const char *sp = s.len > 1 ? memchr(s.data + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) {
            rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%llu]: '%s' is not two pieces", key,
                      (unsigned long long)i, show(buf, s.data, (size_t)s.len));
            break;
        }
        size_t nl = (size_t)(sp - s.data), nr = (size_t)s.len - nl - 1;
        int32_t l = piece_find(t, s.data, nl), r = piece_find(t, sp + 1, nr);
        if (l < 0 || r < 0) {
            rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s[%llu]: unknown token '%s'", key,
                      (unsigned long long)i, l < 0 ? show(buf, s.data, nl) : show(buf, sp + 1, nr));
            break;
        }
        merge_insert(t, (int32_t)i, l, r, cat);
    }
    free(cat);
    return rc;
}

/* Tokens the partition step looks for in the text. */
static bool is_special(const struct tok_token *tk)
{
    return (tk->type == TOK_TYPE_CONTROL || tk->type == TOK_TYPE_UNKNOWN ||
            tk->type == TOK_TYPE_USER_DEFINED) &&
           tk->len > 0;
}

/* Longer text first, then lower id: a total order, so the partition does not
 * depend on the sort. Bottom-up merge sort (qsort has no context argument);
 * tmp holds n_specials ids. */
static void sort_specials(struct tokenizer *t, int32_t *tmp)
{
    size_t n = t->n_specials;
    int32_t *v = t->specials;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                uint32_t la = t->tokens[v[a]].len, lb = t->tokens[v[b]].len;
                bool take_a = la > lb || (la == lb && v[a] < v[b]);
                tmp[k++] = take_a ? v[a++] : v[b++];
            }
            while (a < mid) tmp[k++] = v[a++];
            while (b < hi) tmp[k++] = v[b++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
}

/* Byte fallback table, specials list and end-of-generation flags. */
static int build_tables(struct tokenizer *t, char *msg, size_t msg_len)
{
    for (int b = 0; b < 256; b++) {
        char piece[8];
        if (t->kind == TOK_KIND_SPM) {
            snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)b);
            int32_t id = piece_find(t, piece, 6);
            if (id < 0) { /* llama.cpp also tries the raw 1-byte piece */
                piece[0] = (char)b;
                id = piece_find(t, piece, 1);
            }
            t->byte_tok[b] = id;
        } else {
            unsigned char u[2];
            size_t n = bpe_byte_to_utf8((uint8_t)b, u);
            t->byte_tok[b] = piece_find(t, (const char *)u, n);
        }
    }

    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special(&t->tokens[i])) t->n_specials++;
    if (t->n_specials) {
        t->specials = malloc(t->n_specials * sizeof *t->specials);
        int32_t *tmp = malloc(t->n_specials * sizeof *tmp);
        if (!t->specials || !tmp) {
            free(tmp);
            return fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
        }
        size_t k = 0;
        for (int32_t i = 0; i < t->n_vocab; i++)
            if (is_special(&t->tokens[i])) t->specials[k++] = i;
        sort_specials(t, tmp);
        free(tmp);
    }

    static const int eog_slots[] = {SPECIAL_EOS, SPECIAL_EOT, SPECIAL_EOM, SPECIAL_FIM_PAD,
                                    SPECIAL_FIM_REP, SPECIAL_FIM_SEP};
    for (size_t i = 0; i < sizeof eog_slots / sizeof eog_slots[0]; i++)
        if (t->special[eog_slots[i]] >= 0) t->tokens[t->special[eog_slots[i]]].eog = true;
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int32_t id = piece_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0) t->tokens[id].eog = true;
    }
    return 0;
}

int tok_create(const struct gguf *g, struct tokenizer **out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!out) return fail(msg, msg_len, SA_ERR_INVALID_ARG, "tok_create: out is NULL");
    *out = NULL;
    if (!g) return fail(msg, msg_len, SA_ERR_INVALID_ARG, "tok_create: gguf is NULL");

    static const char mkey[] = "tokenizer.ggml.model";
    struct gguf_str model;
    int rc = gguf_get_str(g, mkey, &model);
    if (rc == SA_ERR_NOT_FOUND) return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: missing", mkey);
    if (rc) return fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s: expected a string", mkey);
    enum tok_kind kind;
    if (model.len == 5 && memcmp(model.data, "llama", 5) == 0) {
        kind = TOK_KIND_SPM;
    } else if (model.len == 4 && memcmp(model.data, "gpt2", 4) == 0) {
        kind = TOK_KIND_BPE;
    } else {
        char buf[SHOW_CAP];
        return fail(msg, msg_len, SA_ERR_UNSUPPORTED, "%s: unsupported tokenizer '%s'", mkey,
                    show(buf, model.data, (size_t)model.len));
    }

    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->add_bos = kind == TOK_KIND_SPM;
    t->add_space_prefix = kind == TOK_KIND_SPM;
    rc = load_tokens(t, g, msg, msg_len);
    if (!rc) rc = load_scores_and_types(t, g, msg, msg_len);
    if (!rc) rc = build_piece_map(t, msg, msg_len);
    if (!rc) rc = load_special_ids(t, g, msg, msg_len);
    if (!rc && kind == TOK_KIND_BPE) rc = load_pre(t, g, msg, msg_len);
    if (!rc && kind == TOK_KIND_BPE) rc = load_merges(t, g, msg, msg_len);
    if (!rc) rc = get_opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, msg, msg_len);
    if (!rc) rc = get_opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, msg, msg_len);
    if (!rc) rc = get_opt_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, msg, msg_len);
    if (!rc) rc = build_tables(t, msg, msg_len);
    if (rc) {
        tok_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tok_create_vocab(const struct tok_vocab *v, struct tokenizer **out, char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = 0;
    if (!out) return fail(msg, msg_len, SA_ERR_INVALID_ARG, "tok_create_vocab: out is NULL");
    *out = NULL;
    if (!v || v->n_vocab <= 0 || v->n_vocab > INT32_MAX - 1 || !v->texts || !v->lens || !v->types ||
        (v->n_merges && !v->merges) || (v->kind != TOK_KIND_SPM && v->kind != TOK_KIND_BPE) ||
        v->n_pre_regex > TOK_MAX_REGEX)
        return fail(msg, msg_len, SA_ERR_INVALID_ARG, "tok_create_vocab: invalid description");
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
    int rc = 0;
    t->kind = v->kind;
    t->n_vocab = v->n_vocab;
    t->add_bos = v->add_bos;
    t->add_eos = v->add_eos;
    t->add_space_prefix = v->kind == TOK_KIND_SPM && v->prefix_mode != TOK_PREFIX_NONE;
    t->prefix_mode = v->prefix_mode;
    t->merges_by_rank = v->kind == TOK_KIND_SPM;
    t->split_words = v->split_words;
    t->fuse_unk = v->fuse_unk;
    t->prefix_unless_space = v->prefix_unless_space;
    t->ignore_merges = v->ignore_merges;
    t->tokens = calloc((size_t)v->n_vocab, sizeof *t->tokens);
    size_t total = 0;
    for (int32_t i = 0; i < v->n_vocab; i++) total += (size_t)v->lens[i] + 1; /* the caller's strings exist */
    t->blob = malloc(total);
    if (!t->tokens || !t->blob) {
        rc = fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    size_t off = 0;
    for (int32_t i = 0; i < v->n_vocab; i++) {
        struct tok_token *tk = &t->tokens[i];
        tk->off = off;
        tk->len = v->lens[i];
        if (tk->len) memcpy(t->blob + off, v->texts[i], tk->len);
        t->blob[off + tk->len] = 0;
        off += (size_t)tk->len + 1;
        tk->hash = piece_hash(tok_text(t, i), tk->len);
        tk->type = v->types[i] <= TOK_TYPE_BYTE ? v->types[i] : TOK_TYPE_UNDEFINED;
        tk->score = 0.0f;
        if (tk->len > t->max_text_len) t->max_text_len = tk->len;
        if (tk->type == TOK_TYPE_BYTE) {
            int b = parse_byte_token(tok_text(t, i), tk->len);
            if (b < 0) {
                char buf[SHOW_CAP];
                rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "token %d: byte token '%s' is not of the form <0xXX>", i,
                          show(buf, tok_text(t, i), tk->len));
                goto done;
            }
            tk->byte = (uint8_t)b;
        }
    }
    if ((rc = build_piece_map(t, msg, msg_len))) goto done;
    for (int s = 0; s < SPECIAL_COUNT; s++) t->special[s] = -1;
    const int32_t ids[3] = {v->bos, v->eos, v->unk};
    const int slots[3] = {SPECIAL_BOS, SPECIAL_EOS, SPECIAL_UNK};
    for (int k = 0; k < 3; k++) {
        if (ids[k] >= v->n_vocab) {
            rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "%s token id %d >= n_vocab %d",
                      k == 0 ? "bos" : k == 1 ? "eos" : "unk", ids[k], v->n_vocab);
            goto done;
        }
        t->special[slots[k]] = ids[k] >= 0 ? ids[k] : -1;
    }
    if (v->kind == TOK_KIND_BPE || v->n_merges) {
        if (merge_table_alloc(t, v->n_merges)) {
            rc = fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
            goto done;
        }
        char *cat = malloc(2 * t->max_text_len + 1);
        if (!cat) {
            rc = fail(msg, msg_len, SA_ERR_NOMEM, "tokenizer: out of memory");
            goto done;
        }
        for (size_t i = 0; i < v->n_merges; i++) {
            int32_t l = v->merges[i][0], r = v->merges[i][1];
            if (l < 0 || r < 0 || l >= v->n_vocab || r >= v->n_vocab) {
                free(cat);
                rc = fail(msg, msg_len, SA_ERR_BAD_MODEL, "merges[%zu]: token id out of range", i);
                goto done;
            }
            merge_insert(t, (int32_t)i, l, r, cat);
        }
        free(cat);
    }
    if (v->kind == TOK_KIND_BPE) {
        static const char *const gpt2[1] = {RE_GPT2};
        struct pre_def pre = {.names = "tokenizer.json"};
        const char *const *re = v->n_pre_regex ? v->pre_regex : gpt2;
        size_t n_re = v->n_pre_regex ? v->n_pre_regex : 1;
        for (size_t i = 0; i < n_re; i++) pre.regex[i] = re[i];
        if ((rc = compile_regexes(t, &pre, msg, msg_len))) goto done;
    }
    rc = build_tables(t, msg, msg_len);
    if (!rc && !v->byte_fallback && v->kind == TOK_KIND_SPM)
        for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
done:
    if (rc) {
        tok_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tok_destroy(struct tokenizer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->specials);
    free(t->merges);
    free(t->piece_slots);
    free(t->blob);
    free(t->tokens);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Accessors                                                                */

enum tok_kind tok_kind(const struct tokenizer *t) { return t->kind; }
int32_t tok_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const struct tokenizer *t) { return t->special[SPECIAL_BOS]; }
int32_t tok_eos(const struct tokenizer *t) { return t->special[SPECIAL_EOS]; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos && t->special[SPECIAL_BOS] >= 0; }
size_t tok_max_piece_len(const struct tokenizer *t) { return t->max_text_len; }

bool tok_is_eog(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->tokens[id].eog;
}

const char *tok_piece(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? tok_text(t, id) : NULL;
}

enum tok_type tok_token_type(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? (enum tok_type)t->tokens[id].type : TOK_TYPE_UNDEFINED;
}

int32_t tok_find(const struct tokenizer *t, const char *piece)
{
    return piece ? piece_find(t, piece, strlen(piece)) : -1;
}

/* ------------------------------------------------------------------------ */
/* Encoding scratch (one per tok_encode call, so encoding is reentrant)     */

struct id_vec {
    int32_t *v;
    size_t n, cap;
};

struct frag {
    size_t off, len; /* plain text [off, off + len) when id < 0 */
    int32_t id;      /* a special token */
};

struct frag_vec {
    struct frag *v;
    size_t n, cap;
};

/* One symbol of the merge loop: a span of the (escaped or raw) text. */
struct sym {
    uint32_t start, len; /* len 0: merged into its left neighbour */
    int32_t prev, next;  /* neighbours in the live list, -1 at the ends */
    int32_t id;          /* token of the span, -1 if none */
};

/* A candidate merge of left and its right neighbour. */
struct bigram {
    double prio; /* higher first: SPM score, or -rank for BPE */
    int32_t left, right;
    uint32_t size; /* bytes of the merged span when pushed (staleness check) */
    int32_t id;    /* token of the merged span, -1 if none */
};

struct enc {
    const struct tokenizer *t;
    struct id_vec ids;
    struct frag_vec frags, frags2;
    struct frag_vec spans, spans2; /* BPE pre-tokenizer pieces (id unused) */
    struct sym *syms;
    size_t syms_cap;
    struct bigram *heap;
    size_t heap_n, heap_cap;
    unsigned char *buf; /* SPM escaped text, BPE mapped word */
    size_t buf_cap;
    pcre2_match_data *md;
    bool last_was_unk; /* the last id pushed is an <unk> for unknown characters (fuse_unk) */
};

/* Room for need elements of elem bytes in buffer p of capacity *cap: returns
 * the buffer (perhaps moved, *cap updated), or NULL with p untouched. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    if (nc > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, nc * elem);
    if (q) *cap = nc;
    return q;
}

static int push_id(struct enc *e, int32_t id)
{
    e->last_was_unk = false;
    int32_t *v = grow(e->ids.v, &e->ids.cap, e->ids.n + 1, sizeof *v);
    if (!v) return SA_ERR_NOMEM;
    e->ids.v = v;
    v[e->ids.n++] = id;
    return 0;
}

static int push_frag(struct frag_vec *fv, size_t off, size_t len, int32_t id)
{
    struct frag *v = grow(fv->v, &fv->cap, fv->n + 1, sizeof *v);
    if (!v) return SA_ERR_NOMEM;
    fv->v = v;
    v[fv->n++] = (struct frag){off, len, id};
    return 0;
}

static bool bigram_before(const struct bigram *a, const struct bigram *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(struct enc *e, struct bigram bg)
{
    struct bigram *h = grow(e->heap, &e->heap_cap, e->heap_n + 1, sizeof *h);
    if (!h) return SA_ERR_NOMEM;
    e->heap = h;
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&bg, &e->heap[parent])) break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = bg;
    return 0;
}

static struct bigram heap_pop(struct enc *e)
{
    struct bigram top = e->heap[0];
    struct bigram last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&e->heap[c + 1], &e->heap[c])) c++;
        if (!bigram_before(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* Split text[0..n) into one symbol per character (utf8_char_len), ids from
 * lookup of each character. */
static int make_syms(struct enc *e, const unsigned char *text, size_t n, bool bytewise)
{
    struct sym *syms = grow(e->syms, &e->syms_cap, n, sizeof *syms);
    if (!syms) return SA_ERR_NOMEM;
    e->syms = syms;
    const struct tokenizer *t = e->t;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = bytewise ? 1 : utf8_char_len(text + i, n - i);
        struct sym *s = &e->syms[k];
        s->start = (uint32_t)i;
        s->len = (uint32_t)len;
        s->prev = (int32_t)k - 1;
        s->next = i + len < n ? (int32_t)k + 1 : -1;
        s->id = bytewise ? t->byte_tok[text[i]] : piece_find(t, (const char *)text + i, len);
        k++;
        i += len;
    }
    return (int)k;
}

/* The merge loop shared by SPM and BPE. pair_fn decides whether two adjacent
 * symbols may merge and fills the bigram. */
typedef bool (*pair_fn)(const struct enc *e, const unsigned char *text, int32_t l, int32_t r,
                        struct bigram *bg);

static int try_pair(struct enc *e, const unsigned char *text, int32_t l, int32_t r, pair_fn fn)
{
    if (l < 0 || r < 0) return 0;
    struct bigram bg;
    if (!fn(e, text, l, r, &bg)) return 0;
    bg.left = l;
    bg.right = r;
    bg.size = e->syms[l].len + e->syms[r].len;
    return heap_push(e, bg);
}

static int merge_loop(struct enc *e, const unsigned char *text, int n_syms, pair_fn fn)
{
    int rc = 0;
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < n_syms && !rc; i++) rc = try_pair(e, text, i, i + 1, fn);
    while (!rc && e->heap_n) {
        struct bigram bg = heap_pop(e);
        struct sym *l = &e->syms[bg.left], *r = &e->syms[bg.right];
        /* Stale if either side merged since the push: a side that merged
         * away has len 0, one that absorbed a neighbour changed the size. */
        if (l->len == 0 || r->len == 0 || l->next != bg.right || l->len + r->len != bg.size) continue;
        l->len += r->len;
        l->id = bg.id;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = bg.left;
        rc = try_pair(e, text, l->prev, bg.left, fn);
        if (!rc) rc = try_pair(e, text, bg.left, l->next, fn);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* SPM                                                                       */

static bool spm_pair(const struct enc *e, const unsigned char *text, int32_t l, int32_t r,
                     struct bigram *bg)
{
    const struct sym *a = &e->syms[l], *b = &e->syms[r];
    const struct tokenizer *t = e->t;
    if (t->split_words && b->len >= 3 && text[b->start] == 0xE2 && text[b->start + 1] == 0x96 &&
        text[b->start + 2] == 0x81)
        return false; /* Metaspace split: U+2581 starts a new word */
    if (t->merges_by_rank) {
        if (a->id < 0 || b->id < 0) return false;
        const struct merge_slot *m = merge_find(t, a->id, b->id);
        if (!m || m->result < 0) return false;
        bg->prio = -(double)m->rank;
        bg->id = m->result;
        return true;
    }
    int32_t id = piece_find(t, (const char *)text + a->start, (size_t)a->len + b->len);
    if (id < 0) return false;
    bg->prio = t->tokens[id].score;
    bg->id = id;
    return true;
}

/* Byte fallback for one byte: <0xXX>, else the 1-byte piece, else <unk>. */
static int spm_push_byte(struct enc *e, unsigned char b)
{
    int32_t id = e->t->byte_tok[b];
    if (id < 0) id = e->t->special[SPECIAL_UNK];
    if (id < 0) return SA_ERR_TOKENIZER; /* the vocabulary cannot express this byte */
    return push_id(e, id);
}

static int spm_fragment(struct enc *e, const char *text, size_t n, bool prefix)
{
    static const unsigned char lower_one_eighth_block[3] = {0xE2, 0x96, 0x81}; /* U+2581 */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += text[i] == ' ';
    size_t m = n + 2 * spaces + (prefix ? 3 : 0);
    if (m == 0) return 0;
    unsigned char *w = grow(e->buf, &e->buf_cap, m, 1);
    if (!w) return SA_ERR_NOMEM;
    e->buf = w;
    size_t k = 0;
    if (prefix) {
        memcpy(w, lower_one_eighth_block, 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(w + k, lower_one_eighth_block, 3);
            k += 3;
        } else {
            w[k++] = (unsigned char)text[i];
        }
    }
    int n_syms = make_syms(e, w, m, false);
    if (n_syms < 0) return n_syms;
    int rc = merge_loop(e, w, n_syms, spm_pair);
    /* Resegment: a symbol that is a piece is emitted as is; merges only make
     * pieces, so the others are single characters: emit their bytes. */
    for (int32_t i = 0; i >= 0 && !rc; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        if (s->id >= 0) {
            rc = push_id(e, s->id);
            continue;
        }
        if (e->t->merges_by_rank) { /* HF BPE: all bytes as <0xXX>, else one <unk> (fused) */
            bool all = true;
            for (uint32_t j = 0; j < s->len; j++) all = all && e->t->byte_tok[w[s->start + j]] >= 0;
            if (!all) {
                int32_t unk = e->t->special[SPECIAL_UNK];
                if (unk < 0) return SA_ERR_TOKENIZER;
                bool fused = e->t->fuse_unk && e->ids.n && e->ids.v[e->ids.n - 1] == unk && e->last_was_unk;
                if (!fused) rc = push_id(e, unk);
                e->last_was_unk = true;
                continue;
            }
        }
        for (uint32_t j = 0; j < s->len && !rc; j++) rc = spm_push_byte(e, w[s->start + j]);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* BPE                                                                       */

static bool bpe_pair(const struct enc *e, const unsigned char *text, int32_t l, int32_t r,
                     struct bigram *bg)
{
    (void)text;
    int32_t a = e->syms[l].id, b = e->syms[r].id;
    if (a < 0 || b < 0) return false; /* merges only name tokens */
    const struct merge_slot *m = merge_find(e->t, a, b);
    if (!m) return false;
    bg->prio = -(double)m->rank;
    bg->id = m->result;
    return true;
}

/* Encode one pre-tokenized word w[0..n) (raw bytes). */
static int bpe_word(struct enc *e, const unsigned char *w, size_t n)
{
    const struct tokenizer *t = e->t;
    int rc;
    if (n == 0) return 0;
    if (t->ignore_merges) { /* a word that is a whole token is taken as is */
        unsigned char *mapped = grow(e->buf, &e->buf_cap, 2 * n, 1);
        if (!mapped) return SA_ERR_NOMEM;
        e->buf = mapped;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += bpe_byte_to_utf8(w[i], e->buf + k);
        int32_t id = piece_find(t, (const char *)e->buf, k);
        if (id >= 0) return push_id(e, id);
    }
    int n_syms = make_syms(e, w, n, true);
    if (n_syms < 0) return n_syms;
    rc = merge_loop(e, w, n_syms, bpe_pair);
    for (int32_t i = 0; i >= 0 && !rc; i = e->syms[i].next) {
        const struct sym *s = &e->syms[i];
        if (s->id >= 0) {
            rc = push_id(e, s->id);
            continue;
        }
        /* Not a token (a merge into a missing piece, or a byte the vocabulary
         * lacks): emit it byte by byte, <unk> for bytes without a token. */
        for (uint32_t j = 0; j < s->len && !rc; j++) {
            int32_t id = t->byte_tok[w[s->start + j]];
            if (id < 0) id = t->special[SPECIAL_UNK];
            if (id >= 0) rc = push_id(e, id);
        }
    }
    return rc;
}

/* Run one regex over every piece in `in`, writing matches and the gaps
 * between them to `out` (pieces in text order, none empty). */
static int regex_split(struct enc *e, const pcre2_code *re, const char *text, const struct frag_vec *in,
                       struct frag_vec *out)
{
    out->n = 0;
    for (size_t p = 0; p < in->n; p++) {
        const unsigned char *subj = (const unsigned char *)text + in->v[p].off;
        size_t n = in->v[p].len, pos = 0, gap = 0;
        uint32_t opts = 0;
        while (pos < n) {
            int m = pcre2_match(re, subj, n, pos, opts, e->md, NULL);
            if (m == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
                opts |= PCRE2_NO_JIT; /* the interpreter keeps its frames on the heap */
                continue;
            }
            if (m < 0) break; /* no match (or a resource limit): the rest is a gap */
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) { /* an empty match: step over one character */
                pos = ms + utf8_char_len(subj + ms, n - ms);
                continue;
            }
            if (ms > gap && push_frag(out, in->v[p].off + gap, ms - gap, -1)) return SA_ERR_NOMEM;
            if (push_frag(out, in->v[p].off + ms, me - ms, -1)) return SA_ERR_NOMEM;
            gap = pos = me;
        }
        if (n > gap && push_frag(out, in->v[p].off + gap, n - gap, -1)) return SA_ERR_NOMEM;
    }
    return 0;
}

static int bpe_fragment(struct enc *e, const char *text, size_t off, size_t n)
{
    const struct tokenizer *t = e->t;
    if (!e->md && !(e->md = pcre2_match_data_create(1, NULL))) return SA_ERR_NOMEM;
    e->spans.n = 0;
    if (push_frag(&e->spans, off, n, -1)) return SA_ERR_NOMEM;
    for (size_t i = 0; i < t->n_re; i++) {
        int rc = regex_split(e, t->re[i], text, &e->spans, &e->spans2);
        if (rc) return rc;
        struct frag_vec tmp = e->spans;
        e->spans = e->spans2;
        e->spans2 = tmp;
    }
    for (size_t i = 0; i < e->spans.n; i++) {
        int rc = bpe_word(e, (const unsigned char *)text + e->spans.v[i].off, e->spans.v[i].len);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Special-token partition                                                   */

/* First occurrence of needle[0..m) in hay[0..n), or NULL. */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0 || m > n) return NULL;
    const char *end = hay + n - m + 1;
    for (const char *p = hay; p < end;) {
        p = memchr(p, needle[0], (size_t)(end - p));
        if (!p) return NULL;
        if (memcmp(p, needle, m) == 0) return p;
        p++;
    }
    return NULL;
}

static int partition(struct enc *e, const char *text, size_t len, bool parse_special)
{
    const struct tokenizer *t = e->t;
    e->frags.n = 0;
    if (len == 0) return 0;
    if (push_frag(&e->frags, 0, len, -1)) return SA_ERR_NOMEM;
    if (!t->n_specials) return 0;

    /* Which bytes and byte pairs occur: a cheap test that skips most of a
     * vocabulary's specials without scanning the text for each. */
    static const size_t pair_bits = 65536;
    unsigned char *seen = calloc(pair_bits / 8 + 32, 1);
    if (!seen) return SA_ERR_NOMEM;
    unsigned char *byte_seen = seen + pair_bits / 8;
    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)text[i];
        byte_seen[c >> 3] |= (unsigned char)(1u << (c & 7));
        if (i + 1 < len) {
            unsigned pr = c << 8 | (unsigned char)text[i + 1];
            seen[pr >> 3] |= (unsigned char)(1u << (pr & 7));
        }
    }

    int rc = 0;
    for (size_t s = 0; s < t->n_specials && !rc; s++) {
        int32_t id = t->specials[s];
        const struct tok_token *tk = &t->tokens[id];
        if (!parse_special && tk->type != TOK_TYPE_USER_DEFINED) continue;
        if (tk->len > len) continue;
        const char *st = tok_text(t, id);
        unsigned c0 = (unsigned char)st[0];
        if (!(byte_seen[c0 >> 3] & (1u << (c0 & 7)))) continue;
        if (tk->len > 1) {
            unsigned pr = c0 << 8 | (unsigned char)st[1];
            if (!(seen[pr >> 3] & (1u << (pr & 7)))) continue;
        }
        e->frags2.n = 0;
        for (size_t f = 0; f < e->frags.n && !rc; f++) {
            struct frag fr = e->frags.v[f];
            if (fr.id >= 0) {
                rc = push_frag(&e->frags2, fr.off, fr.len, fr.id);
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            const char *hit;
            while (!rc && (hit = find_bytes(text + pos, end - pos, st, tk->len))) {
                size_t at = (size_t)(hit - text);
                if (at > pos) rc = push_frag(&e->frags2, pos, at - pos, -1);
                if (!rc) rc = push_frag(&e->frags2, at, tk->len, id);
                pos = at + tk->len;
            }
            if (!rc && pos < end) rc = push_frag(&e->frags2, pos, end - pos, -1);
        }
        struct frag_vec tmp = e->frags;
        e->frags = e->frags2;
        e->frags2 = tmp;
    }
    free(seen);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* tok_encode                                                                */

static int encode_all(struct enc *e, const char *text, size_t len, bool add_special, bool parse_special)
{
    const struct tokenizer *t = e->t;
    int rc = 0;
    int32_t bos = t->special[SPECIAL_BOS], eos = t->special[SPECIAL_EOS];
    if (add_special && t->add_bos && bos >= 0) rc = push_id(e, bos);
    if (!rc) rc = partition(e, text, len, parse_special);
    bool prev_special = true; /* SPM: the text start counts as after a special */
    for (size_t f = 0; f < e->frags.n && !rc; f++) {
        const struct frag *fr = &e->frags.v[f];
        bool prefix = t->add_space_prefix && prev_special;
        if (t->prefix_mode != TOK_PREFIX_EACH) prefix = t->add_space_prefix && fr->off == 0;
        if (prefix && t->prefix_unless_space && fr->id < 0 && fr->len &&
            (text[fr->off] == ' ' || (fr->len >= 3 && memcmp(text + fr->off, "\xE2\x96\x81", 3) == 0)))
            prefix = false; /* HF Metaspace: the piece already starts with the replacement */
        if (fr->id >= 0) {
            /* a Prepend normalizer puts U+2581 before a special at the start */
            if (prefix && t->kind == TOK_KIND_SPM && t->prefix_mode == TOK_PREFIX_TEXT) {
                int32_t sp = piece_find(t, "\xE2\x96\x81", 3);
                if (sp >= 0) rc = push_id(e, sp);
            }
            if (!rc) rc = push_id(e, fr->id);
            prev_special = true;
        } else if (t->kind == TOK_KIND_SPM) {
            rc = spm_fragment(e, text + fr->off, fr->len, prefix);
            prev_special = false;
        } else {
            rc = bpe_fragment(e, text, fr->off, fr->len);
        }
    }
    if (!rc && add_special && t->add_eos && eos >= 0) rc = push_id(e, eos);
    return rc;
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, size_t cap, size_t *n_out)
{
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len) || (!out && cap)) return SA_ERR_INVALID_ARG;
    if (len > TOK_MAX_TEXT) return SA_ERR_TOO_LARGE;
    struct enc e = {.t = t};
    int rc = encode_all(&e, text ? text : "", len, add_special, parse_special);
    if (!rc) {
        *n_out = e.ids.n;
        size_t k = e.ids.n < cap ? e.ids.n : cap;
        if (k) memcpy(out, e.ids.v, k * sizeof *out);
        if (e.ids.n > cap) rc = SA_ERR_RANGE;
    }
    pcre2_match_data_free(e.md);
    free(e.ids.v);
    free(e.frags.v);
    free(e.frags2.v);
    free(e.spans.v);
    free(e.spans2.v);
    free(e.syms);
    free(e.heap);
    free(e.buf);
    return rc;
}

int tok_encode_alloc(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **ids, size_t *n)
{
    *ids = NULL;
    size_t cap = len + 16; /* at most one token per byte, plus BOS/EOS and a leading-space marker */
    int rc = SA_ERR_RANGE;
    for (int pass = 0; pass < 2 && rc == SA_ERR_RANGE; pass++) {
        int32_t *out = malloc(cap * sizeof *out);
        if (!out) {
            rc = SA_ERR_NOMEM;
            break;
        }
        rc = tok_encode(t, text, len, add_special, parse_special, out, cap, n);
        if (rc == 0) {
            *ids = out;
            return 0;
        }
        free(out);
        cap = *n; /* SA_ERR_RANGE: the count the text needs, so the second pass fits */
    }
    *n = 0;
    return rc == SA_ERR_RANGE ? SA_ERR_INTERNAL : rc;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */

typedef void (*byte_sink_fn)(void *ctx, unsigned char b);

/* Feed the bytes token id renders to, one by one, to fn.
 *   NORMAL (and UNDEFINED/UNUSED): SPM turns U+2581 into ' '; BPE maps each
 *     GPT-2 code point back to its byte (other text passes through).
 *   BYTE: its byte. USER_DEFINED: its text.
 *   CONTROL/UNKNOWN: its text if render_special, else nothing. */
static void render_token(const struct tokenizer *t, int32_t id, bool render_special, byte_sink_fn fn,
                         void *ctx)
{
    if (id < 0 || id >= t->n_vocab) return;
    const struct tok_token *tk = &t->tokens[id];
    const unsigned char *s = (const unsigned char *)tok_text(t, id);
    size_t n = tk->len;
    switch (tk->type) {
    case TOK_TYPE_BYTE:
        fn(ctx, tk->byte);
        return;
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
        if (!render_special) return;
        /* fall through */
    case TOK_TYPE_USER_DEFINED:
        for (size_t i = 0; i < n; i++) fn(ctx, s[i]);
        return;
    default:
        break;
    }
    if (t->kind == TOK_KIND_SPM) {
        for (size_t i = 0; i < n; i++) {
            if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                fn(ctx, ' ');
                i += 2;
            } else {
                fn(ctx, s[i]);
            }
        }
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(s + i, n - i);
        int b = len ? bpe_cp_to_byte(utf8_decode(s + i, len)) : -1;
        if (b >= 0) {
            fn(ctx, (unsigned char)b);
        } else { /* not in the byte map: pass the raw bytes through */
            size_t k = len ? len : 1;
            for (size_t j = 0; j < k; j++) fn(ctx, s[i + j]);
        }
        i += len ? len : 1;
    }
}

struct bounded_buf {
    char *buf;
    size_t cap, n; /* n counts every byte, even those past cap */
};

static void bounded_put(void *ctx, unsigned char b)
{
    struct bounded_buf *bb = ctx;
    if (bb->n < bb->cap) bb->buf[bb->n] = (char)b;
    bb->n++;
}

size_t tok_token_to_bytes(const struct tokenizer *t, int32_t id, bool render_special, char *buf,
                          size_t cap)
{
    struct bounded_buf bb = {buf, buf ? cap : 0, 0};
    render_token(t, id, render_special, bounded_put, &bb);
    return bb.n;
}

/* Where the stream's repaired text goes: a fixed buffer (a push), cut before
 * the first character that does not fit, or a growing one (tok_decode). */
struct text_sink {
    char *buf;
    size_t cap, n;
    bool growable;
    bool stop; /* fixed buffer full, or out of memory */
};

static void sink_write(struct text_sink *k, const unsigned char *p, size_t n)
{
    if (k->stop || n == 0) return;
    if (k->n + n > k->cap) {
        if (!k->growable) {
            k->stop = true;
            return;
        }
        size_t nc = k->cap ? k->cap * 2 : 64;
        while (nc < k->n + n) nc *= 2;
        char *q = realloc(k->buf, nc);
        if (!q) {
            k->stop = true;
            return;
        }
        k->buf = q;
        k->cap = nc;
    }
    memcpy(k->buf + k->n, p, n);
    k->n += n;
}

struct stream_ctx {
    struct tok_stream *s;
    struct text_sink *sink;
};

/* One rendered byte through the leading-space rule and the UTF-8 repair. */
static void stream_byte(void *ctx, unsigned char b)
{
    struct stream_ctx *c = ctx;
    struct tok_stream *s = c->s;
    if (s->first) {
        s->first = false;
        const struct tokenizer *t = s->tok;
        if (s->skip_leading_space && b == ' ' && t->kind == TOK_KIND_SPM && t->add_space_prefix) return;
    }
    unsigned char out[UTF8_REPAIR_MAX_OUT];
    size_t k = utf8_repair_byte(s->carry, &s->n_carry, b, out);
    sink_write(c->sink, out, k);
}

static void stream_token(struct tok_stream *s, int32_t id, struct text_sink *sink)
{
    if (!s->tok) return; /* not initialised: nothing to render with */
    struct stream_ctx c = {s, sink};
    render_token(s->tok, id, false, stream_byte, &c);
}

static void stream_flush(struct tok_stream *s, struct text_sink *sink)
{
    unsigned char out[3];
    size_t k = utf8_repair_flush(s->carry, &s->n_carry, out);
    sink_write(sink, out, k);
}

void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_leading_space)
{
    memset(s, 0, sizeof *s);
    s->tok = t;
    s->first = true;
    s->skip_leading_space = skip_leading_space;
}

size_t tok_stream_push(struct tok_stream *s, int32_t id, char *out, size_t cap)
{
    struct text_sink k = {out, cap ? cap - 1 : 0, 0, false, false};
    stream_token(s, id, &k);
    if (cap) out[k.n] = 0;
    return k.n;
}

size_t tok_stream_flush(struct tok_stream *s, char *out, size_t cap)
{
    struct text_sink k = {out, cap ? cap - 1 : 0, 0, false, false};
    stream_flush(s, &k);
    if (cap) out[k.n] = 0;
    return k.n;
}

char *tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_leading_space)
{
    if (!t || (!ids && n)) return NULL;
    struct tok_stream s;
    tok_stream_init(&s, t, skip_leading_space);
    struct text_sink k = {NULL, 0, 0, true, false};
    for (size_t i = 0; i < n; i++) stream_token(&s, ids[i], &k);
    stream_flush(&s, &k);
    unsigned char nul = 0;
    sink_write(&k, &nul, 1);
    if (k.stop) {
        free(k.buf);
        return NULL;
    }
    return k.buf;
}
