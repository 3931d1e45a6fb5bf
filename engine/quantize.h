/*
 * quantize.h - write a quantised copy of a GGUF model (saserve quantize, as
 * llama.cpp's llama-quantize).
 *
 * Input: a GGUF whose tensors are F32, F16 or BF16 (anything else is
 * SA_ERR_UNSUPPORTED naming the tensor). Output: the same metadata (with
 * general.file_type and general.quantization_version = 2 set), the same
 * tensors in the same order, 2-D weights converted by quant_quantize_row to
 * the chosen type, 1-D tensors (norms) kept as they are. Schemes:
 *   a plain type name (Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS):
 *     every 2-D weight in that type (llama-quantize --pure);
 *   Q4_K_M / Q5_K_M: llama.cpp's mixtures: Q4_K (Q5_K) for most weights,
 *     Q6_K for output.weight, and for attn_v and ffn_down of the layers
 *     llama.cpp's use_more_bits picks (the first and last eighth of the
 *     layers and every third one between).
 * A 2-D weight whose row length is not a multiple of the type's block stays
 * in its input type. The output is written to OUT.tmp and renamed over OUT
 * at the end, so a failed run leaves no partial OUT.
 */
#ifndef SA_QUANTIZE_H
#define SA_QUANTIZE_H

#include "quant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse a scheme name; false if unknown. *base is the type of most weights,
 * *mixture true for the _M schemes. */
bool quantize_parse_scheme(const char *name, enum quant_type *base, bool *mixture);

/* The type a tensor gets (2-D weights only; see above). */
enum quant_type quantize_tensor_type(const char *name, enum quant_type base, bool mixture, uint32_t n_layer);

struct quantize_stats {
    uint64_t n_tensors, n_quantized;
    uint64_t bytes_in, bytes_out;
};

/* Quantise file in into file out. 0, or a negative SA_ERR_* with msg naming
 * the tensor, key or file. stats may be NULL. */
int quantize_file(const char *in, const char *out, const char *scheme, struct quantize_stats *stats, char *msg,
                  size_t msg_len);

#endif
