/*
 * engine.h - the inference engine's public API. No HTTP and no JSON here.
 * The server (server/) includes this header and, besides it, only the
 * headers that are public by design, each saying so: errors.h, log.h,
 * defaults.h, phidnn.h (the vision model), utf8.h and chat.h
 * (tests/scripts/test_layering.sh checks it). The headers included below
 * are public for their types (sampler_params, share_plan, rebalance_params,
 * the phiDNN modes).
 *
 * An engine owns one model, one step thread and one paged KV pool
 * (kvpool.h). Requests are submitted from any thread; they wait in a bounded
 * FIFO queue, bounded by requests and by queued prompt tokens (full:
 * SA_ERR_BUSY). The head of the queue is admitted when a
 * sequence slot is free AND the pool can reserve every page the request can
 * need (prompt + max_tokens, less the prefix pages it adopts from the prefix
 * cache, prefix.h); otherwise it waits (FIFO: nothing overtakes it), so an
 * admitted sequence never fails for lack of cache. Each step is ONE batched
 * forward pass (tf_step): a decode row for every sequence past its prompt,
 * plus prefill chunks of the sequences still reading their prompts, in
 * admission order, at most prefill_chunk prompt tokens per step, so a long
 * prompt delays the decoders by one chunk's worth of compute per step, never
 * more. Each sequence has its own Shared Attention plan (a sharing layer
 * takes no K pages), re-balancer setting and sampler.
 *
 * Threading: the step thread is thread 0 of the worker pool (workers.h); the
 * pool's helpers split each matrix product by output rows and each
 * attention by (sequence, head); OpenBLAS (sgemm from OPS_GEMM_MIN_TOKENS rows) is called
 * only from the step thread, between pool tasks, with as many threads as the
 * pool (set once, in engine_create), so the two never oversubscribe the cores.
 * Each slot's sequence is a struct tf_seq; the step's scratch is the engine's
 * one struct tf_ws (transformer.h).
 *
 * Events (tokens, completion, errors) are delivered by calling the request's
 * callback ON THE STEP THREAD (a request refused before admission, e.g. one
 * that can never fit in the pool, gets its ERROR there too), with one
 * exception: requests still queued when engine_destroy runs get their
 * DONE/cancelled on the thread calling engine_destroy, before it returns.
 * The callback must not block and must not call back into the engine except
 * engine_cancel. The server copies the event and wakes its own loop (see
 * server/api.c). After a DONE or ERROR event the
 * callback is never called again for that request, and the engine holds no
 * pointer to the request's user data.
 *
 * Cancellation (engine_cancel) is a flag the step thread checks at every step
 * boundary and between prefill chunks; the sequence's cache is released at
 * that boundary and a DONE event with finish reason "cancelled" follows.
 */
#ifndef SA_ENGINE_H
#define SA_ENGINE_H

#include "defaults.h"
#include "errors.h"
#include "phidnn.h"
#include "rebalance.h"
#include "sampler.h"
#include "share.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct engine_event;

struct engine_config {
    const char *model_path;
    int n_threads;           /* compute threads (>= 1) */
    uint32_t n_ctx;          /* tokens per sequence (prompt + generated); 0 = model's */
    uint32_t n_slots;        /* max sequences computed concurrently (the batch) */
    uint32_t kv_block;       /* tokens per KV page (0 = SA_DEFAULT_KV_BLOCK) */
    bool kv_f16;             /* store the KV cache as F16 (half the bytes per token) */
    uint64_t kv_budget;      /* bytes of the paged KV pool; 0 = n_slots full contexts without
                              * sharing. SA_ERR_RANGE if it cannot hold one such context */
    bool prefix_cache;       /* reuse cached prompt prefixes (same plan only) */
    bool debug_checks;       /* verify the pool's books after every step (tests) */
    uint32_t queue_max;      /* waiting requests before SA_ERR_BUSY */
    uint64_t queue_max_tokens; /* waiting prompt tokens before SA_ERR_BUSY (0 = no limit); a
                                * request always enters an empty queue */
    uint32_t prefill_chunk;  /* max prompt tokens per step, over all sequences */
    bool use_mmap;
    const char *share_spans; /* default plan: "auto", "off" or spans */
    bool share_default;      /* sharing on by default (requests may override) */
    float share_threshold;   /* for "auto" */
    struct rebalance_params rebalance; /* defaults; .on = default toggle */
    /* the optional phiDNN image classifier (phidnn.h; see engine_vision_submit) */
    const char *vision_model_path; /* NULL or "" = none */
    uint32_t vision_queue_max;     /* waiting vision jobs before SA_ERR_BUSY (0 = 16) */
    uint32_t vision_max_images;    /* images per vision job (0 = 64) */
};

/* Defaults (defaults.h): threads, slots, queue, prefill chunk, KV page size; model context,
 * prefix cache on, weights in memory, auto plan, sharing off. */
struct engine_config engine_default_config(void);

/* Loads the model (and computes the auto plan). On error msg names the field. */
int engine_create(const struct engine_config *cfg, struct engine **out, char *msg, size_t msg_len);
/* Cancels everything still running or queued (their callbacks get DONE/cancelled), joins the thread. */
void engine_destroy(struct engine *e);

struct engine_model_info {
    const char *name; /* n_embd of an embedding = dim */
    uint32_t n_layer, n_vocab, n_ctx, n_ctx_train, dim, n_head, n_head_kv;
    uint64_t n_params;
    const char *chat_template; /* tokenizer.chat_template or NULL */
    char default_spans[256];   /* resolved default plan ("off" if none) */
    bool share_default;
    struct rebalance_params rebalance_default;
    int32_t bos, eos;
};
const struct engine_model_info *engine_info(const struct engine *e);

/* ---- tokens and text (thread-safe) ---- */
/* Encode text; *ids is malloc'd (caller frees). */
int engine_tokenize(const struct engine *e, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t **ids, size_t *n);
/* One token's piece as the tokenizer decodes it alone (malloc'd, caller frees; may
 * be part of a UTF-8 character), or NULL for an id out of range / no memory. */
char *engine_token_piece(const struct engine *e, int32_t id);
/* Decode ids to a malloc'd string (caller frees); NULL on failure. */
char *engine_detokenize(const struct engine *e, const int32_t *ids, size_t n);
/* Resolve a plan text for this model ("auto" -> the engine's calibrated plan). */
int engine_parse_plan(const struct engine *e, const char *text, struct share_plan *plan, char *msg, size_t msg_len);

/* ---- requests ---- */

enum engine_finish {
    ENGINE_FINISH_NONE = 0,
    ENGINE_FINISH_STOP,      /* end-of-generation token or a stop string */
    ENGINE_FINISH_LENGTH,    /* max_tokens or the context is full */
    ENGINE_FINISH_CANCELLED, /* engine_cancel or engine shutdown */
};
const char *engine_finish_name(enum engine_finish f); /* "stop", "length", "cancelled" */

enum engine_event_type { ENGINE_EV_TOKEN = 1, ENGINE_EV_DONE, ENGINE_EV_ERROR, ENGINE_EV_PROMPT };

#define ENGINE_MAX_STOP 16
#define ENGINE_MAX_STOP_LEN 256
#define ENGINE_MAX_STOP_IDS 16
#define ENGINE_PROMPT_LOGPROB_ROWS 64 /* prompt positions whose logits are held at once (prompt_logprobs) */

enum engine_task {
    ENGINE_TASK_GENERATE = 0, /* prefill, then sample up to max_tokens */
    ENGINE_TASK_EMBED,        /* prefill only: the prompt's pooled, L2-normalised final hidden state;
                               * no tokens, no KV pages kept (nor taken from the prefix cache) */
    ENGINE_TASK_SCORE,        /* prefill only, nothing sampled (max_tokens ignored): with
                               * prompt_logprobs, the prompt's log-probabilities; DONE with finish
                               * "length" and 0 completion tokens; its KV blocks go to the prefix
                               * cache as a generation's do */
};
enum engine_pooling { ENGINE_POOLING_MEAN = 0, ENGINE_POOLING_LAST };
/* ---- structured output (grammar.h has the GBNF syntax and the matcher) ----
 * The server turns a `grammar` field, or a response_format through
 * server/schema.h, into GBNF text and compiles it here, on its own thread;
 * errors are SA_ERR_INVALID_ARG / SA_ERR_TOO_LARGE with msg naming the rule and
 * byte, or saying that this model's vocabulary cannot produce the grammar's
 * first character. The compiled grammar is immutable and reference counted:
 * engine_submit takes its own reference, so the caller may free its handle
 * right after submitting (or keep it for more requests). Any thread. */
struct grammar;
#define ENGINE_GRAMMAR_MAX_TEXT (256u * 1024u) /* bytes of grammar text; more: SA_ERR_TOO_LARGE */
int engine_grammar_compile(const struct engine *e, const char *text, size_t len, struct grammar **out, char *msg,
                           size_t msg_len);
void engine_grammar_free(struct grammar *g); /* accepts NULL */

struct engine_request {
    enum engine_task task;
    enum engine_pooling pooling; /* ENGINE_TASK_EMBED */
    const int32_t *prompt; /* copied at submit */
    size_t n_prompt;
    uint32_t max_tokens;   /* clamped to the context left after the prompt */
    struct sampler_params sampling;
    bool share;                     /* use `plan` */
    struct share_plan plan;
    struct rebalance_params rebalance;
    const char *stop[ENGINE_MAX_STOP]; /* copied at submit */
    size_t n_stop;
    /* token ids that end the generation like the end-of-generation token (not emitted);
     * copied at submit. The sampler's eog list is the engine's to fill (sampler.h). */
    int32_t stop_ids[ENGINE_MAX_STOP_IDS];
    size_t n_stop_ids;
    /* NULL, or output constrained to this grammar (engine_grammar_compile): each step
     * samples only among the tokens the grammar can accept next, end-of-generation
     * only where the grammar may end, and the sequence finishes with "stop" as soon
     * as the grammar is complete and nothing can follow. The text then matches the
     * grammar byte for byte (SPM's leading space is not dropped) unless a stop
     * string, max_tokens or the context ended it first (finish "stop"/"length"). */
    struct grammar *grammar;
    /* Score the prompt (GENERATE / SCORE): one PROMPT event per prompt token, in
     * order, before any TOKEN event: position 0 has no log-probability, position
     * i > 0 gets log p(prompt[i] | prompt[0..i)) and the sampling.n_logprobs most
     * likely tokens there, from the logits of position i-1 (log-softmax of the
     * raw logits, as sampler_logprobs: the numbers a sampled token gets). The
     * logits of each prefill chunk's rows are computed in blocks of
     * ENGINE_PROMPT_LOGPROB_ROWS rows and dropped (memory: that many rows of
     * n_vocab floats, allocated at the first such request, never the prompt's
     * whole n_prompt x n_vocab). Such a sequence takes nothing from the prefix
     * cache (cached positions have no logits; every position is computed, so
     * cached_tokens is 0 and the numbers equal a cold request's); its own
     * blocks still go to the cache when it ends. */
    bool prompt_logprobs;
    void (*cb)(void *user, const struct engine_event *ev);
    void *user;
};

struct engine_cache_stats {
    bool shared_attention, rebalance;
    uint32_t n_spans;                         /* the sequence's plan as data, sorted by first layer */
    struct share_span spans[SHARE_MAX_SPANS]; /* (0 spans: sharing nothing) */
    uint32_t layers, sharing_layers, tokens;
    uint64_t k_bytes, v_bytes, kv_bytes, kv_bytes_without_sharing, kv_bytes_saved;
    double kv_saved_ratio;
    uint64_t attention_flops_saved;
    /* page-exact: the pages the sequence held (shared prefix pages included) */
    uint64_t k_bytes_allocated, v_bytes_allocated;
    uint32_t block_tokens, k_pages, v_pages;
    uint64_t kv_bytes_paged;
};

struct engine_timings {
    double queued_ms, prompt_ms, generation_ms;
    double prompt_per_second, generation_per_second;
};

struct engine_event {
    enum engine_event_type type;
    uint64_t id;
    /* TOKEN; PROMPT (prompt_logprobs): token = the prompt token at position pos,
     * text its UTF-8 as the whole prompt decodes (engine_detokenize: no space
     * dropped), logprobs its log-probability and alternatives (pos 0: none,
     * logprobs.n_top 0) */
    int32_t token;
    const char *text; /* complete UTF-8 of this token (may be empty while a character is split) */
    size_t text_len;
    struct sampler_result logprobs; /* TOKEN: valid when sampling.n_logprobs > 0 */
    uint32_t pos;                   /* PROMPT: the token's position in the prompt */
    /* DONE */
    enum engine_finish finish;
    uint32_t prompt_tokens, completion_tokens;
    uint32_t cached_tokens; /* prompt tokens taken from the prefix cache */
    const float *embedding; /* ENGINE_TASK_EMBED: [n_embd] floats, valid during the callback only */
    uint32_t n_embd;
    struct engine_cache_stats cache;
    struct engine_timings timings;
    /* ERROR: this sequence alone failed; the others in its step go on.
     * SA_ERR_NUMERIC: its logits were not finite (NaN/inf from the weights)
     * SA_ERR_CONTEXT_FULL: it can never fit in the KV pool
     * SA_ERR_INTERNAL / SA_ERR_NOMEM: the forward step itself failed (then for every sequence in it)
     * SA_ERR_INVALID_ARG: its grammar allows no token of the vocabulary here (a dead end)
     * SA_ERR_TOO_LARGE: its grammar's matcher exceeded its bounds (grammar.h) */
    int error;
};

/* Queue a request. Returns 0 and *id, or SA_ERR_BUSY (queue full / shutting
 * down), SA_ERR_CONTEXT_FULL (prompt longer than the context),
 * SA_ERR_INVALID_ARG (token id out of range, empty prompt, bad plan),
 * SA_ERR_RANGE (sampling parameters). On error the callback is never called. */
int engine_submit(struct engine *e, const struct engine_request *req, uint64_t *id);
/* Thread-safe; unknown or finished ids are ignored. */
void engine_cancel(struct engine *e, uint64_t id);

struct engine_metrics {
    uint32_t queue_depth, active_sequences, active_sequences_peak, n_slots, queue_max;
    uint64_t queue_tokens; /* prompt tokens waiting */
    /* token-exact bytes of the active sequences */
    uint64_t kv_bytes_used, kv_k_bytes_used, kv_v_bytes_used, kv_bytes_capacity;
    uint64_t kv_bytes_saved, kv_k_bytes_saved;
    /* the page pool: used = held by sequences or the prefix cache; cached = held by the
     * prefix cache alone (evictable); held = page references of the active sequences */
    uint64_t kv_page_bytes;
    uint32_t kv_pages_total, kv_pages_used, kv_pages_reserved, kv_pages_cached;
    uint64_t kv_pages_held;
    uint64_t prefix_hits_total, prefix_tokens_total;
    uint64_t steps, prompt_tokens_total, generated_tokens_total;
    uint32_t vision_queue_depth; /* image jobs waiting or running (0 without a vision model) */
};
void engine_get_metrics(struct engine *e, struct engine_metrics *m);

/* ---- the phiDNN image classifier (optional; engine_config.vision_model_path) ----
 *
 * A vision job classifies a batch of images with one phiDNN mode (phidnn.h:
 * f(x) = C(R(T_xi(x))), seeded randomness, samples averaged). Jobs wait in
 * their own bounded FIFO (vision_queue_max, waiting + running; full: SA_ERR_BUSY)
 * and run on the step thread in order, one chunk of PHIDNN_CHUNK images between
 * two language-model steps, with the same threading rules as the steps
 * (OpenBLAS only on the step thread). The callback runs exactly once, ON THE
 * STEP THREAD; jobs still queued or running when engine_destroy runs get it
 * with SA_ERR_CANCELLED on the thread calling engine_destroy, before it
 * returns. The result's buffers are valid only during the call. */
struct engine_vision_result;
struct engine_vision_request {
    enum phidnn_mode mode;
    uint64_t seed;        /* the noise stream (phidnn.h: units in image-major order) */
    uint32_t samples;     /* 1..PHIDNN_MAX_SAMPLES */
    uint32_t n_images;    /* 1..vision_max_images */
    const float *images;  /* [n_images][C*H*W] in [0, 1]; copied at submit */
    bool want_recreation; /* fill result.recreated and result.corrupted */
    bool random_partition; /* inpaint: seeded random 4-way partitions instead of the 2x2 grid */
    void (*cb)(void *user, const struct engine_vision_result *res);
    void *user;
};
struct engine_vision_result {
    uint64_t id;
    int error;                  /* 0 or SA_ERR_* (then the buffers are NULL) */
    uint32_t n_images, n_classes;
    const float *probs;         /* [n_images][n_classes] */
    const float *recreated;     /* [n_images][C*H*W] or NULL (sample 0) */
    const float *corrupted;     /* [n_images][C*H*W] or NULL (sample 0's T(x)) */
    double queued_ms, compute_ms; /* waiting (incl. the LM steps between its chunks), computing */
};
/* The loaded model's description, or NULL when the engine has none. Any thread. */
const struct phidnn_info *engine_vision_info(const struct engine *e);
/* Queue a job. 0 and *id, or SA_ERR_NOT_FOUND (no vision model), SA_ERR_INVALID_ARG
 * (mode not in the model, no callback), SA_ERR_RANGE (samples, n_images, a pixel outside
 * [0, 1] or not finite), SA_ERR_BUSY (queue full), SA_ERR_NOMEM. On error the callback is
 * never called. Any thread. */
int engine_vision_submit(struct engine *e, const struct engine_vision_request *req, uint64_t *id);
/* Jobs waiting or running. Any thread. */
uint32_t engine_vision_queue_depth(struct engine *e);

/* ---- the start-up calibration's layer similarity (read-only) ----
 * The L x L matrix calib_auto_plan measured at engine_create (calibrate.h:
 * sim[a*L + b], row-major, diagonal 1: cosines of
 * attention probabilities, so in [0, 1]), whatever plan was
 * configured. Owned by the engine, never changed after engine_create returns,
 * valid until engine_destroy; any thread. NULL (and *n_layers = 0) when the
 * calibration failed (the auto plan is then off). n_layers may be NULL. */
const float *engine_layer_similarity(const struct engine *e, uint32_t *n_layers);

/* ==== one-shot model tools (engine/oneshot.c): the command line's calls ====
 *
 * saserve generate, similarity, perplexity, check-model and quantize run on a
 * model WITHOUT an engine: a struct engine_model is a loaded language model
 * (opaque) with no step thread, no KV pool and no queue. Each call below runs
 * on the calling thread with a worker pool of n_threads of its own (OpenBLAS
 * set to as many, as for a standalone workspace: transformer.h), and returns
 * when it is done; one call at a time per model, and not next to an engine in
 * the same process (the OpenBLAS thread count is process-wide).
 * The server's requests never go through here (they use engine_create and
 * engine_submit above); these calls exist so that server/cli.c needs no engine
 * internals. */
struct engine_model;

struct engine_model_desc {
    const char *name; /* general.name (or the architecture); valid while the model is open */
    uint32_t n_layer, dim, n_head, n_head_kv, ffn, n_vocab, n_ctx_train;
    uint64_t n_params;
};

/* Load and validate a GGUF file or a Hugging Face checkpoint (a directory or a
 * *.safetensors file), as engine_create does. use_mmap maps the weights instead
 * of reading them. On error *out is NULL and msg names the field. */
int engine_model_open(const char *path, bool use_mmap, struct engine_model **out, char *msg, size_t msg_len);
void engine_model_close(struct engine_model *m); /* accepts NULL */
void engine_model_describe(const struct engine_model *m, struct engine_model_desc *out);
/* Every element of every weight is a finite number (a full pass over the weights;
 * loading checks only the cheap part). SA_ERR_BAD_MODEL with msg naming the tensor. */
int engine_model_check_values(const struct engine_model *m, char *msg, size_t msg_len);
/* Encode text (NULL: the built-in calibration story, calibrate.h) with BOS; *ids is
 * malloc'd (caller frees). SA_ERR_* on failure (then *ids is NULL). */
int engine_model_tokenize(const struct engine_model *m, const char *text, size_t len, int32_t **ids, size_t *n);
/* The model's BOS id, or -1 when it has none. */
int32_t engine_model_bos(const struct engine_model *m);
/* Resolve a plan text: NULL or "off" (no sharing), spans "a-b,c-d", or "auto" (the
 * built-in calibration at threshold, n_threads threads). SA_ERR_INVALID_ARG for bad
 * spans, the calibration's error for auto; msg says why. */
int engine_model_plan(const struct engine_model *m, const char *text, float threshold, int n_threads,
                      struct share_plan *plan, char *msg, size_t msg_len);

/* saserve generate: the prompt, then up to n_predict sampled tokens, one forward
 * pass per token on one sequence. Text is handed to on_text as it becomes final:
 * first the prompt as the model sees it (id ENGINE_GEN_PROMPT, decoded with its
 * special tokens), then each generated token's complete UTF-8 (may be empty while a
 * character is split; res is its sampler result, logprobs when sampling.n_logprobs),
 * then whatever a split character left (id ENGINE_GEN_FLUSH). An end-of-generation
 * token ends the generation (its text is not handed over) unless no_eos. */
#define ENGINE_GEN_PROMPT (-1)
#define ENGINE_GEN_FLUSH (-2)
struct engine_generate_params {
    uint32_t n_predict; /* clamped to the context left after the prompt */
    uint32_t n_ctx;     /* tokens of context; 0 = the model's training context */
    int n_threads;
    struct sampler_params sampling;
    bool no_eos;
    const struct share_plan *plan; /* NULL = no sharing */
    struct rebalance_params rebalance;
    void (*on_text)(void *user, int32_t id, const char *text, size_t len, const struct sampler_result *res);
    void *user;
};
struct engine_generate_result {
    bool started;               /* the sequence was set up (else nothing was handed to on_text) */
    uint32_t n_generated;       /* tokens sampled, the end-of-generation one included */
    double prompt_s, generate_s; /* wall time of the prompt's forward pass and of the rest */
    struct engine_cache_stats cache; /* the figures of the cached tokens (page fields 0) */
};
/* 0, or SA_ERR_* (before the start: the sequence could not be set up; after it: a
 * forward pass failed, and r still describes what was generated). */
int engine_model_generate(struct engine_model *m, const int32_t *prompt, size_t n_prompt,
                          const struct engine_generate_params *p, struct engine_generate_result *r);

/* saserve similarity: sim [n_layer * n_layer] = the mean cosine similarity of the
 * layers' attention rows over n tokens (over heads and query positions), and plan =
 * the spans proposed at threshold (share.h: share_plan_auto). */
int engine_model_similarity(const struct engine_model *m, const int32_t *ids, size_t n, int n_threads, float threshold,
                            float *sim, struct share_plan *plan);

/* saserve perplexity: the tokens (ids[0] the text's own BOS) split into windows of
 * `window` tokens, each BOS + the next window-1 tokens, every next-token prediction
 * in each window scored. */
struct engine_perplexity_params {
    uint32_t window; /* >= 2 */
    int n_threads;
    const struct share_plan *plan; /* NULL = no sharing */
    struct rebalance_params rebalance;
};
struct engine_perplexity_result {
    bool started;               /* the sequence was set up */
    uint64_t tokens_scored;
    uint64_t bytes_scored;      /* bytes of the scored tokens' text */
    double nll;                 /* summed negative log-likelihood (nats) */
    double seconds;
    struct engine_cache_stats cache; /* one token's figures (bytes per token) */
};
int engine_model_perplexity(const struct engine_model *m, const int32_t *ids, size_t n,
                            const struct engine_perplexity_params *p, struct engine_perplexity_result *r);

/* saserve quantize (quantize.h): a quantised copy of an F32/F16/BF16 GGUF. type: Q8_0 Q4_0
 * Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS (every 2-D weight) or Q4_K_M Q5_K_M (llama.cpp's
 * mixtures). 0, SA_ERR_INVALID_ARG (unknown type) or another SA_ERR_*; msg names the
 * tensor, key or file. */
struct engine_quantize_stats {
    uint64_t n_tensors, n_quantized, bytes_in, bytes_out;
};
int engine_quantize_file(const char *in, const char *out, const char *type, struct engine_quantize_stats *st,
                         char *msg, size_t msg_len);
/* ==== end of the one-shot model tools ==== */

#endif
