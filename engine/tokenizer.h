/*
 * tokenizer.h - tokenizers built from GGUF metadata.
 *
 *   tokenizer.ggml.model = "llama"  SentencePiece-style BPE: pieces merged by
 *                                   score, spaces as U+2581, optional leading
 *                                   space, byte fallback to <0xXX> pieces.
 *   tokenizer.ggml.model = "gpt2"   byte-level BPE: pre-tokenizer regexes chosen
 *                                   by tokenizer.ggml.pre (gpt-2, llama3,
 *                                   deepseek-llm, deepseek-coder, falcon, mpt,
 *                                   qwen2, ...) run with PCRE2 (UTF + UCP), the
 *                                   GPT-2 byte<->unicode map, merges by rank.
 *
 * Special tokens in the text: USER_DEFINED token texts are always cut out
 * and emitted as their id (llama.cpp and HF tokenizers do the same, and the
 * conformance vectors rely on it: deepseek's "\u00fc", mpt's runs of spaces);
 * CONTROL and UNKNOWN token texts only when parse_special is set. Longer
 * special texts are matched first. add_bos follows
 * tokenizer.ggml.add_bos_token (default: true for llama and llama3-style
 * pre-tokenizers, false for gpt2); add_eos follows tokenizer.ggml.add_eos_token
 * (default false); the SPM leading space follows
 * tokenizer.ggml.add_space_prefix (default true for llama).
 *
 * Load-time validation (RELIABILITY.md A5): special ids must be < n_vocab or
 * the unset value (-1 / 0xFFFFFFFF); scores must be an F32 array and
 * token_type an INT32 array of n_vocab entries; BYTE tokens must read exactly
 * <0xXX> (uppercase hex); merges must name two known tokens; an unknown
 * tokenizer.ggml.pre is SA_ERR_UNSUPPORTED. A vocabulary without some byte
 * token loads; encoding text that needs it uses <unk> instead.
 *
 * Thread-safety: a struct tokenizer is immutable after creation and may be
 * used from any number of threads at once. A struct tok_stream (the streaming
 * detokenizer) belongs to one sequence and one thread at a time.
 */
#ifndef SA_TOKENIZER_H
#define SA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;
struct tokenizer;

enum tok_kind { TOK_KIND_SPM = 1, TOK_KIND_BPE = 2 };

/* Token attributes (GGUF tokenizer.ggml.token_type values). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* Build from a GGUF's metadata. The tokenizer copies what it needs; the gguf
 * may be closed afterwards. Errors: SA_ERR_BAD_MODEL / SA_ERR_UNSUPPORTED with
 * msg naming the key (e.g. "tokenizer.ggml.bos_token_id: 600 >= n_vocab 512"). */
int tok_create(const struct gguf *g, struct tokenizer **out, char *msg, size_t msg_len);
void tok_destroy(struct tokenizer *t); /* accepts NULL */
/* Where an SPM-style tokenizer prepends U+2581 ("add_space_prefix"). */
enum tok_prefix {
    TOK_PREFIX_EACH = 0, /* the text start and after each special token (GGUF llama, Metaspace "always") */
    TOK_PREFIX_FIRST,    /* only a fragment at the very start of the text (Metaspace "first") */
    TOK_PREFIX_TEXT,     /* the text start even when a special token is there (HF Prepend normalizer) */
    TOK_PREFIX_NONE,     /* never (Metaspace "never", or no normalizer) */
};

/* An explicit vocabulary, for formats other than GGUF (tokenizer_hf.c fills
 * it from a tokenizer.json). Everything is copied; the caller keeps its
 * arrays.
 *   TOK_KIND_SPM: spaces -> U+2581, the prefix per prefix_mode, UTF-8
 *     characters merged by the rank of (left id, right id) in merges (lowest
 *     first, ties leftmost: HF's BPE model), then characters that are not
 *     tokens fall back to <0xXX> (byte_fallback: only if every byte of the
 *     character has one) or one unk per character; fuse_unk makes a run of
 *     such characters one unk. split_words forbids a merge into a symbol
 *     starting with U+2581 (Metaspace split = true).
 *   TOK_KIND_BPE: byte-level (GPT-2 byte map), cut by pre_regex in sequence
 *     (none: the GPT-2 regex), merged by rank.
 * Types are enum tok_type values; TOK_TYPE_BYTE texts must read <0xXX>.
 * bos/eos/unk: ids or -1. */
struct tok_vocab {
    enum tok_kind kind;
    int32_t n_vocab;
    const char *const *texts; /* [n_vocab], lens[i] bytes each (no NUL needed) */
    const uint32_t *lens;     /* [n_vocab]; 0 for an unused id */
    const uint8_t *types;     /* [n_vocab] */
    const int32_t (*merges)[2]; /* [n_merges] (left id, right id), in rank order */
    size_t n_merges;
    int32_t bos, eos, unk;
    bool add_bos, add_eos;
    enum tok_prefix prefix_mode;
    bool split_words, byte_fallback, fuse_unk, ignore_merges;
    bool prefix_unless_space; /* SPM: no prefix when the fragment starts with ' ' or U+2581 */
    const char *const *pre_regex; /* BPE: [n_pre_regex] PCRE2 patterns, or NULL */
    size_t n_pre_regex;
};

/* Build from an explicit vocabulary. Errors: SA_ERR_BAD_MODEL with msg naming
 * the token or merge, SA_ERR_INVALID_ARG, SA_ERR_NOMEM. */
int tok_create_vocab(const struct tok_vocab *v, struct tokenizer **out, char *msg, size_t msg_len);

/* Build from the text of a Hugging Face tokenizer.json (tokenizer_hf.c).
 * Supported: model BPE with merges (strings "a b" or pairs), byte_fallback,
 * unk_token, added_tokens (special -> CONTROL, else USER_DEFINED);
 * SentencePiece style: normalizer Sequence[Prepend U+2581, Replace " " ->
 * U+2581] (either order) or a Metaspace pre-tokenizer; byte-level style:
 * ByteLevel pre-tokenizer (use_regex) or Sequence[Split(Regex, Isolated)...,
 * ByteLevel(use_regex false)]. bos/eos are ids from config.json (-1: none);
 * add_bos/add_eos from tokenizer_config.json or the post-processor. Anything
 * else is SA_ERR_UNSUPPORTED naming the field ("tokenizer.json normalizer:
 * NFKC is not supported"); malformed JSON is SA_ERR_BAD_MODEL. */
int tok_create_hf_json(const char *json, size_t len, int32_t bos, int32_t eos, int add_bos, int add_eos,
                       struct tokenizer **out, char *msg, size_t msg_len);


enum tok_kind tok_kind(const struct tokenizer *t);
int32_t tok_n_vocab(const struct tokenizer *t);
int32_t tok_bos(const struct tokenizer *t); /* -1 if none */
int32_t tok_eos(const struct tokenizer *t); /* -1 if none */
bool tok_add_bos(const struct tokenizer *t);
/* true for end-of-generation tokens (eos, eot, <|im_end|>, ...). */
bool tok_is_eog(const struct tokenizer *t, int32_t id);
/* Token text as stored in the vocab (NUL-terminated), NULL if out of range. */
const char *tok_piece(const struct tokenizer *t, int32_t id);
enum tok_type tok_token_type(const struct tokenizer *t, int32_t id);
/* Token id of an exact piece text, or -1. */
int32_t tok_find(const struct tokenizer *t, const char *piece);
/* Longest token text in bytes. A token renders to at most this many bytes, so
 * a tok_stream_push buffer of 3 * (tok_max_piece_len + 3) + 1 bytes is never
 * cut (worst case: every byte replaced by U+FFFD). */
size_t tok_max_piece_len(const struct tokenizer *t);

/* Encode len bytes of text. Writes at most cap ids to out and sets *n_out to
 * the number the text needs (so a caller can size out and retry). add_special
 * adds BOS (and EOS if the model asks for it); parse_special also recognises
 * control and unknown token texts inside the text (user-defined ones always
 * are, see above).
 * Returns 0, or SA_ERR_RANGE if cap was too small (out holds the first cap),
 * SA_ERR_NOMEM, SA_ERR_TOO_LARGE (len > 256 MiB), SA_ERR_TOKENIZER (SPM: a
 * byte the vocabulary has neither a byte token nor <unk> for). Invalid UTF-8
 * in the input is encoded byte-wise, never an error. Any thread. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, size_t cap, size_t *n_out);
/* The same into a malloc'd array sized to fit: 0 and *ids (caller frees), *n;
 * or the errors above but SA_ERR_RANGE, with *ids NULL and *n 0. */
int tok_encode_alloc(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **ids, size_t *n);

/* Bytes a single token renders to (after U+2581 -> space, <0xXX> -> byte,
 * byte-level unicode -> bytes). Control tokens render empty unless
 * render_special. Returns the byte count; writes at most cap bytes. */
size_t tok_token_to_bytes(const struct tokenizer *t, int32_t id, bool render_special, char *buf,
                          size_t cap);

/* Non-streaming decode of a whole sequence into a malloc'd NUL-terminated
 * string (caller frees). Invalid UTF-8 is replaced with U+FFFD.
 * skip_leading_space removes the space SPM adds before the first word: one
 * ' ' at the start of the first token that renders any text (SPM with
 * add_space_prefix only; ignored for BPE). Control tokens render empty.
 * Returns NULL on out of memory. Equal to tok_stream pushes + flush. */
char *tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool skip_leading_space);

/* Streaming detokenizer: feed ids one by one; it returns only complete UTF-8
 * sequences, holding back a split multi-byte character until its last byte
 * arrives. Concatenating every push and the final flush equals tok_decode()
 * of the same ids. */
struct tok_stream {
    const struct tokenizer *tok;
    bool first;          /* no text emitted yet (for the leading-space rule) */
    bool skip_leading_space;
    unsigned char carry[8]; /* bytes of an incomplete UTF-8 character */
    size_t n_carry;
};
void tok_stream_init(struct tok_stream *s, const struct tokenizer *t, bool skip_leading_space);
/* Append the text for id to out (cap bytes, NUL-terminated); returns bytes written
 * (excluding the NUL). cap >= 64 is always enough for one token's text plus
 * carry, except for very long pieces, which are cut at cap-1 (before the first
 * character that does not fit, so the output stays valid UTF-8; see
 * tok_max_piece_len for a size that is never cut). */
size_t tok_stream_push(struct tok_stream *s, int32_t id, char *out, size_t cap);
/* End of stream: an incomplete tail becomes U+FFFD. Returns bytes written. */
size_t tok_stream_flush(struct tok_stream *s, char *out, size_t cap);

#endif
