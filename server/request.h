/*
 * request.h - OpenAI-style request bodies and query toggles -> a plain C
 * struct the server hands to the engine. Every rejection is a 400
 * invalid_request_error that names the offending parameter (RELIABILITY.md
 * C1-C8, B2, B4). Messages never contain bytes taken from the request.
 *
 * Threads: no global state; call from any one thread per api_request (the
 * server calls it on its loop thread).
 *
 * Accepted parameters. Any other top-level field is a 400 with code
 * unsupported_parameter naming it (nothing is silently ignored), except the
 * OpenAI fields that change nothing here: user, store, metadata,
 * service_tier. A known field with the wrong type or value is rejected. JSON
 * null for an optional field (known or not) means "not given".
 *
 *   field               type                 range / rule                      default
 *   prompt (compl.)     string               <= max_prompt_bytes; "" ok (BOS)  required
 *                       [string, ...]        1..max_n entries, each as above
 *                       [int, ...]           1..n_ctx ids, 0 <= id < n_vocab
 *                       [[int, ...], ...]    1..max_n arrays, each as above
 *   messages (chat)     [{role, content}]    >= 1; role system|user|assistant| required
 *                                            tool (|developer, stored as "system");
 *                                            content string or [{type:"text",
 *                                            text}] (concatenated); assistant
 *                                            content may be null (""); total
 *                                            content <= max_prompt_bytes
 *   model               string               <= 256 bytes (echoed, not checked) NULL
 *   max_tokens          int                  1..max_tokens_limit (more: 400)  compl. 16 (or the
 *   max_completion_tokens (chat alias; wins when both are given)              limit if lower);
 *                                                                              chat: max_tokens_limit
 *                                            the engine further clamps to the context left;
 *                                            completions: 0 with echo (the prompt alone, scored
 *                                            with logprobs; without echo 400 max_tokens)
 *   temperature         number               [0, 2] (< 1e-3 means greedy)       the configured one (1)
 *   top_p               number               (0, 1]                             1
 *   min_p               number               [0, 1]                             0
 *   top_k               int                  >= 0, clamped to n_vocab; 0 = off  0
 *   presence_penalty    number               [-2, 2]                            0
 *   frequency_penalty   number               [-2, 2]                            0
 *   repeat_penalty      number               (0, 10]                            1
 *   seed                int                  0 .. 2^63-1                        unset (server picks)
 *   stop                string | [string]    <= 16 strings, each 1..256 bytes   none
 *   stream              bool                                                    false
 *   stream_options      {include_usage: bool}                                   false
 *   echo (compl.)       bool                                                    false
 *   logprobs (compl.)   int                  0 .. min(max_logprobs, 20)         -1 (off)
 *   logprobs (chat)     bool                                                    false
 *   top_logprobs (chat) int                  0 .. min(max_logprobs, 20); needs logprobs=true
 *   n                   int                  1..max_n, and n * n_prompts <= max_n   1
 *   user                string               <= 256 bytes                       NULL
 *   share_spans         string               "auto", "off", or "a-b,c-d" (digits, '-',
 *                                            ',', spaces; <= 255 bytes); checked
 *                                            against the model by the engine    NULL (config)
 *   rebalance_alpha     number               [0, 10]                            unset (config)
 *   rebalance_tau       number               [0, 1]                             unset (config)
 *   logit_bias          {"<id>": number}     <= 1024 ids, 0 <= id < n_vocab,    none
 *                                            bias in [-100, 100] (OpenAI)
 *   ignore_eos          bool                 end-of-generation never sampled    false
 *   min_tokens          int                  0..max_tokens: no end-of-generation
 *                                            before that many tokens            0
 *   stop_token_ids      [int]                <= 16 ids in [0, n_vocab): end like
 *                                            EOS (not in the text)              none
 *   tools (chat)        [{type:"function",   <= 128; name [A-Za-z0-9_-]{1,64},  none
 *                        function:{name,      unique; description a string;
 *                        description?,        parameters a JSON schema object in
 *                        parameters?,         schema.h's subset (else 400
 *                        strict?}}]           unsupported_schema), type "object"
 *                                            when given; strict a bool (the
 *                                            constrained output always fits)
 *   tool_choice (chat)  "none" | "auto" | "required" |                       "auto" with tools,
 *                       {type:"function", function:{name}} (a tool given)     "none" without
 *                                            ("required" / a name need tools)
 *   parallel_tool_calls bool (chat)          required: up to 4 calls, else 1    true
 *   Tools with tool_choice "required" or a name cannot be combined with
 *   grammar or response_format (the calls are the grammar).
 *
 * Messages with tools: role "tool" needs tool_call_id (a string naming a call
 * of an earlier assistant message) and content (string or text parts); an
 * assistant message may carry tool_calls [{id, type:"function",
 * function:{name, arguments}}] (1..128, and <= 1024 in all the messages;
 * arguments a string holding a JSON object; ids unique in the conversation),
 * its content then may be null.
 *
 * Embeddings (POST /v1/embeddings, kind REQUEST_EMBEDDING) take input (as a
 * completion's prompt: a string, strings, token ids, arrays of them; <= max_n
 * inputs), model, user, encoding_format "float" | "base64", and the extension
 * pooling "mean" | "last"; any other field (e.g. dimensions) is unsupported.
 *
 * Integers are read as json_int_t (64-bit) and range-checked before being
 * narrowed; a JSON real where an integer is expected (2.0, 1.5) is rejected.
 * Range checks are written as !(lo <= x && x <= hi) so NaN can never pass
 * (jansson already refuses NaN/Infinity literals and overflowing reals).
 * Malformed JSON, duplicate keys, "\u0000", invalid UTF-8 and a non-object
 * body are rejected with param "body" (a duplicated known field is named
 * instead).
 */
#ifndef SA_REQUEST_H
#define SA_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REQUEST_MAX_STOP 16        /* = ENGINE_MAX_STOP */
#define REQUEST_MAX_STOP_LEN 256   /* bytes per stop string (= ENGINE_MAX_STOP_LEN) */
#define REQUEST_MAX_NAME_LEN 256   /* model, user */
#define REQUEST_MAX_SPANS_LEN 255  /* share_spans text */
#define REQUEST_MAX_GRAMMAR_LEN 65536 /* `grammar` GBNF text, and the GBNF a response_format becomes */
#define REQUEST_MAX_LOGPROBS 20    /* = SAMPLER_MAX_LOGPROBS: max_logprobs is capped to this */
#define REQUEST_DEFAULT_MAX_TOKENS 16 /* completions, as OpenAI */
#define REQUEST_MAX_LOGIT_BIAS 1024  /* = SAMPLER_MAX_BIAS */
#define REQUEST_MAX_STOP_IDS 16      /* = ENGINE_MAX_STOP_IDS */
#define REQUEST_MAX_TOOLS 128        /* tools offered (OpenAI's limit) */
#define REQUEST_MAX_TOOL_NAME 64     /* bytes of a tool name (OpenAI's limit) */
#define REQUEST_MAX_TOOL_CALLS 128   /* tool calls of one assistant message */
#define REQUEST_MAX_CONV_TOOL_CALLS 1024 /* tool calls of all the messages (ids are checked pairwise) */

struct api_logit_bias {
    int32_t id;
    float bias;
};

/* Limits from the configuration and the loaded model. All are expected > 0;
 * a zero limit rejects every value it bounds. */
struct request_limits {
    size_t max_prompt_bytes;   /* per text prompt / per chat conversation */
    uint32_t max_tokens_limit; /* hard cap on max_tokens */
    uint32_t max_n;            /* cap on n and on n * number of prompts */
    uint32_t max_logprobs;     /* cap on logprobs / top_logprobs (<= 20 used) */
    uint32_t n_vocab;          /* token ids must be < n_vocab */
    uint32_t n_ctx;            /* token-id prompts hold at most n_ctx ids */
    uint32_t max_stop;         /* cap on stop strings; 0 or > REQUEST_MAX_STOP = REQUEST_MAX_STOP */
    float default_temperature; /* temperature when the request gives none (the configured one) */
};

enum request_kind { REQUEST_COMPLETION = 1, REQUEST_CHAT, REQUEST_EMBEDDING };

/* A client-facing error. type and code point to static strings (code may be
 * NULL); param is "" when no parameter applies (rendered as null). */
struct api_error {
    int status;
    const char *type;
    const char *code;
    char param[64];
    char message[256];
};

/* A tool call of an assistant message (messages[i].tool_calls[k]). */
struct api_tool_call {
    char *id;        /* tool_calls[k].id, 1..REQUEST_MAX_NAME_LEN bytes */
    char *name;      /* function.name, a valid tool name (see tools below) */
    char *arguments; /* function.arguments re-serialised (one line, ", " / ": ") */
};

struct api_message {
    char *role;    /* "system", "user", "assistant" or "tool" */
    char *content; /* NUL-terminated UTF-8 ("" for an assistant's null content) */
    struct api_tool_call *tool_calls; /* [n_tool_calls], assistant only */
    size_t n_tool_calls;
    char *tool_call_id; /* tool messages: the call answered */
};

/* A tool offered to the model (tools[i], type "function"). */
struct api_tool {
    char *name;       /* [A-Za-z0-9_-]{1,64}, unique in the request */
    char *json;       /* the whole tool {"type":"function","function":{...}}, compact JSON */
    char *parameters; /* function.parameters (a JSON schema object), compact; NULL = none ({} arguments) */
};

enum api_tool_choice {
    TOOL_CHOICE_NONE = 0, /* tools rendered, output never parsed as calls */
    TOOL_CHOICE_AUTO,     /* the model may call: output parsed, unconstrained */
    TOOL_CHOICE_REQUIRED, /* at least one call: output constrained to calls */
    TOOL_CHOICE_NAMED,    /* exactly one call of tools[tool_choice_index] */
};

/* A parsed request. Owns every pointer in it; release with request_free(). */
struct api_request {
    enum request_kind kind;
    /* Completions: exactly one of prompts / prompt_ids is non-NULL and
     * n_prompts counts its entries (each is its own set of n choices).
     * Chat: both NULL and n_prompts == 0 (the messages are the prompt). */
    char **prompts;            /* [n_prompts] NUL-terminated UTF-8 (jansson-validated) */
    size_t n_prompts;
    int32_t **prompt_ids;      /* [n_prompts][prompt_id_lens[i]], each id in [0, n_vocab) */
    size_t *prompt_id_lens;    /* [n_prompts], each in [1, n_ctx] */
    /* chat */
    struct api_message *messages; /* [n_messages] */
    size_t n_messages;
    char *model;               /* optional, echoed back */
    uint32_t max_tokens;       /* see the table above for defaults */
    bool max_tokens_set;
    float temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty;
    int32_t top_k;             /* 0 = off, already clamped to n_vocab */
    uint64_t seed;
    bool seed_set;
    char *stop[REQUEST_MAX_STOP];
    size_t n_stop;
    bool stream, echo;
    int32_t logprobs;          /* -1 = not requested; else number of alternatives (chat: top_logprobs) */
    uint32_t n;
    /* saserve extensions */
    char *share_spans;         /* "auto", "off", "3-4,7-9" or NULL (configured default) */
    bool rebalance_alpha_set, rebalance_tau_set;
    float rebalance_alpha, rebalance_tau;
    int share_query, rebalance_query; /* -1 unset, 0 off, 1 on (?share= / ?rebalance=) */
    bool include_usage;        /* stream_options.include_usage */
    char *user;
    /* embeddings: input (parsed into prompts / prompt_ids as a completion's prompt), the pooling
     * ("mean" 0 / "last" 1, a saserve extension) and encoding_format ("float" / "base64") */
    int pooling;
    bool base64;
    /* token-level controls */
    struct api_logit_bias *logit_bias; /* [n_logit_bias] */
    size_t n_logit_bias;
    bool ignore_eos;
    uint32_t min_tokens;
    int32_t stop_token_ids[REQUEST_MAX_STOP_IDS];
    size_t n_stop_token_ids;
    /* structured output: GBNF text (engine/grammar.h) from `grammar` (llama.cpp's field) or
     * from `response_format` through server/schema.h; NULL = unconstrained (also for
     * {"type":"text"}). grammar_param names the field it came from, for later errors. */
    char *grammar;
    const char *grammar_param;
    /* function calling (chat): tools offered, the choice (default auto with
     * tools, none without), parallel_tool_calls (default true) */
    struct api_tool *tools; /* [n_tools] */
    size_t n_tools;
    enum api_tool_choice tool_choice;
    size_t tool_choice_index; /* TOOL_CHOICE_NAMED */
    bool parallel_tool_calls;
};

/* Empty request: defaults as the table above (kind = REQUEST_COMPLETION),
 * no pointers, share_query = rebalance_query = -1. */
void request_init(struct api_request *r);
/* Frees everything r owns and re-initialises it. Accepts a request that a
 * failed request_parse left partly filled. */
void request_free(struct api_request *r);

/* Parses body[0..len) as a request of the given kind into out, which must
 * have been request_init()ed (and may already hold query toggles: they are
 * kept). Returns 0, or SA_ERR_INVALID_ARG with err filled: status 400, type
 * "invalid_request_error", param named, message without request bytes (the
 * one exception: allocation failure, SA_ERR_NOMEM, gives 503 "server_error"
 * code "out_of_memory"). On error out may be partly filled: request_free() it
 * in both cases. Call once per api_request. */
int request_parse(enum request_kind kind, const char *body, size_t len, const struct request_limits *lim,
                  struct api_request *out, struct api_error *err);

/* Applies one URL query argument; the HTTP layer calls it for every argument
 * in order. Allow-list: "share" and "rebalance" (case-sensitive); the value
 * must be exactly "on" or "off" (value NULL means the key had no '=').
 * Unknown key, repeated key, empty or other value -> SA_ERR_INVALID_ARG with err 400; param
 * is the key when it is a short plain name ([A-Za-z0-9_.-], < 64 bytes),
 * else "query". */
int request_query_arg(struct api_request *r, const char *key, const char *value, struct api_error *err);

/* POST /tokenize {content, add_special, with_pieces} and POST /detokenize
 * {tokens} (llama-server's shapes). content: a string <= max_prompt_bytes
 * (required); add_special, with_pieces: bools (false); tokens: 1..n_ctx ids in
 * [0, n_vocab) (an empty array is allowed: ""). Other fields: 400
 * unsupported_parameter. Returns 0 or SA_ERR_* with err filled, as request_parse;
 * free with request_tokens_free. */
struct api_tokens_request {
    char *content;
    bool add_special, with_pieces;
    int32_t *tokens;
    size_t n_tokens;
};
int request_parse_tokenize(const char *body, size_t len, const struct request_limits *lim,
                           struct api_tokens_request *out, struct api_error *err);
int request_parse_detokenize(const char *body, size_t len, const struct request_limits *lim,
                             struct api_tokens_request *out, struct api_error *err);
void request_tokens_free(struct api_tokens_request *r);

/* Fills err as a 400 invalid_request_error naming param (NULL: none) with a
 * printf-style message. Used by request.c and by callers for request-level
 * rejections found later (e.g. an over-long prompt after tokenizing). */
void request_error(struct api_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
