/*
 * config.h - saserve's settings: one table drives the JSON file, the
 * command-line flags, the SASERVE_* environment variables, --help and the
 * error messages (the habit of Redis' static_configs[] and kore's settings
 * table).
 *
 * Every setting has a key (JSON name, snake_case), a type, a default, a range,
 * an environment variable (SASERVE_ + KEY upper-cased) and a long flag
 * (--key-with-dashes). Sources, lowest to highest precedence:
 *
 *   built-in defaults  <  JSON file  <  command-line flags  <  SASERVE_* env
 *
 * The JSON file is named by --config PATH (or --config=PATH) or by the
 * SASERVE_CONFIG variable (which, being environment, wins over the flag); an
 * empty path means "no file". No file is loaded implicitly: the default file
 * config/saserve.json is used only when it is passed.
 *
 * Value syntax, the same in every source except where JSON has its own types:
 *   string  any text up to the field's capacity; some keys take one of a fixed
 *           list of names (chat_template, log_level) or a span list (share_spans)
 *   uint    decimal digits, parsed whole (no atoi), checked against the range;
 *           in JSON an integer
 *   float   a finite decimal number (strtod, whole string); in JSON a number
 *   bool    1/0, true/false, on/off, yes/no (any case); in JSON true/false.
 *           Flags: --mmap, --no-mmap, --mmap=on|off|true|false|1|0
 *   size    bytes: an integer, or digits with a k/m/g suffix (powers of 1024),
 *           e.g. "256m"; in JSON an integer or such a string
 *
 * Unknown keys (in the file), unknown flags, unknown SASERVE_* variables, bad
 * values, out-of-range values and wrong JSON types are errors whose message
 * names the key and the source, e.g.
 *   config: port: 70000 is out of range 1..65535 (from SASERVE_PORT)
 *   config: unknown key 'prot' in config/saserve.json (did you mean 'port'?)
 *
 * Thread-safety: these functions keep no global state; a loaded struct config
 * is a plain value the server reads (and may copy) from any thread.
 */
#ifndef SA_CONFIG_H
#define SA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The effective configuration: a plain, caller-embedded value (nothing to free). */
struct config {
    char model[1024];          /* path to a GGUF model; "" = none given */
    char served_model_name[256]; /* the id clients see; "" = the model's name */
    char host[256];            /* address to listen on */
    uint32_t port;             /* TCP port, 1..65535 */
    uint32_t threads;          /* compute threads */
    uint32_t ctx;              /* tokens per sequence; 0 = the model's training context */
    uint32_t slots;            /* sequences computed concurrently */
    uint32_t queue_max;        /* waiting requests before 503 */
    uint32_t queue_max_tokens; /* prompt tokens waiting before 503 (0 = no limit) */
    uint32_t prefill_chunk;    /* max prompt tokens per step, over all sequences */
    uint64_t kv_budget;        /* bytes of the paged KV pool; 0 = slots full contexts */
    uint32_t kv_block;         /* token positions per KV page */
    bool prefix_cache;         /* reuse cached prompt prefixes */
    bool kv_f16;               /* F16 KV cache */
    bool mmap;                 /* memory-map the model file */
    bool share;                /* Shared Attention on by default for requests */
    char share_spans[256];     /* "auto", "off" or "a-b,c-d" */
    float share_threshold;     /* similarity threshold for "auto" spans */
    float temperature;         /* a request's sampling temperature when it gives none */
    uint32_t repeat_last_n;    /* history window of repeat_penalty */
    bool rebalance;            /* attention re-balancer on by default */
    float rebalance_alpha;     /* boost strength */
    float rebalance_tau;       /* layer-0 mask threshold */
    bool rebalance_renormalize; /* renormalise boosted rows (not in the reference) */
    uint64_t max_body;         /* request body bytes (413 above) */
    uint64_t max_prompt_bytes; /* prompt text bytes (400 above) */
    uint32_t max_tokens_limit; /* largest max_tokens a request may ask for */
    uint32_t max_n;            /* largest n (choices per request) */
    uint32_t max_logprobs;     /* largest logprobs */
    uint32_t max_stop;         /* most stop strings per request */
    uint32_t request_timeout;  /* seconds to receive headers + body */
    uint32_t idle_timeout;     /* seconds an idle keep-alive connection is kept */
    uint32_t shutdown_grace;   /* seconds in-flight work may finish after SIGTERM */
    uint32_t max_connections;  /* concurrent connections */
    uint32_t per_ip_connections; /* concurrent connections per client address */
    uint64_t connection_memory; /* per-connection buffer for the request line and headers */
    uint64_t max_stream_buffer; /* SSE bytes a client has not taken yet before it is cut */
    char api_key[256];         /* bearer token; "" = no authentication */
    char cors_origins[1024];   /* CORS: "" off, "*" any origin, or "https://a.example,https://b.example" */
    char chat_template[32];    /* "" = from the model; else llama2 | chatml | llama3 */
    char log_level[16];        /* debug | info | warn | error */
    char vision_model[1024];   /* phiDNN GGUF served at /v2/models/{name}; "" = none */
    uint32_t vision_max_batch; /* images per /v2 infer request (400 above) */
    uint32_t vision_queue_max; /* image jobs waiting before 503 */

    /* Not a setting: the JSON file that was loaded ("" = none). Never written
     * by config_write_json. */
    char config_path[1024];
};

/* Fill *c with the built-in defaults. */
void config_defaults(struct config *c);

/*
 * Build the effective configuration: defaults, then the JSON file (--config
 * PATH or SASERVE_CONFIG), then the flags in argv, then the SASERVE_*
 * variables in envp.
 *
 * argv holds only the options (argv[0] is the first option, not a program or
 * sub-command name); argc may be 0 and argv NULL. envp is environ-style, NULL-
 * terminated, or NULL for "no environment" (tests pass their own; the server
 * passes environ). Variables that do not start with SASERVE_ are ignored.
 *
 * --help / -h anywhere in argv sets *help_requested (when help_requested is
 * not NULL) and returns 0 at once with *c holding the defaults; nothing else
 * is parsed. Otherwise *help_requested is set to false.
 *
 * Returns 0 and fills *c, or on error leaves *c unchanged and returns
 * SA_ERR_IO (the file cannot be read) or SA_ERR_INVALID_ARG (anything else),
 * with a one-line message starting "config: " in msg (msg may be NULL).
 */
int config_load(struct config *c, int argc, char **argv, char **envp, bool *help_requested, char *msg,
                size_t msg_len);

/* The option list, generated from the table: flag, variable, default, range, help. */
void config_print_help(FILE *f);

/*
 * The effective configuration as a JSON object with every key in table order,
 * in the syntax config_load reads back (sizes as "256k" where exact). A set
 * api_key is written as "***". Returns 0, or SA_ERR_IO if writing failed.
 */
int config_write_json(const struct config *c, FILE *f);

#endif
