/*
 * sampler.h - choose the next token from logits.
 *
 * Pipeline for each token (llama.cpp order):
 *   0. an optional per-call mask of allowed tokens (sampler_sample_masked), logit bias (OpenAI logit_bias: added to the token's logit), and the
 *      end-of-generation ids made impossible while fewer than min_tokens
 *      tokens were accepted, or always with ignore_eos;
 *   1. penalties over the accepted history: repetition (logit/pen if > 0,
 *      logit*pen otherwise, last repeat_last_n tokens), frequency
 *      (- count*freq) and presence (- [count>0]*presence);
 *   2. temperature < SAMPLER_GREEDY_TEMP: argmax (ties: lowest id), done;
 *   3. top-k (k > 0), then top-p (nucleus, p < 1), then min-p (keep tokens
 *      with prob >= min_p * max prob), over the temperature-scaled softmax;
 *   4. draw from what remains with the sampler's own xoshiro256** generator
 *      seeded by `seed`, so the same seed and logits give the same tokens.
 * Log-probabilities reported in sampler_result are those of the model's own
 * distribution (log-softmax of the raw logits, before penalties and
 * temperature), as the OpenAI API reports them.
 *
 * Any input is safe: NaN logits count as impossible tokens, +inf saturates
 * at FLT_MAX, and penalties and temperature are applied in double and
 * saturated, so no parameter in range can produce inf or NaN. The filters
 * always keep the most likely token; when no token is possible at all (every
 * logit NaN or -inf) the sampler says so instead of choosing one.
 *
 * A sampler belongs to one sequence; all memory is allocated at creation.
 */
#ifndef SA_SAMPLER_H
#define SA_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#define SAMPLER_MAX_LOGPROBS 20
#define SAMPLER_GREEDY_TEMP 1e-3f

#define SAMPLER_MAX_BIAS 1024 /* logit_bias entries */
#define SAMPLER_MAX_EOG 8      /* end-of-generation ids the sampler can hold back */

struct sampler_bias {
    int32_t id;
    float bias; /* finite; -100 in practice bans the token, +100 forces it */
};

struct sampler_params {
    float temperature;       /* 0 = greedy */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    int32_t repeat_last_n;   /* history window for repeat_penalty; 0 = all accepted */
    float frequency_penalty; /* 0 = off */
    float presence_penalty;  /* 0 = off */
    uint64_t seed;
    int32_t n_logprobs;      /* top alternatives to report, 0..SAMPLER_MAX_LOGPROBS */
    const struct sampler_bias *bias; /* [n_bias], copied at creation (ids in range; repeats add up) */
    int32_t n_bias;          /* 0..SAMPLER_MAX_BIAS */
    int32_t eog[SAMPLER_MAX_EOG]; /* end-of-generation ids (the engine fills them) */
    int32_t n_eog;
    bool ignore_eos;         /* never sample an end-of-generation id */
    int32_t min_tokens;      /* nor before this many tokens were accepted; 0 = off */
};

struct sampler_logprob {
    int32_t id;
    float logprob;
};

struct sampler_result {
    int32_t token;
    float logprob; /* of the chosen token */
    int32_t n_top;
    struct sampler_logprob top[SAMPLER_MAX_LOGPROBS]; /* most likely first */
};

struct sampler;

/* Defaults: greedy, no filters, no penalties. */
struct sampler_params sampler_default_params(void);
/* Validates ranges (SA_ERR_RANGE naming nothing: callers validate fields). */
int sampler_create(const struct sampler_params *p, int32_t n_vocab, struct sampler **out);
void sampler_destroy(struct sampler *s); /* accepts NULL */
void sampler_reset(struct sampler *s);   /* forget history, reseed */
/* Record a token in the history the penalties use. */
void sampler_accept(struct sampler *s, int32_t token);
/* Pick a token from logits [n_vocab] (not modified). Returns its id (in
 * [0, n_vocab)), or SA_ERR_NUMERIC when no logit is a number. res may be NULL. */
int32_t sampler_sample(struct sampler *s, const float *logits, struct sampler_result *res);
/* The same, restricted to the tokens whose bit is set in allowed (bit id % 32 of
 * allowed[id / 32]; NULL = all): the others are impossible before step 0, as a
 * structured-output grammar's mask requires (grammar.h). SA_ERR_NUMERIC when no
 * allowed token is possible. Log-probabilities stay the model's own. */
int32_t sampler_sample_masked(struct sampler *s, const float *logits, const uint32_t *allowed,
                              struct sampler_result *res);
/* The model's log-probabilities in logits [n_vocab] (not modified), as a sampled
 * token's are reported: log-softmax of the raw logits (no temperature, penalty,
 * bias or mask), token's in res->logprob and the n_logprobs most likely in
 * res->top. token in [0, n_vocab). Scoring a prompt token (engine.h). */
void sampler_logprobs(struct sampler *s, const float *logits, int32_t token, struct sampler_result *res);

#endif
