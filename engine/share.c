#include "share.h"

#include "errors.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define fail(msg, msg_len, ...) sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, __VA_ARGS__)

void share_plan_init(struct share_plan *p, uint32_t n_layer)
{
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer > SHARE_MAX_LAYERS ? SHARE_MAX_LAYERS : n_layer;
    for (uint32_t l = 0; l < SHARE_MAX_LAYERS; l++) p->source[l] = -1;
}

int share_plan_add(struct share_plan *p, uint32_t a, uint32_t b, char *msg, size_t msg_len)
{
    uint32_t L = p->n_layer;
    if (a < 1) return fail(msg, msg_len, "span '%u-%u': layer 0 has no earlier layer to share from", a, b);
    if (a > b) return fail(msg, msg_len, "span '%u-%u': start is after end", a, b);
    if (b >= L)
        return fail(msg, msg_len, "span '%u-%u': layer %u is out of range (the model has layers 0..%u)", a, b, b, L - 1);
    if (p->n_spans == SHARE_MAX_SPANS) return fail(msg, msg_len, "span '%u-%u': more than %d spans", a, b, SHARE_MAX_SPANS);
    for (uint32_t l = a; l <= b; l++)
        if (p->source[l] >= 0)
            return fail(msg, msg_len, "span '%u-%u': overlaps another span at layer %u", a, b, l);
    if (p->source[a - 1] >= 0)
        return fail(msg, msg_len, "span '%u-%u': its source layer %u is itself inside a span", a, b, a - 1);
    /* no existing span may use a layer of this one as its source */
    for (uint32_t s = 0; s < p->n_spans; s++)
        if (p->spans[s].a - 1u >= a && p->spans[s].a - 1u <= b)
            return fail(msg, msg_len, "span '%u-%u': contains layer %u, the source of span '%u-%u'", a, b,
                        p->spans[s].a - 1u, p->spans[s].a, p->spans[s].b);
    for (uint32_t l = a; l <= b; l++) p->source[l] = (int16_t)(a - 1);
    p->spans[p->n_spans++] = (struct share_span){(uint16_t)a, (uint16_t)b};
    return 0;
}

static int parse_uint(const char **s, uint32_t *out)
{
    if (!isdigit((unsigned char)**s)) return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)**s)) {
        v = v * 10 + (uint64_t)(**s - '0');
        if (v > 100000) return -1;
        (*s)++;
    }
    *out = (uint32_t)v;
    return 0;
}

int share_plan_parse(struct share_plan *p, const char *text, uint32_t n_layer, char *msg, size_t msg_len)
{
    share_plan_init(p, n_layer);
    if (n_layer > SHARE_MAX_LAYERS) return fail(msg, msg_len, "share plan: models above %d layers are not supported", SHARE_MAX_LAYERS);
    if (!text || !*text || !strcmp(text, "off") || !strcmp(text, "none")) return 0;
    const char *s = text;
    for (;;) {
        const char *start = s;
        uint32_t a, b;
        while (*s == ' ') s++;
        if (parse_uint(&s, &a)) goto syntax;
        b = a;
        if (*s == '-') {
            s++;
            if (parse_uint(&s, &b)) goto syntax;
        }
        while (*s == ' ') s++;
        if (*s != ',' && *s) goto syntax;
        int rc = share_plan_add(p, a, b, msg, msg_len);
        if (rc) return rc;
        if (!*s) break;
        s++;
        continue;
    syntax: {
        size_t n = strcspn(start, ",");
        return fail(msg, msg_len, "span '%.*s': expected 'a-b' with layer numbers (e.g. '3-4,7-9')",
                    (int)(n > 40 ? 40 : n), start);
    }
    }
    return 0;
}

static int cmp_span(const void *x, const void *y)
{
    const struct share_span *a = x, *b = y;
    return (int)a->a - (int)b->a;
}

uint32_t share_plan_sorted(const struct share_plan *p, struct share_span *out)
{
    memcpy(out, p->spans, p->n_spans * sizeof *out);
    qsort(out, p->n_spans, sizeof *out, cmp_span);
    return p->n_spans;
}

size_t share_plan_format(const struct share_plan *p, char *buf, size_t cap)
{
    if (!p->n_spans) return (size_t)snprintf(buf, cap, "off");
    struct share_span sp[SHARE_MAX_SPANS];
    share_plan_sorted(p, sp);
    size_t n = 0;
    buf[0] = 0;
    for (uint32_t i = 0; i < p->n_spans && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%u-%u", i ? "," : "", sp[i].a, sp[i].b);
    return n < cap ? n : cap - 1;
}

uint32_t share_plan_n_sharing(const struct share_plan *p)
{
    uint32_t n = 0;
    for (uint32_t l = 0; l < p->n_layer; l++) n += p->source[l] >= 0;
    return n;
}

void share_plan_auto(struct share_plan *p, const float *sim, uint32_t n_layer, float threshold)
{
    share_plan_init(p, n_layer);
    uint32_t l = 1;
    while (l < n_layer) {
        uint32_t s = l - 1, b = l;
        if (sim[(size_t)s * n_layer + l] < threshold) {
            l++;
            continue;
        }
        while (b + 1 < n_layer && sim[(size_t)s * n_layer + b + 1] >= threshold) b++;
        share_plan_add(p, l, b, NULL, 0);
        l = b + 2; /* layer b+1 computes (it may become the next source) */
    }
}
