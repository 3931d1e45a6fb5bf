/*
 * hf.h - load a Hugging Face Llama checkpoint directory into struct model.
 *
 *   DIR/config.json          LlamaForCausalLM hyper-parameters
 *   DIR/model.safetensors    F32 / F16 / BF16 weights (safetensors.h validates it)
 *   DIR/tokenizer.json       the tokenizer (tokenizer_hf.c)
 *   DIR/tokenizer_config.json  optional: add_bos_token / add_eos_token, chat_template
 *
 * config.json: hidden_size, intermediate_size, num_hidden_layers and
 * num_attention_heads are required; num_key_value_heads (default
 * num_attention_heads), rms_norm_eps (1e-6), rope_theta (10000),
 * max_position_embeddings (2048), vocab_size (checked against the embedding),
 * tie_word_embeddings (false), bos_token_id / eos_token_id and head_dim (must
 * be hidden_size / num_attention_heads) are optional. rope_scaling other than
 * null, attention_bias / mlp_bias true, or hidden_act other than silu are
 * SA_ERR_UNSUPPORTED naming the key.
 *
 * Tensor names map onto struct model as
 *   model.embed_tokens.weight [vocab, dim]       -> token_embd
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight -> wq, wk, wv, wo
 *   model.layers.N.mlp.{gate,up,down}_proj.weight  -> w_gate, w_up, w_down
 *   model.layers.N.{input,post_attention}_layernorm.weight -> attn_norm, ffn_norm
 *   model.norm.weight -> output_norm;  lm_head.weight -> output
 * A tied head (tie_word_embeddings, or no lm_head.weight) aliases the
 * embedding; a file that stores only lm_head.weight (torch's shared-tensor
 * dedup, as the TinyStories-656K checkpoint does) uses it for both.
 *
 * HF's q_proj / k_proj rows are ordered for rotate-half RoPE; the engine
 * rotates adjacent pairs (ROPE_NORMAL, as llama.cpp's GGUF conversion). At
 * load the rows are permuted into owned memory: within each head of
 * head_dim rows, GGUF row 2i+j = HF row j*head_dim/2 + i (reshape
 * (n_head, 2, head_dim/2, in), swap axes 1 and 2). Other weights stay views
 * into the mmap unless their data is not aligned to the element size, in
 * which case they are copied. Norms are converted to F32. The file is
 * always mapped (model_load_opts.use_mmap = false has no effect here).
 */
#ifndef SA_HF_H
#define SA_HF_H

#include <stdbool.h>
#include <stddef.h>

struct model;
struct model_load_opts;
struct hf_storage;

/* true if path names a directory or a *.safetensors file (model_load's hook). */
bool hf_is_checkpoint(const char *path);

/* Fill m (zeroed by the caller) from the checkpoint at path: a directory, or
 * a model.safetensors whose directory holds config.json and tokenizer.json.
 * Errors: SA_ERR_BAD_MODEL / SA_ERR_UNSUPPORTED / SA_ERR_NOT_FOUND / SA_ERR_IO
 * / SA_ERR_NOMEM with msg naming the file and the field. On error m may hold
 * partial state that model_free releases. */
int hf_load(const char *path, const struct model_load_opts *opts, struct model *m, char *msg, size_t msg_len);

/* tokenizer_config.json's chat_template (NUL-terminated, owned by s), or
 * NULL (none, or s is NULL). */
const char *hf_chat_template(const struct hf_storage *s);

/* Free what hf_load owns (accepts NULL; model_free calls it). */
void hf_storage_free(struct hf_storage *s);

#endif
