/*
 * model.h - a Llama-architecture model: hyper-parameters from GGUF metadata
 * and per-layer weight views.
 *
 * Weights are views (struct model_weight) into the GGUF bytes: the read-only
 * mmap by default, or one malloc'd copy of the file with use_mmap = false.
 * In a copy, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K matrices other than the token embedding table (and
 * so a tied output head) are repacked in place at load into the row-interleaved
 * layout of repack.h (MODEL_LAYOUT_R16) where the active quant ISA (AVX2 or
 * AVX-512 VNNI) has its kernel (gemm_r16_supported): no extra memory, the
 * file's bytes rearranged. Mapped weights and SASERVE_QUANT_ISA=scalar keep the
 * plain layout.
 * A tied output head (no output.weight) is an alias of token_embd, not a
 * copy. A split model (llama-gguf-split: <prefix>-00001-of-0000M.gguf ...)
 * is loaded from its first shard: the other M-1 are opened next to it, their
 * split.count / split.no / split.tensors.count checked (a missing or
 * mismatched shard is SA_ERR_BAD_MODEL naming it), and tensors are looked up
 * in all shards; metadata comes from the first. Norm vectors are converted to F32 once at load (they are tiny).
 *
 * Every tensor's presence, type and shape is checked against the
 * hyper-parameters at load, and what is cheap to check for finiteness is: the
 * norm vectors (converted to F32) and every block scale of the quantised types; a mismatch is SA_ERR_BAD_MODEL with a message
 * naming the tensor or key. A loaded model is immutable and may be shared by
 * any number of threads.
 */
#ifndef SA_MODEL_H
#define SA_MODEL_H

#include "quant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;
struct tokenizer;
struct hf_storage;

enum rope_mode {
    ROPE_NORMAL = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): GGUF llama */
    ROPE_NEOX = 2,   /* rotate halves (x[i], x[i + n_rot/2]) */
};

struct model_hparams {
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t dim;       /* embedding length */
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;  /* dim / n_head */
    uint32_t n_rot;     /* rotary dimensions per head (<= head_dim) */
    uint32_t ffn;       /* feed-forward hidden size */
    float rms_eps;
    float rope_base;
    enum rope_mode rope;
};

/* A 2-D weight: n_out rows of n_in elements of `type`, row r at data + r*row_bytes
 * (layout MODEL_LAYOUT_PLAIN), or with every full group of 16 rows interleaved
 * in place (MODEL_LAYOUT_R16, repack.h: same bytes; the last n_out % 16 rows
 * plain). */
enum model_layout {
    MODEL_LAYOUT_PLAIN = 0,
    MODEL_LAYOUT_R16,
};

struct model_weight {
    enum quant_type type;
    uint32_t n_in;
    uint32_t n_out;
    size_t row_bytes;
    const void *data;
    enum model_layout layout;
};

struct model_layer {
    const float *attn_norm;     /* [dim] */
    struct model_weight wq;     /* [n_head*head_dim][dim] */
    struct model_weight wk;     /* [n_head_kv*head_dim][dim] */
    struct model_weight wv;     /* [n_head_kv*head_dim][dim] */
    struct model_weight wo;     /* [dim][n_head*head_dim] */
    const float *ffn_norm;      /* [dim] */
    struct model_weight w_gate; /* [ffn][dim] */
    struct model_weight w_up;   /* [ffn][dim] */
    struct model_weight w_down; /* [dim][ffn] */
};

struct model {
    struct model_hparams hp;
    struct model_weight token_embd; /* [n_vocab][dim] */
    const float *output_norm;       /* [dim] */
    struct model_weight output;     /* [n_vocab][dim]; alias of token_embd when tied */
    bool tied_output;
    struct model_layer *layers;     /* [n_layer] */
    struct tokenizer *tok;
    struct gguf *gguf;              /* the (first) file: metadata, tokenizer */
    struct gguf **shards;           /* [n_shards]; shards[0] == gguf */
    uint32_t n_shards;
    void **shard_copies;            /* use_mmap = false: shards 1.. read into memory ([0] unused) */
    char name[128];
    size_t weight_bytes;            /* bytes of all tensors in the file */
    /* owned storage */
    float *norms;                   /* all norm vectors, F32 */
    void *file_copy;                /* use_mmap = false: the whole file */
    size_t file_copy_len;
    struct hf_storage *hf;          /* a Hugging Face checkpoint (hf.h); gguf is NULL then */
};

#define MODEL_MAX_SHARDS 4096

struct model_load_opts {
    bool use_mmap;      /* map the file instead of reading it (slower decode here: README, Speed) */
    bool no_tokenizer;  /* skip tokenizer creation */
};

/* Load and validate. path is a GGUF file, or a Hugging Face checkpoint (a
 * directory or a *.safetensors file; hf.h), which then has no gguf. On error
 * *out is NULL and msg names the field. */
int model_load(const char *path, const struct model_load_opts *opts, struct model **out, char *msg,
               size_t msg_len);
void model_free(struct model *m); /* accepts NULL */

/* Every element of every tensor is a finite number (a full pass over the weights:
 * check-model --full; model_load checks only the cheap part: norms and block scales).
 * SA_ERR_BAD_MODEL with msg naming the tensor and element otherwise. */
int model_check_values(const struct model *m, char *msg, size_t msg_len);

/* Parameter count (unique tensors; a tied head counts once). */
uint64_t model_n_params(const struct model *m);

#endif
