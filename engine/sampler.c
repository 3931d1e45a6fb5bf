#include "sampler.h"

#include "errors.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    int32_t id;
    float logit;
};

struct sampler {
    struct sampler_params p;
    int32_t n_vocab;
    uint64_t rng[4];
    int32_t *counts;   /* [n_vocab] occurrences in the history */
    int32_t *history;  /* ring of the last repeat_last_n tokens (or all, up to hist_cap) */
    int32_t hist_cap, hist_len, hist_pos;
    float *work;       /* [n_vocab] penalised logits */
    float *bias;       /* [n_vocab] logit bias, or NULL when none */
    int32_t n_accepted; /* tokens accepted since the last reset (min_tokens) */
    struct cand *cands; /* [n_vocab] */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 bits */
static double rng_uniform(struct sampler *s) { return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53; }

struct sampler_params sampler_default_params(void)
{
    return (struct sampler_params){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0, .repeat_penalty = 1};
}

void sampler_reset(struct sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->hist_len = s->hist_pos = 0;
    s->n_accepted = 0;
}

int sampler_create(const struct sampler_params *p, int32_t n_vocab, struct sampler **out)
{
    *out = NULL;
    if (n_vocab < 1 || !(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) ||
        !(p->min_p >= 0 && p->min_p <= 1) || !(p->repeat_penalty > 0) || p->repeat_last_n < 0 ||
        !isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty) || !isfinite(p->temperature) ||
        p->n_logprobs < 0 || p->n_logprobs > SAMPLER_MAX_LOGPROBS || p->n_bias < 0 || p->n_bias > SAMPLER_MAX_BIAS ||
        (p->n_bias && !p->bias) || p->n_eog < 0 || p->n_eog > SAMPLER_MAX_EOG || p->min_tokens < 0)
        return SA_ERR_RANGE;
    for (int32_t i = 0; i < p->n_bias; i++)
        if (p->bias[i].id < 0 || p->bias[i].id >= n_vocab || !isfinite(p->bias[i].bias)) return SA_ERR_RANGE;
    for (int32_t i = 0; i < p->n_eog; i++)
        if (p->eog[i] < 0 || p->eog[i] >= n_vocab) return SA_ERR_RANGE;
    struct sampler *s = calloc(1, sizeof *s);
    if (!s) return SA_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->hist_cap = p->repeat_last_n > 0 ? p->repeat_last_n : 0;
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->history = calloc((size_t)(s->hist_cap ? s->hist_cap : 1), sizeof *s->history);
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->bias = p->n_bias ? calloc((size_t)n_vocab, sizeof *s->bias) : NULL;
    s->p.bias = NULL; /* the dense copy below is what is used */
    if (!s->counts || !s->history || !s->work || !s->cands || (p->n_bias && !s->bias)) {
        sampler_destroy(s);
        return SA_ERR_NOMEM;
    }
    for (int32_t i = 0; i < p->n_bias; i++) s->bias[p->bias[i].id] += p->bias[i].bias;
    sampler_reset(s);
    *out = s;
    return 0;
}

void sampler_destroy(struct sampler *s)
{
    if (!s) return;
    free(s->counts);
    free(s->history);
    free(s->work);
    free(s->cands);
    free(s->bias);
    free(s);
}

void sampler_accept(struct sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab) return;
    s->n_accepted++;
    if (s->hist_cap) { /* windowed: evict the oldest */
        if (s->hist_len == s->hist_cap) {
            s->counts[s->history[s->hist_pos]]--;
        } else {
            s->hist_len++;
        }
        s->history[s->hist_pos] = token;
        s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    }
    s->counts[token]++;
}

static int cmp_cand_desc(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* Move the k largest candidates to the front, sorted (k << n: O(n log k) heap). */
static void partial_sort_top(struct cand *c, int32_t n, int32_t k)
{
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
        return;
    }
    /* min-heap of size k over c[0..k) */
    for (int32_t i = k / 2 - 1; i >= 0; i--)
        for (int32_t j = i;;) {
            int32_t l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && cmp_cand_desc(&c[l], &c[m]) > 0) m = l;
            if (r < k && cmp_cand_desc(&c[r], &c[m]) > 0) m = r;
            if (m == j) break;
            struct cand t = c[j]; c[j] = c[m]; c[m] = t;
            j = m;
        }
    for (int32_t i = k; i < n; i++) {
        if (cmp_cand_desc(&c[i], &c[0]) >= 0) continue; /* not better than the heap's worst */
        struct cand t = c[0]; c[0] = c[i]; c[i] = t;
        for (int32_t j = 0;;) {
            int32_t l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && cmp_cand_desc(&c[l], &c[m]) > 0) m = l;
            if (r < k && cmp_cand_desc(&c[r], &c[m]) > 0) m = r;
            if (m == j) break;
            struct cand u = c[j]; c[j] = c[m]; c[m] = u;
            j = m;
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
}

/* Any float made safe to compare and exponentiate: NaN and -inf are "impossible"
 * (-inf), +inf and overflowed values saturate at FLT_MAX. */
static float sanitize(double v)
{
    if (!(v == v) || v < -FLT_MAX) return -INFINITY;
    return v > FLT_MAX ? FLT_MAX : (float)v;
}

/* A finite value clamped into [-FLT_MAX, FLT_MAX] (the temperature-scaled logits). */
static float saturate(double v) { return v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : (float)v; }

static void fill_logprobs(struct sampler *s, const float *logits, int32_t chosen, struct sampler_result *res)
{
    int32_t n = s->n_vocab;
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        float v = sanitize(logits[i]);
        max = v > max ? v : max;
    }
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)sanitize(logits[i]) - max);
    /* sum >= 1 when any logit is a number (the max contributes exp(0)) */
    float lse = sum > 0 ? (float)(max + log(sum)) : 0;
    res->token = chosen;
    res->logprob = sanitize(logits[chosen]) - lse;
    res->n_top = s->p.n_logprobs < n ? s->p.n_logprobs : n;
    if (res->n_top > 0) {
        for (int32_t i = 0; i < n; i++) s->cands[i] = (struct cand){i, sanitize(logits[i])};
        partial_sort_top(s->cands, n, res->n_top);
        for (int32_t i = 0; i < res->n_top; i++)
            res->top[i] = (struct sampler_logprob){s->cands[i].id, s->cands[i].logit - lse};
    }
}

int32_t sampler_sample(struct sampler *s, const float *logits, struct sampler_result *res)
{
    return sampler_sample_masked(s, logits, NULL, res);
}

int32_t sampler_sample_masked(struct sampler *s, const float *logits, const uint32_t *allowed,
                              struct sampler_result *res)
{
    const struct sampler_params *p = &s->p;
    int32_t n = s->n_vocab;
    float *w = s->work;
    bool penal = p->repeat_penalty != 1 || p->frequency_penalty != 0 || p->presence_penalty != 0;
    for (int32_t i = 0; i < n; i++) {
        if (allowed && !((allowed[i >> 5] >> (i & 31)) & 1)) {
            w[i] = -INFINITY;
            continue;
        }
        double v = sanitize(logits[i]);
        if (s->bias && v > -INFINITY) v += s->bias[i];
        int32_t cnt = penal ? s->counts[i] : 0;
        if (cnt && v > -INFINITY) { /* in double, then saturated: a tiny repeat_penalty cannot make inf */
            if (p->repeat_penalty != 1) v = v > 0 ? v / p->repeat_penalty : v * p->repeat_penalty;
            v -= (double)cnt * p->frequency_penalty + p->presence_penalty;
        }
        w[i] = sanitize(v);
    }
    if (p->ignore_eos || s->n_accepted < p->min_tokens)
        for (int32_t k = 0; k < p->n_eog; k++) w[p->eog[k]] = -INFINITY;
    int32_t chosen = -1;
    if (p->temperature < SAMPLER_GREEDY_TEMP) {
        float best = -INFINITY;
        for (int32_t i = 0; i < n; i++)
            if (w[i] > best) best = w[i], chosen = i;
        if (chosen < 0) return SA_ERR_NUMERIC; /* no logit is a number */
    } else {
        /* candidates: the possible tokens only, scaled by the temperature */
        struct cand *c = s->cands;
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++)
            if (w[i] > -INFINITY) c[m++] = (struct cand){i, saturate((double)w[i] / p->temperature)};
        if (m == 0) return SA_ERR_NUMERIC;
        bool sorted = false;
        if (p->top_k > 0 && p->top_k < m) {
            partial_sort_top(c, m, p->top_k);
            m = p->top_k;
            sorted = true;
        }
        if (p->top_p < 1 && !sorted) {
            qsort(c, (size_t)m, sizeof *c, cmp_cand_desc);
            sorted = true;
        }
        float max = c[0].logit;
        if (!sorted)
            for (int32_t i = 1; i < m; i++) max = c[i].logit > max ? c[i].logit : max;
        /* now unnormalised probabilities in (0, 1], the max exactly 1: every value and the
         * difference to max are finite, so none is NaN and sum >= 1 */
        double sum = 0;
        for (int32_t i = 0; i < m; i++) {
            c[i].logit = expf(c[i].logit - max);
            sum += c[i].logit;
        }
        if (p->top_p < 1) { /* c is sorted descending; at least the first is kept */
            double cum = 0;
            int32_t keep = m;
            for (int32_t i = 0; i < m; i++) {
                cum += c[i].logit / sum;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            m = keep;
        }
        if (p->min_p > 0) { /* relative to the max, whose probability is 1 here: it always stays */
            int32_t j = 0;
            for (int32_t i = 0; i < m; i++)
                if (c[i].logit >= p->min_p || c[i].logit == 1.0f) c[j++] = c[i];
            m = j;
        }
        sum = 0;
        for (int32_t i = 0; i < m; i++) sum += c[i].logit;
        double r = rng_uniform(s) * sum, acc = 0;
        chosen = c[m - 1].id; /* m >= 1: rounding that leaves r past the last sum */
        for (int32_t i = 0; i < m; i++) {
            acc += c[i].logit;
            if (r < acc) {
                chosen = c[i].id;
                break;
            }
        }
    }
    if (res) fill_logprobs(s, logits, chosen, res);
    return chosen;
}

void sampler_logprobs(struct sampler *s, const float *logits, int32_t token, struct sampler_result *res)
{
    fill_logprobs(s, logits, token, res);
}
