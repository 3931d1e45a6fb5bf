/*
 * response.h - every byte saserve sends as a JSON body or an SSE event:
 * errors (through the ONE SA_ERR_* -> HTTP table), completions and chat
 * completions (whole and streamed), and /v1/models.
 *
 * Ownership: every char * returned is malloc'd and NUL-terminated; the
 * caller frees it. *len (when len is not NULL) receives strlen of the result.
 * NULL means out of memory only: any input text is accepted. Inputs are
 * borrowed for the duration of the call.
 * Threads: no shared state; any thread.
 *
 * Text (completion text, token strings, model names, messages) is UTF-8 by
 * contract, but invalid bytes never crash the writer (RELIABILITY.md B3):
 * a string jansson refuses is replaced by a copy in which every invalid
 * byte sequence becomes U+FFFD. Non-finite numbers are never emitted: a
 * logprob of -inf becomes -9999 (as OpenAI reports "impossible" tokens),
 * NaN becomes null. Reals are written with 9 significant digits.
 *
 * Several choices (n > 1 and/or several prompts): every choice object
 * carries its own "cache" and "timings" (and "usage" with its own prompt /
 * completion tokens); the top-level "cache" and "timings" aggregate them:
 *   cache:   shared_attention, spans, rebalance, layers, sharing_layers from
 *            the first choice (one request has one plan); tokens, k_bytes,
 *            v_bytes, kv_bytes, kv_bytes_without_sharing, kv_bytes_saved and
 *            attention_flops_saved summed; kv_saved_ratio recomputed as
 *            kv_bytes_saved / kv_bytes_without_sharing.
 *   timings: queued_ms, prompt_ms, generation_ms are the maximum over the
 *            choices (they run concurrently, so this is the request's wall
 *            time per phase); prompt_per_second = sum of choices' prompt
 *            tokens / max prompt_ms, generation_per_second likewise.
 * The top-level "usage" is the caller's (struct response_completion.usage):
 * OpenAI counts each prompt once however many choices it has.
 */
#ifndef SA_RESPONSE_H
#define SA_RESPONSE_H

#include "engine/engine.h"
#include "request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ----
 *
 * The one table (response.c, response_error_table):
 *   SA_ERR_INVALID_ARG   400 invalid_request_error invalid_value
 *   SA_ERR_RANGE         400 invalid_request_error invalid_value
 *   SA_ERR_TYPE          400 invalid_request_error invalid_type
 *   SA_ERR_TOKENIZER     400 invalid_request_error invalid_prompt
 *   SA_ERR_CONTEXT_FULL  400 invalid_request_error context_length_exceeded
 *   SA_ERR_NOT_FOUND     404 invalid_request_error not_found
 *   SA_ERR_TOO_LARGE     413 invalid_request_error request_too_large
 *   SA_ERR_BUSY          503 server_error          server_busy      (send Retry-After)
 *   SA_ERR_CANCELLED     503 server_error          cancelled        (shutdown / cancel;
 *                        a disconnected client never sees it)
 *   SA_ERR_NOMEM         503 server_error          out_of_memory
 *   SA_ERR_NUMERIC       500 server_error          numeric_error    (non-finite logits)
 *   SA_ERR_IO, BAD_MODEL, UNSUPPORTED, INTERNAL, OK, unknown codes
 *                        500 server_error          internal_error
 * HTTP-level errors (not from the engine), enum response_http_error:
 *   BAD_REQUEST 400 invalid_request_error invalid_request
 *   UNAUTHORIZED 401 authentication_error invalid_api_key
 *   NOT_FOUND 404 invalid_request_error unknown_url
 *   METHOD_NOT_ALLOWED 405 invalid_request_error method_not_allowed
 *   TIMEOUT 408 invalid_request_error request_timeout
 *   BODY_TOO_LARGE 413 invalid_request_error request_too_large
 *   RATE_LIMITED 429 rate_limit_error rate_limit_exceeded (over per_ip_connections)
 *   UNAVAILABLE 503 server_error server_unavailable (loading / draining)
 *   BUSY 503 server_error server_busy (over max_connections)
 *   BAD_FRAMING 400 invalid_request_error invalid_framing (Content-Length / Transfer-Encoding)
 *   URI_TOO_LONG 414 invalid_request_error uri_too_long
 *   HEADERS_TOO_LARGE 431 invalid_request_error headers_too_large
 *   NOT_IMPLEMENTED 501 invalid_request_error unsupported_transfer_encoding
 *   CLIENT_CLOSED 499 server_error client_closed (never delivered; bookkeeping)
 * Every error body saserve writes comes from this table: the HTTP layer's
 * (http.c) too, through response_error_http + response_error_json.
 */
enum response_http_error {
    RESPONSE_HTTP_BAD_REQUEST = 1,
    RESPONSE_HTTP_UNAUTHORIZED,
    RESPONSE_HTTP_NOT_FOUND,
    RESPONSE_HTTP_METHOD_NOT_ALLOWED,
    RESPONSE_HTTP_TIMEOUT,
    RESPONSE_HTTP_BODY_TOO_LARGE,
    RESPONSE_HTTP_RATE_LIMITED,
    RESPONSE_HTTP_UNAVAILABLE,
    RESPONSE_HTTP_BUSY,
    RESPONSE_HTTP_BAD_FRAMING,
    RESPONSE_HTTP_URI_TOO_LONG,
    RESPONSE_HTTP_HEADERS_TOO_LARGE,
    RESPONSE_HTTP_NOT_IMPLEMENTED,
    RESPONSE_HTTP_CLIENT_CLOSED,
};

/* Fill out from the table row of an SA_ERR_* code. param: NULL or "" for
 * none (copied, truncated to 63 bytes). message: NULL for the code's default
 * text (sa_err_str); copied, truncated at a character boundary to 255 bytes.
 * Never put client bytes in message. */
void response_error_from_code(int sa_err, const char *param, const char *message, struct api_error *out);
/* The same for HTTP-level errors; message NULL gives a default text. */
void response_error_http(enum response_http_error kind, const char *param, const char *message,
                         struct api_error *out);
/* {"error":{"message":...,"type":...,"param":... or null,"code":... or null}} */
char *response_error_json(const struct api_error *e, size_t *len);

/* ---- completions and chat completions ---- */

struct response_top_logprob {
    const char *token; /* token text (bytes, not necessarily a whole character) */
    size_t token_len;
    float logprob;
};

struct response_token_logprob {
    const char *token;
    size_t token_len;
    float logprob;
    uint32_t text_offset; /* completions: byte offset of the token in the choice text */
    size_t n_top;
    const struct response_top_logprob *top; /* [n_top], most likely first */
    bool no_logprob;      /* the first prompt token (echo): its logprob and top_logprobs are null */
};

/* A tool call in a chat answer: {id, type:"function", function:{name, arguments}}. */
struct response_tool_call {
    const char *id;        /* "call_..." */
    const char *name;
    const char *arguments; /* JSON text (sent as a string) */
};

struct response_choice {
    uint32_t index;
    const char *text; /* completion text (echoed prompt included by the caller) */
    size_t text_len;
    const char *finish_reason; /* "stop", "length", "cancelled"; NULL -> null */
    bool has_logprobs;         /* logprobs requested: emit the object even when empty */
    size_t n_logprobs;
    const struct response_token_logprob *logprobs; /* [n_logprobs] */
    uint32_t prompt_tokens, completion_tokens;     /* of this choice's sequence */
    uint32_t cached_tokens;                        /* prompt tokens from the prefix cache */
    struct engine_cache_stats cache;
    struct engine_timings timings;
    /* chat: tool calls parsed from the output; with n_tool_calls > 0, text is the
     * content before them and an empty content is written as null */
    size_t n_tool_calls;
    const struct response_tool_call *tool_calls;
};

struct response_usage {
    uint64_t prompt_tokens, completion_tokens; /* total_tokens = the sum */
    uint64_t cached_tokens; /* prompt_tokens_details.cached_tokens (OpenAI's name) */
};

struct response_completion {
    const char *id;    /* "cmpl-..." / "chatcmpl-..." (caller makes it) */
    int64_t created;   /* unix seconds */
    const char *model; /* NULL -> "" */
    size_t n_choices;
    const struct response_choice *choices; /* [n_choices] */
    struct response_usage usage;
};

/* "text_completion": choices[{index, text, finish_reason, logprobs (OpenAI
 * legacy shape: tokens[], token_logprobs[], top_logprobs[{token: logprob}],
 * text_offset[]; null when not requested; an entry with no_logprob has null
 * in token_logprobs and top_logprobs; two alternatives of the same text keep
 * the more likely one's value, so a map can hold fewer than n_top keys),
 * usage, cache, timings}], usage, cache, timings (see the top of this file). */
char *response_completion_json(const struct response_completion *c, size_t *len);
/* "chat.completion": choices[{index, message {role:"assistant", content, and
 * with tool calls content (null when empty) and tool_calls [{id, type:"function",
 * function:{name, arguments}}]},
 * finish_reason, logprobs {content:[{token, logprob, bytes, top_logprobs:
 * [{token, logprob, bytes}]}]} or null, usage, cache, timings}], usage,
 * cache, timings. */
char *response_chat_json(const struct response_completion *c, size_t *len);

/* The "cache" / "timings" objects alone, as DESIGN.md shows them. */
char *response_cache_json(const struct engine_cache_stats *s, size_t *len);
char *response_timings_json(const struct engine_timings *t, size_t *len);

/* ---- streaming ----
 *
 * One chunk = one choice's delta. Streaming order the server uses:
 *   chat: per choice a first chunk with role = true (delta {"role":"assistant",
 *         "content":""}), then content chunks;
 *   each choice ends with a chunk whose finish_reason is set and done != NULL:
 *         that choice object then carries "cache" and "timings" (and "usage")
 *         of the choice;
 *   then the request's summary: with stream_options.include_usage, a separate
 *         chunk with "choices": [] plus usage, cache, timings
 *         (response_*_usage_chunk_json), as OpenAI does; without it, the last
 *         finishing chunk is given summary != NULL and carries top-level
 *         usage, cache, timings itself (so clients that index choices[0]
 *         never meet an empty choices array);
 *   then response_sse_done(). Errors mid-stream: response_sse_error().
 */
struct response_chunk {
    const char *id;
    int64_t created;
    const char *model;
    uint32_t index;
    const char *text; /* delta text; may be empty */
    size_t text_len;
    bool role;        /* chat only: delta carries role "assistant" */
    bool has_logprobs;
    size_t n_logprobs;
    const struct response_token_logprob *logprobs; /* tokens of this delta */
    const char *finish_reason;                     /* NULL -> null */
    size_t n_tool_calls;                           /* chat: delta.tool_calls, each complete, */
    const struct response_tool_call *tool_calls;   /* with index 0.. (OpenAI's stream shape) */
    const struct response_choice *done;            /* choice finished: per-choice stats */
    const struct response_completion *summary;     /* last chunk: top-level usage/cache/timings */
};

/* "text_completion" chunk: choices[{index, text, finish_reason, logprobs}]. */
char *response_completion_chunk_json(const struct response_chunk *ch, size_t *len);
/* "chat.completion.chunk": choices[{index, delta {role?, content?,
 * tool_calls? [{index, id, type:"function", function:{name, arguments}}]},
 * finish_reason, logprobs}]. A finishing chunk with no text has delta {}. */
char *response_chat_chunk_json(const struct response_chunk *ch, size_t *len);
/* Summary chunk with "choices": [] and usage, cache, timings (object
 * "text_completion" / "chat.completion.chunk"). c->choices are read for the
 * aggregates. */
char *response_completion_usage_chunk_json(const struct response_completion *c, size_t *len);
char *response_chat_usage_chunk_json(const struct response_completion *c, size_t *len);

/* "data: " json "\n\n" (a newline inside json starts another "data: " line,
 * so the event is intact whatever json holds). */
char *response_sse_event(const char *json, size_t json_len, size_t *len);
/* "data: [DONE]\n\n" (static). */
const char *response_sse_done(void);
/* ": keep-alive\n\n" (static SSE comment, for heartbeats). */
const char *response_sse_keepalive(void);
/* "data: {\"error\":{...}}\n\n" */
char *response_sse_error(const struct api_error *e, size_t *len);

/* ---- /v1/models ---- */

struct response_model_info {
    const char *id;
    int64_t created;
    uint32_t layers, context_length;
    uint64_t n_params;
    bool share_default;
    const char *share_spans; /* resolved default plan, e.g. "3-4" or "off" */
    bool rebalance_default;
    const char *chat_template; /* the chat format in use: "llama2", "chatml", "llama3" */
};
/* {"object":"list","data":[MODEL]} for GET /v1/models, MODEL alone for GET
 * /v1/models/{id}: {id, object:"model", created, owned_by:"saserve", layers,
 * context_length, n_params, share_default, share_spans, rebalance_default,
 * chat_template} */
char *response_models_json(const struct response_model_info *m, size_t *len);
char *response_model_json(const struct response_model_info *m, size_t *len);

/* POST /tokenize: {"tokens": [id, ...]}, or with pieces (pieces not NULL)
 * {"tokens": [{"id": id, "piece": text}]}, a piece that is not valid UTF-8 (a
 * part of a character) given as its bytes [b, ...] (llama-server's shape). */
char *response_tokenize_json(const int32_t *ids, size_t n, char *const *pieces, size_t *len);
/* POST /v1/embeddings (OpenAI): {"object": "list", "data": [{"object": "embedding",
 * "index": i, "embedding": [n floats] or, with base64, the little-endian float32
 * bytes in base64}], "model", "usage": {"prompt_tokens", "total_tokens"}}. */
char *response_embeddings_json(const char *model, const float *const *vecs, size_t n_vecs, uint32_t dim, bool base64,
                               uint64_t prompt_tokens, size_t *len);

/* POST /detokenize: {"content": text} (invalid UTF-8 as U+FFFD). */
char *response_detokenize_json(const char *content, size_t n, size_t *len);

#endif
