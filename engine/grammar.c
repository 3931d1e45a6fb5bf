/*
 * grammar.c - GBNF subset parser, pushdown matcher over UTF-8 bytes, and the
 * vocabulary trie that makes a step's token mask cheap (contracts: grammar.h).
 */
#include "grammar.h"

#include "errors.h"
#include "tokenizer.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled form ---- */

enum gel_type { GEL_END = 0, GEL_LIT = 1, GEL_CLASS = 2, GEL_REF = 3 };

struct gel {
    uint32_t type; /* enum gel_type */
    uint32_t val;  /* LIT: code point; CLASS: class index; REF: rule id */
};

struct gclass {
    uint32_t first, n; /* ranges[first .. first + n): sorted, merged */
    bool neg;
    uint32_t ascii[4]; /* membership of code points < 128 (negation applied) */
};

struct grange {
    uint32_t lo, hi;
};

struct grule {
    char *name;       /* the user's name; generated rules carry their parent's */
    uint32_t name_len;
    bool generated;
    bool defined;
    size_t ref_pos;   /* byte position of the first reference (undefined-rule messages) */
    uint32_t *alts;   /* start positions in elems */
    uint32_t n_alts, cap_alts;
};

struct grammar {
    atomic_int refs;
    struct gel *elems;
    uint32_t n_elems, cap_elems;
    struct grule *rules;
    uint32_t n_rules, cap_rules;
    struct gclass *classes;
    uint32_t n_classes, cap_classes;
    struct grange *ranges;
    uint32_t n_ranges, cap_ranges;
    uint32_t start_pos; /* [REF root, END]: the matcher's start stack */
};

#define MAX_CP 0x10FFFFu
#define WORK_LIMIT 200000u /* expansion steps for one byte */

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap) return true;
    uint32_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

static void grammar_free(struct grammar *g)
{
    if (!g) return;
    for (uint32_t i = 0; i < g->n_rules; i++) {
        free(g->rules[i].name);
        free(g->rules[i].alts);
    }
    free(g->rules);
    free(g->elems);
    free(g->classes);
    free(g->ranges);
    free(g);
}

struct grammar *grammar_ref(struct grammar *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_unref(struct grammar *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1) grammar_free(g);
}

uint32_t grammar_n_rules(const struct grammar *g) { return g->n_rules; }

static bool class_has(const struct grammar *g, const struct gclass *c, uint32_t cp)
{
    if (cp < 128) return (c->ascii[cp >> 5] >> (cp & 31)) & 1;
    const struct grange *r = g->ranges + c->first;
    uint32_t lo = 0, hi = c->n; /* binary search for the range that could hold cp */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r[mid].hi < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool in = lo < c->n && r[lo].lo <= cp;
    return in != c->neg;
}

/* Could the element match some code point in [lo, hi]? */
static bool elem_may_match(const struct grammar *g, const struct gel *e, uint32_t lo, uint32_t hi)
{
    if (e->type == GEL_LIT) return e->val >= lo && e->val <= hi;
    const struct gclass *c = &g->classes[e->val];
    const struct grange *r = g->ranges + c->first;
    if (!c->neg) {
        for (uint32_t i = 0; i < c->n; i++)
            if (r[i].lo <= hi && r[i].hi >= lo) return true;
        return false;
    }
    for (uint32_t i = 0; i < c->n; i++) /* merged ranges: covered only by one of them */
        if (r[i].lo <= lo && r[i].hi >= hi) return false;
    return true;
}

static bool elem_match(const struct grammar *g, const struct gel *e, uint32_t cp)
{
    if (e->type == GEL_LIT) return e->val == cp;
    return class_has(g, &g->classes[e->val], cp);
}

/* ---- parser ---- */

struct parser {
    const char *s;
    size_t n, i;
    struct grammar *g;
    char *msg;
    size_t msg_len;
    int err;
    uint32_t rule;   /* the rule being defined (UINT32_MAX before the first) */
    int depth;       /* nested groups */
    uint32_t *ht;    /* rule name hash: id + 1, 0 empty */
    uint32_t ht_cap;
};

static int perr(struct parser *p, int code, size_t pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int perr(struct parser *p, int code, size_t pos, const char *fmt, ...)
{
    if (p->err) return p->err;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->rule != UINT32_MAX) {
        const struct grule *r = &p->g->rules[p->rule];
        int nl = r->name_len > 64 ? 64 : (int)r->name_len;
        p->err = sa_errf(code, p->msg, p->msg_len, "grammar: rule '%.*s' at byte %zu: %s", nl, r->name, pos, what);
    } else {
        p->err = sa_errf(code, p->msg, p->msg_len, "grammar: at byte %zu: %s", pos, what);
    }
    return p->err;
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int new_rule(struct parser *p, const char *name, size_t len, bool generated, uint32_t *id)
{
    struct grammar *g = p->g;
    if (g->n_rules >= GRAMMAR_MAX_RULES)
        return perr(p, SA_ERR_TOO_LARGE, p->i, "more than %u rules (generated ones included)", GRAMMAR_MAX_RULES);
    if (!grow((void **)&g->rules, &g->cap_rules, g->n_rules + 1, sizeof *g->rules))
        return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    struct grule *r = &g->rules[g->n_rules];
    memset(r, 0, sizeof *r);
    r->name = malloc(len + 1);
    if (!r->name) return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    memcpy(r->name, name, len);
    r->name[len] = 0;
    r->name_len = (uint32_t)len;
    r->generated = generated;
    r->defined = generated;
    *id = g->n_rules++;
    return 0;
}

/* The id of a named rule, created (undefined) at its first mention. */
static int lookup_rule(struct parser *p, const char *name, size_t len, size_t pos, uint32_t *id)
{
    uint32_t mask = p->ht_cap - 1, h = name_hash(name, len) & mask;
    for (;; h = (h + 1) & mask) {
        uint32_t v = p->ht[h];
        if (!v) break;
        const struct grule *r = &p->g->rules[v - 1];
        if (r->name_len == len && memcmp(r->name, name, len) == 0) {
            *id = v - 1;
            return 0;
        }
    }
    int rc = new_rule(p, name, len, false, id);
    if (rc) return rc;
    p->g->rules[*id].ref_pos = pos;
    p->ht[h] = *id + 1; /* ht_cap = 2 * GRAMMAR_MAX_RULES: never full */
    return 0;
}

static int add_alt(struct parser *p, uint32_t rule, const struct gel *els, uint32_t n)
{
    struct grammar *g = p->g;
    if (g->n_elems + n + 1 > GRAMMAR_MAX_ELEMS)
        return perr(p, SA_ERR_TOO_LARGE, p->i, "more than %u grammar elements", GRAMMAR_MAX_ELEMS);
    if (!grow((void **)&g->elems, &g->cap_elems, g->n_elems + n + 1, sizeof *g->elems))
        return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    struct grule *r = &g->rules[rule];
    if (!grow((void **)&r->alts, &r->cap_alts, r->n_alts + 1, sizeof *r->alts))
        return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    r->alts[r->n_alts++] = g->n_elems;
    if (n) memcpy(g->elems + g->n_elems, els, n * sizeof *els);
    g->n_elems += n;
    g->elems[g->n_elems++] = (struct gel){GEL_END, 0};
    return 0;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static void skip_space(struct parser *p)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->i++;
        } else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        } else {
            break;
        }
    }
}

/* Decode one UTF-8 character of the grammar text at p->i. */
static int text_char(struct parser *p, uint32_t *cp)
{
    const uint8_t *s = (const uint8_t *)p->s;
    size_t i = p->i;
    uint8_t b = s[i];
    uint32_t v, need, min;
    if (b < 0x80) {
        *cp = b;
        p->i++;
        return 0;
    }
    if (b >= 0xC2 && b <= 0xDF) v = b & 0x1F, need = 1, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF) v = b & 0x0F, need = 2, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4) v = b & 0x07, need = 3, min = 0x10000;
    else return perr(p, SA_ERR_INVALID_ARG, i, "invalid UTF-8");
    if (i + need >= p->n) return perr(p, SA_ERR_INVALID_ARG, i, "truncated UTF-8");
    for (uint32_t k = 1; k <= need; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return perr(p, SA_ERR_INVALID_ARG, i, "invalid UTF-8");
        v = v << 6 | (s[i + k] & 0x3F);
    }
    if (v < min || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) return perr(p, SA_ERR_INVALID_ARG, i, "invalid UTF-8");
    *cp = v;
    p->i += need + 1;
    return 0;
}

static int hex_digits(struct parser *p, int n, uint32_t *cp)
{
    uint32_t v = 0;
    size_t at = p->i;
    for (int k = 0; k < n; k++) {
        if (p->i >= p->n) return perr(p, SA_ERR_INVALID_ARG, at, "truncated \\x/\\u escape");
        char c = p->s[p->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return perr(p, SA_ERR_INVALID_ARG, p->i - 1, "'%c' is not a hex digit", c);
        v = v << 4 | (uint32_t)d;
    }
    if (v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF))
        return perr(p, SA_ERR_INVALID_ARG, at, "escape U+%X is not a Unicode scalar value", v);
    *cp = v;
    return 0;
}

/* One character of a literal or class, escapes decoded. */
static int parse_char(struct parser *p, uint32_t *cp)
{
    if (p->i >= p->n) return perr(p, SA_ERR_INVALID_ARG, p->i, "unexpected end of text");
    if (p->s[p->i] != '\\') return text_char(p, cp);
    size_t at = p->i++;
    if (p->i >= p->n) return perr(p, SA_ERR_INVALID_ARG, at, "unterminated escape");
    char c = p->s[p->i++];
    switch (c) {
    case 'n': *cp = '\n'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 't': *cp = '\t'; return 0;
    case '\\': case '"': case ']': case '[': case '-': case '/': case '^': *cp = (uint8_t)c; return 0;
    case 'x': return hex_digits(p, 2, cp);
    case 'u': return hex_digits(p, 4, cp);
    case 'U': return hex_digits(p, 8, cp);
    default: return perr(p, SA_ERR_INVALID_ARG, at, "unknown escape '\\%c'", c >= 32 && c < 127 ? c : '?');
    }
}

static int cmp_range(const void *a, const void *b)
{
    const struct grange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sort and merge the class's ranges, fill the ASCII bitmap. */
static void class_finish(struct grammar *g, struct gclass *c)
{
    struct grange *r = g->ranges + c->first; /* ranges is never NULL (grammar_compile) */
    if (c->n > 1) qsort(r, c->n, sizeof *r, cmp_range);
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        if (k && r[i].lo <= r[k - 1].hi + 1) {
            if (r[i].hi > r[k - 1].hi) r[k - 1].hi = r[i].hi;
        } else {
            r[k++] = r[i];
        }
    }
    c->n = k;
    g->n_ranges = c->first + k;
    memset(c->ascii, 0, sizeof c->ascii);
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t cp = r[i].lo; cp <= r[i].hi && cp < 128; cp++) c->ascii[cp >> 5] |= 1u << (cp & 31);
    if (c->neg)
        for (int w = 0; w < 4; w++) c->ascii[w] = ~c->ascii[w];
}

static int new_class(struct parser *p, bool neg, uint32_t *id)
{
    struct grammar *g = p->g;
    if (g->n_classes >= GRAMMAR_MAX_ELEMS)
        return perr(p, SA_ERR_TOO_LARGE, p->i, "more than %u character classes", GRAMMAR_MAX_ELEMS);
    if (!grow((void **)&g->classes, &g->cap_classes, g->n_classes + 1, sizeof *g->classes))
        return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    g->classes[g->n_classes] = (struct gclass){.first = g->n_ranges, .n = 0, .neg = neg};
    *id = g->n_classes++;
    return 0;
}

static int parse_class(struct parser *p, uint32_t *id)
{
    size_t at = p->i++; /* '[' */
    bool neg = p->i < p->n && p->s[p->i] == '^';
    if (neg) p->i++;
    int rc = new_class(p, neg, id);
    if (rc) return rc;
    struct grammar *g = p->g;
    struct gclass *c = &g->classes[*id];
    for (;;) {
        if (p->i >= p->n) return perr(p, SA_ERR_INVALID_ARG, at, "unterminated character class");
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        uint32_t lo, hi;
        if ((rc = parse_char(p, &lo))) return rc;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            size_t hat = p->i;
            if ((rc = parse_char(p, &hi))) return rc;
            if (hi < lo) return perr(p, SA_ERR_INVALID_ARG, hat, "range end U+%X below its start U+%X", hi, lo);
        }
        if (g->n_ranges >= GRAMMAR_MAX_ELEMS)
            return perr(p, SA_ERR_TOO_LARGE, p->i, "more than %u class ranges", GRAMMAR_MAX_ELEMS);
        if (!grow((void **)&g->ranges, &g->cap_ranges, g->n_ranges + 1, sizeof *g->ranges))
            return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
        g->ranges[g->n_ranges++] = (struct grange){lo, hi};
        c->n++;
    }
    if (c->n == 0) return perr(p, SA_ERR_INVALID_ARG, at, "empty character class");
    class_finish(g, c);
    return 0;
}

/* A growable list of elements: one sequence being parsed. */
struct gels {
    struct gel *v;
    uint32_t n, cap;
};

static int gels_push(struct parser *p, struct gels *s, struct gel e)
{
    if (s->n >= GRAMMAR_MAX_ELEMS) return perr(p, SA_ERR_TOO_LARGE, p->i, "more than %u grammar elements", GRAMMAR_MAX_ELEMS);
    if (!grow((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) return perr(p, SA_ERR_NOMEM, p->i, "out of memory");
    s->v[s->n++] = e;
    return 0;
}

static int parse_alts(struct parser *p, uint32_t rule);

/* Is there "name ::=" at p->i? (the start of the next rule ends a sequence) */
static bool at_definition(const struct parser *p)
{
    size_t i = p->i;
    while (i < p->n && is_name_char(p->s[i])) i++;
    while (i < p->n && (p->s[i] == ' ' || p->s[i] == '\t' || p->s[i] == '\n' || p->s[i] == '\r')) i++;
    return i + 3 <= p->n && memcmp(p->s + i, "::=", 3) == 0;
}

/* Parse one item into `item` (a literal can be several elements). */
static int parse_item(struct parser *p, struct gels *item)
{
    char c = p->s[p->i];
    int rc;
    if (c == '"') {
        size_t at = p->i++;
        for (;;) {
            if (p->i >= p->n) return perr(p, SA_ERR_INVALID_ARG, at, "unterminated string literal");
            if (p->s[p->i] == '"') {
                p->i++;
                break;
            }
            uint32_t cp;
            if ((rc = parse_char(p, &cp)) || (rc = gels_push(p, item, (struct gel){GEL_LIT, cp}))) return rc;
        }
        return 0;
    }
    if (c == '[') {
        uint32_t id;
        if ((rc = parse_class(p, &id))) return rc;
        return gels_push(p, item, (struct gel){GEL_CLASS, id});
    }
    if (c == '.') {
        p->i++;
        uint32_t id;
        if ((rc = new_class(p, true, &id))) return rc;
        class_finish(p->g, &p->g->classes[id]);
        return gels_push(p, item, (struct gel){GEL_CLASS, id});
    }
    if (c == '(') {
        size_t at = p->i++;
        if (++p->depth > GRAMMAR_MAX_NESTING)
            return perr(p, SA_ERR_TOO_LARGE, at, "groups nested deeper than %d", GRAMMAR_MAX_NESTING);
        const struct grule *cur = &p->g->rules[p->rule];
        uint32_t id;
        if ((rc = new_rule(p, cur->name, cur->name_len, true, &id)) || (rc = parse_alts(p, id))) return rc;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != ')') return perr(p, SA_ERR_INVALID_ARG, at, "unclosed '('");
        p->i++;
        p->depth--;
        return gels_push(p, item, (struct gel){GEL_REF, id});
    }
    if (is_name_char(c)) {
        size_t at = p->i;
        while (p->i < p->n && is_name_char(p->s[p->i])) p->i++;
        uint32_t id;
        if ((rc = lookup_rule(p, p->s + at, p->i - at, at, &id))) return rc;
        return gels_push(p, item, (struct gel){GEL_REF, id});
    }
    return perr(p, SA_ERR_INVALID_ARG, p->i, "unexpected character '%c'", c >= 32 && c < 127 ? c : '?');
}

/* Wrap `item` in a generated rule for op ('*', '+', '?'); item becomes one REF. */
static int apply_repeat(struct parser *p, struct gels *item, char op)
{
    const struct grule *cur = &p->g->rules[p->rule];
    uint32_t id, inner;
    int rc;
    struct gel x;
    if (item->n == 1) {
        x = item->v[0];
    } else { /* several elements (a literal): one rule first */
        if ((rc = new_rule(p, cur->name, cur->name_len, true, &inner)) || (rc = add_alt(p, inner, item->v, item->n)))
            return rc;
        x = (struct gel){GEL_REF, inner};
    }
    cur = &p->g->rules[p->rule];
    if ((rc = new_rule(p, cur->name, cur->name_len, true, &id))) return rc;
    struct gel two[2] = {x, {GEL_REF, id}};
    switch (op) {
    case '*': rc = add_alt(p, id, two, 2); if (!rc) rc = add_alt(p, id, NULL, 0); break;
    case '+': rc = add_alt(p, id, two, 2); if (!rc) rc = add_alt(p, id, &x, 1); break;
    default: rc = add_alt(p, id, &x, 1); if (!rc) rc = add_alt(p, id, NULL, 0); break;
    }
    if (rc) return rc;
    item->n = 0; /* an empty literal ("") has no element to overwrite */
    return gels_push(p, item, (struct gel){GEL_REF, id});
}

static int parse_count(struct parser *p, uint32_t *v)
{
    size_t at = p->i;
    uint32_t x = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (uint32_t)(p->s[p->i++] - '0');
        if (x > GRAMMAR_MAX_REPEAT)
            return perr(p, SA_ERR_TOO_LARGE, at, "repetition count above %u", GRAMMAR_MAX_REPEAT);
    }
    if (p->i == at) return perr(p, SA_ERR_INVALID_ARG, at, "expected a repetition count");
    *v = x;
    return 0;
}

/* X{m}, X{m,}, X{m,n}: item becomes m copies of X (*copies = m, or one group
 * when X is several elements) followed by X* or (n - m) nested optionals. */
static int parse_bounds(struct parser *p, struct gels *item, uint32_t *copies)
{
    size_t at = p->i++; /* '{' */
    uint32_t lo, hi;
    int rc;
    skip_space(p);
    if ((rc = parse_count(p, &lo))) return rc;
    skip_space(p);
    bool unbounded = false;
    hi = lo;
    if (p->i < p->n && p->s[p->i] == ',') {
        p->i++;
        skip_space(p);
        if (p->i < p->n && p->s[p->i] == '}')
            unbounded = true;
        else if ((rc = parse_count(p, &hi)))
            return rc;
        skip_space(p);
    }
    if (p->i >= p->n || p->s[p->i] != '}') return perr(p, SA_ERR_INVALID_ARG, at, "unterminated '{'");
    p->i++;
    if (!unbounded && hi < lo) return perr(p, SA_ERR_INVALID_ARG, at, "repetition {%u,%u}: max below min", lo, hi);
    const struct grule *cur = &p->g->rules[p->rule];
    struct gel x;
    if (item->n == 1) {
        x = item->v[0];
    } else {
        uint32_t inner;
        if ((rc = new_rule(p, cur->name, cur->name_len, true, &inner)) || (rc = add_alt(p, inner, item->v, item->n)))
            return rc;
        x = (struct gel){GEL_REF, inner};
    }
    struct gels out = {0};
    for (uint32_t k = 0; k < lo && !rc; k++) rc = gels_push(p, &out, x);
    if (!rc && unbounded) {
        struct gels one = {0};
        rc = gels_push(p, &one, x);
        if (!rc) rc = apply_repeat(p, &one, '*');
        if (!rc) rc = gels_push(p, &out, one.v[0]);
        free(one.v);
    } else if (!rc && hi > lo) { /* opt_k ::= x opt_{k+1} | "" ; the last: x | "" */
        uint32_t next = UINT32_MAX;
        for (uint32_t k = hi - lo; k-- > 0 && !rc;) {
            uint32_t id;
            cur = &p->g->rules[p->rule];
            if ((rc = new_rule(p, cur->name, cur->name_len, true, &id))) break;
            struct gel two[2] = {x, {GEL_REF, next}};
            rc = add_alt(p, id, two, next == UINT32_MAX ? 1 : 2);
            if (!rc) rc = add_alt(p, id, NULL, 0);
            next = id;
        }
        if (!rc) rc = gels_push(p, &out, (struct gel){GEL_REF, next});
    }
    if (!rc) {
        free(item->v);
        *item = out;
        *copies = 1;
    } else {
        free(out.v);
    }
    return rc;
}

static int parse_seq(struct parser *p, uint32_t rule)
{
    struct gels seq = {0}, item = {0};
    int rc = 0;
    for (;;) {
        skip_space(p);
        if (p->i >= p->n) break;
        char c = p->s[p->i];
        if (c == '|' || c == ')') break;
        if (is_name_char(c) && at_definition(p)) break;
        item.n = 0;
        if ((rc = parse_item(p, &item))) break;
        skip_space(p);
        uint32_t copies = 1;
        if (p->i < p->n && (p->s[p->i] == '*' || p->s[p->i] == '+' || p->s[p->i] == '?')) {
            char op = p->s[p->i++];
            if ((rc = apply_repeat(p, &item, op))) break;
        } else if (p->i < p->n && p->s[p->i] == '{') {
            if ((rc = parse_bounds(p, &item, &copies))) break;
        }
        for (uint32_t ci = 0; ci < copies && !rc; ci++)
            for (uint32_t k = 0; k < item.n && !rc; k++) rc = gels_push(p, &seq, item.v[k]);
        if (rc) break;
    }
    if (!rc) rc = add_alt(p, rule, seq.v, seq.n);
    free(seq.v);
    free(item.v);
    return rc;
}

static int parse_alts(struct parser *p, uint32_t rule)
{
    for (;;) {
        int rc = parse_seq(p, rule);
        if (rc) return rc;
        skip_space(p);
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            continue;
        }
        return 0;
    }
}

static int parse_grammar(struct parser *p)
{
    for (;;) {
        skip_space(p);
        if (p->i >= p->n) return 0;
        size_t at = p->i;
        while (p->i < p->n && is_name_char(p->s[p->i])) p->i++;
        if (p->i == at) {
            char c = p->s[at];
            return perr(p, SA_ERR_INVALID_ARG, at, "expected a rule name, found '%c'", c >= 32 && c < 127 ? c : '?');
        }
        uint32_t id;
        int rc = lookup_rule(p, p->s + at, p->i - at, at, &id);
        if (rc) return rc;
        p->rule = id;
        if (p->g->rules[id].defined) return perr(p, SA_ERR_INVALID_ARG, at, "rule defined twice");
        p->g->rules[id].defined = true;
        skip_space(p);
        if (p->i + 3 > p->n || memcmp(p->s + p->i, "::=", 3) != 0)
            return perr(p, SA_ERR_INVALID_ARG, p->i, "expected '::='");
        p->i += 3;
        if ((rc = parse_alts(p, id))) return rc;
        skip_space(p);
        if (p->i < p->n && p->s[p->i] == ')') return perr(p, SA_ERR_INVALID_ARG, p->i, "unbalanced ')'");
    }
}

/* ---- checks over the compiled rules ---- */

static const char *user_name(const struct grammar *g, uint32_t r, int *len)
{
    *len = g->rules[r].name_len > 64 ? 64 : (int)g->rules[r].name_len;
    return g->rules[r].name;
}

/* nullable: the rule can match the empty string; productive: it can match some finite string. */
static int check_rules(struct grammar *g, char *msg, size_t msg_len)
{
    uint32_t n = g->n_rules;
    bool *nullable = calloc(n, 1), *productive = calloc(n, 1);
    uint8_t *color = calloc(n, 1);
    uint32_t *stack = malloc((size_t)n * 3 * sizeof *stack);
    int rc = 0;
    if (!nullable || !productive || !color || !stack) {
        rc = SA_ERR_NOMEM;
        goto out;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            const struct grule *ru = &g->rules[r];
            for (uint32_t a = 0; a < ru->n_alts && !(nullable[r] && productive[r]); a++) {
                bool nul = true, prod = true;
                for (uint32_t pos = ru->alts[a]; g->elems[pos].type != GEL_END; pos++) {
                    const struct gel *e = &g->elems[pos];
                    if (e->type != GEL_REF) {
                        nul = false;
                    } else {
                        nul = nul && nullable[e->val];
                        prod = prod && productive[e->val];
                    }
                }
                if (nul && !nullable[r]) nullable[r] = changed = true;
                if (prod && !productive[r]) productive[r] = changed = true;
            }
        }
    }
    for (uint32_t r = 0; r < n; r++)
        if (!productive[r]) {
            int nl;
            const char *nm = user_name(g, r, &nl);
            rc = sa_errf(SA_ERR_INVALID_ARG, msg, msg_len,
                         "grammar: rule '%.*s' can never finish (every way through it recurses without end)", nl, nm);
            goto out;
        }
    /* left recursion: an edge r -> s when s can be the first thing r matches (only
     * nullable elements before it); a cycle would make the matcher expand forever.
     * Iterative DFS; a frame is (rule, alternative, element offset). */
    for (uint32_t r0 = 0; r0 < n && !rc; r0++) {
        if (color[r0]) continue;
        uint32_t sp = 0;
        stack[sp++] = r0, stack[sp++] = 0, stack[sp++] = 0;
        color[r0] = 1;
        while (sp && !rc) {
            uint32_t r = stack[sp - 3], a = stack[sp - 2], off = stack[sp - 1], next = UINT32_MAX;
            const struct grule *ru = &g->rules[r];
            while (a < ru->n_alts) {
                const struct gel *e = &g->elems[ru->alts[a] + off];
                if (e->type != GEL_REF) {
                    a++, off = 0;
                    continue;
                }
                next = e->val;
                if (nullable[e->val])
                    off++;
                else
                    a++, off = 0;
                break;
            }
            stack[sp - 2] = a, stack[sp - 1] = off;
            if (next == UINT32_MAX) {
                color[r] = 2;
                sp -= 3;
            } else if (color[next] == 1) {
                int nl;
                const char *nm = user_name(g, next, &nl);
                rc = sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "grammar: rule '%.*s' is left-recursive (or repeats with * or + "
                             "something that can match nothing)", nl, nm);
            } else if (color[next] == 0) {
                color[next] = 1;
                stack[sp++] = next, stack[sp++] = 0, stack[sp++] = 0;
            }
        }
    }
out:
    free(nullable);
    free(productive);
    free(color);
    free(stack);
    return rc;
}

int grammar_compile(const char *text, size_t len, struct grammar **out, char *msg, size_t msg_len)
{
    *out = NULL;
    if (!text) return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "grammar: no text");
    if (len > GRAMMAR_MAX_TEXT)
        return sa_errf(SA_ERR_TOO_LARGE, msg, msg_len, "grammar: %zu bytes (at most %u)", len, GRAMMAR_MAX_TEXT);
    struct grammar *g = calloc(1, sizeof *g);
    if (!g) return SA_ERR_NOMEM;
    atomic_init(&g->refs, 1);
    struct parser p = {.s = text, .n = len, .g = g, .msg = msg, .msg_len = msg_len, .rule = UINT32_MAX,
                       .ht_cap = 2 * GRAMMAR_MAX_RULES};
    p.ht = calloc(p.ht_cap, sizeof *p.ht);
    uint32_t root;
    int rc = p.ht && grow((void **)&g->ranges, &g->cap_ranges, 8, sizeof *g->ranges) ? 0 : SA_ERR_NOMEM;
    /* root is rule 0 whether or not it comes first */
    if (!rc) rc = lookup_rule(&p, "root", 4, 0, &root);
    if (!rc) rc = parse_grammar(&p);
    free(p.ht);
    if (!rc && !g->rules[0].defined) rc = sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "grammar: no rule 'root'");
    for (uint32_t r = 1; !rc && r < g->n_rules; r++)
        if (!g->rules[r].defined) {
            int nl;
            const char *nm = user_name(g, r, &nl);
            rc = sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "grammar: rule '%.*s' (used at byte %zu) is not defined",
                         nl, nm, g->rules[r].ref_pos);
        }
    if (!rc) rc = check_rules(g, msg, msg_len);
    if (!rc && !grow((void **)&g->elems, &g->cap_elems, g->n_elems + 2, sizeof *g->elems)) rc = SA_ERR_NOMEM;
    if (rc) {
        grammar_free(g);
        return rc;
    }
    g->start_pos = g->n_elems;
    g->elems[g->n_elems++] = (struct gel){GEL_REF, 0};
    g->elems[g->n_elems++] = (struct gel){GEL_END, 0};
    *out = g;
    return 0;
}

/* ---- matcher ---- */

/* A set of stacks: buf holds [positions bottom..top, depth] records; ht
 * dedupes them by content. Plus the partial UTF-8 character they share. */
struct gset {
    uint32_t *buf;
    uint32_t len, cap; /* uint32 words used in buf */
    uint32_t n;        /* stacks */
    uint32_t *ht;      /* record end offset + 1, 0 empty */
    uint32_t ht_cap;   /* power of two */
    bool complete;     /* some stack finished root */
    uint32_t pval, prem, pmin; /* partial character: bits so far, continuation bytes left, minimum value */
};

struct grammar_matcher {
    struct grammar *g;
    struct gset cur, a, b;
    struct gset *lvl;   /* [n_lvl] the trie walk's state after d bytes */
    uint32_t n_lvl;
    uint32_t *work;     /* expansion work list: records like gset's */
    uint32_t work_cap;
    uint32_t loc[GRAMMAR_MAX_DEPTH + 2];
    bool overflow;      /* the last step exceeded GRAMMAR_MAX_STACKS or the work limit */
    /* grammar_mask's transition cache (one call's worth): distinct states met in the
     * trie walk, interned by content, and their transitions by byte */
    struct gset *pool;  /* [n_pool] (buffers kept between calls; ht unused) */
    uint32_t n_pool, cap_pool;
    uint32_t *pool_ht;  /* id + 1 by content hash, 0 empty; [MASK_HT] */
    int32_t *trans;     /* [cap_pool][256]: MASK_UNKNOWN, MASK_DEAD or a state id */
    int32_t *node_state; /* [n_lvl] the state id after d bytes of the current trie path */
    struct gset scratch;
};

#define MASK_MAX_STATES 2048u /* distinct states cached per mask call (1 KiB of transitions each) */
#define MASK_HT 8192u
#define MASK_UNKNOWN (-2)
#define MASK_DEAD (-1)

static void gset_free(struct gset *s)
{
    free(s->buf);
    free(s->ht);
}

static void gset_clear(struct gset *s)
{
    s->len = s->n = 0;
    s->complete = false;
    s->pval = s->prem = s->pmin = 0;
    if (s->ht) memset(s->ht, 0, (size_t)s->ht_cap * sizeof *s->ht);
}

static uint32_t stack_hash(const uint32_t *v, uint32_t d)
{
    uint32_t h = 2166136261u ^ d;
    for (uint32_t i = 0; i < d; i++) h = (h ^ v[i]) * 16777619u;
    return h ^ (h >> 15);
}

static bool gset_rehash(struct gset *s, uint32_t cap)
{
    uint32_t *ht = calloc(cap, sizeof *ht);
    if (!ht) return false;
    free(s->ht);
    s->ht = ht;
    s->ht_cap = cap;
    /* re-insert by walking records backwards from the end */
    for (uint32_t end = s->len; end > 0;) {
        uint32_t d = s->buf[end - 1], start = end - 1 - d;
        uint32_t h = stack_hash(s->buf + start, d) & (cap - 1);
        while (ht[h]) h = (h + 1) & (cap - 1);
        ht[h] = end;
        end = start;
    }
    return true;
}

/* Add a stack (positions bottom..top) unless present. false: out of memory or too many. */
static bool gset_add(struct grammar_matcher *m, struct gset *s, const uint32_t *v, uint32_t d)
{
    if ((s->n + 1) * 2 > s->ht_cap && !gset_rehash(s, s->ht_cap ? s->ht_cap * 2 : 16)) return false;
    uint32_t mask = s->ht_cap - 1, h = stack_hash(v, d) & mask;
    for (; s->ht[h]; h = (h + 1) & mask) {
        uint32_t end = s->ht[h], od = s->buf[end - 1];
        if (od == d && memcmp(s->buf + end - 1 - d, v, d * sizeof *v) == 0) return true;
    }
    if (s->n >= GRAMMAR_MAX_STACKS) {
        m->overflow = true;
        return false;
    }
    if (!grow((void **)&s->buf, &s->cap, s->len + d + 1, sizeof *s->buf)) {
        m->overflow = true;
        return false;
    }
    memcpy(s->buf + s->len, v, d * sizeof *v);
    s->len += d;
    s->buf[s->len++] = d;
    s->ht[h] = s->len;
    s->n++;
    return true;
}

static bool work_push(struct grammar_matcher *m, uint32_t *wlen, const uint32_t *v, uint32_t d, uint32_t top)
{
    if (!grow((void **)&m->work, &m->work_cap, *wlen + d + 2, sizeof *m->work)) return false;
    memcpy(m->work + *wlen, v, d * sizeof *v);
    m->work[*wlen + d] = top;
    m->work[*wlen + d + 1] = d + 1;
    *wlen += d + 2;
    return true;
}

/* Expand stack v[0..d) until every resulting stack's top is a character
 * element (or it is empty: complete), adding them to s. */
static void expand(struct grammar_matcher *m, struct gset *s, const uint32_t *v, uint32_t d)
{
    const struct grammar *g = m->g;
    uint32_t wlen = 0, steps = 0;
    if (d == 0) {
        s->complete = true;
        return;
    }
    if (!work_push(m, &wlen, v, d - 1, v[d - 1])) {
        m->overflow = true;
        return;
    }
    uint32_t *loc = m->loc;
    while (wlen) {
        uint32_t n = m->work[wlen - 1];
        wlen -= n + 1;
        memcpy(loc, m->work + wlen, n * sizeof *loc);
        for (;;) {
            if (++steps > WORK_LIMIT) {
                m->overflow = true;
                return;
            }
            if (n == 0) {
                s->complete = true;
                break;
            }
            uint32_t pos = loc[n - 1];
            const struct gel *e = &g->elems[pos];
            if (e->type == GEL_END) {
                n--;
                continue;
            }
            if (e->type != GEL_REF) {
                gset_add(m, s, loc, n);
                break;
            }
            uint32_t base = n - 1;
            if (g->elems[pos + 1].type != GEL_END) loc[base++] = pos + 1; /* else a tail call */
            if (base + 1 > GRAMMAR_MAX_DEPTH) break; /* nested too deep: not accepted */
            const struct grule *r = &g->rules[e->val];
            for (uint32_t a = r->n_alts; a-- > 0;)
                if (!work_push(m, &wlen, loc, base, r->alts[a])) {
                    m->overflow = true;
                    return;
                }
            break;
        }
    }
}

/* t = s after byte b. Returns whether t is alive (some stack left or complete). */
static bool step(struct grammar_matcher *m, const struct gset *s, uint8_t b, struct gset *t)
{
    const struct grammar *g = m->g;
    gset_clear(t);
    m->overflow = false;
    if (s->n == 0) return false;
    uint32_t val, rem, min;
    if (s->prem == 0) {
        if (b < 0x80) val = b, rem = 0, min = 0;
        else if (b >= 0xC2 && b <= 0xDF) val = b & 0x1F, rem = 1, min = 0x80;
        else if (b >= 0xE0 && b <= 0xEF) val = b & 0x0F, rem = 2, min = 0x800;
        else if (b >= 0xF0 && b <= 0xF4) val = b & 0x07, rem = 3, min = 0x10000;
        else return false;
    } else {
        if ((b & 0xC0) != 0x80) return false;
        val = s->pval << 6 | (b & 0x3F);
        rem = s->prem - 1;
        min = s->pmin;
    }
    uint32_t lo = val << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
    if (hi > MAX_CP) hi = MAX_CP;
    if (lo < min) lo = min;
    if (lo > hi) return false; /* overlong or beyond U+10FFFF */
    if (lo >= 0xD800 && hi <= 0xDFFF) return false; /* surrogates only */
    if (rem) { /* half a character: keep the stacks whose next element could still match */
        t->pval = val;
        t->prem = rem;
        t->pmin = min;
        for (uint32_t end = s->len; end > 0;) {
            uint32_t d = s->buf[end - 1], start = end - 1 - d;
            if (elem_may_match(g, &g->elems[s->buf[end - 2]], lo, hi)) gset_add(m, t, s->buf + start, d);
            end = start;
        }
        return t->n > 0 && !m->overflow;
    }
    uint32_t cp = val;
    for (uint32_t end = s->len; end > 0;) {
        uint32_t d = s->buf[end - 1], start = end - 1 - d;
        uint32_t top = s->buf[end - 2];
        if (elem_match(g, &g->elems[top], cp)) {
            uint32_t tmp[GRAMMAR_MAX_DEPTH + 1];
            memcpy(tmp, s->buf + start, d * sizeof *tmp);
            tmp[d - 1] = top + 1;
            expand(m, t, tmp, d);
        }
        end = start;
    }
    return (t->n > 0 || t->complete) && !m->overflow; /* an overflowed state is not accepted */
}

static void gset_copy(struct gset *dst, const struct gset *src, struct grammar_matcher *m)
{
    gset_clear(dst);
    for (uint32_t end = src->len; end > 0;) {
        uint32_t d = src->buf[end - 1], start = end - 1 - d;
        gset_add(m, dst, src->buf + start, d);
        end = start;
    }
    dst->complete = src->complete;
    dst->pval = src->pval;
    dst->prem = src->prem;
    dst->pmin = src->pmin;
}

void grammar_matcher_reset(struct grammar_matcher *m)
{
    gset_clear(&m->cur);
    m->overflow = false;
    uint32_t start = m->g->start_pos;
    expand(m, &m->cur, &start, 1);
}

int grammar_matcher_create(struct grammar *g, struct grammar_matcher **out)
{
    *out = NULL;
    struct grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return SA_ERR_NOMEM;
    m->g = grammar_ref(g);
    grammar_matcher_reset(m);
    if (m->overflow) {
        grammar_matcher_destroy(m);
        return SA_ERR_TOO_LARGE;
    }
    *out = m;
    return 0;
}

void grammar_matcher_destroy(struct grammar_matcher *m)
{
    if (!m) return;
    gset_free(&m->cur);
    gset_free(&m->a);
    gset_free(&m->b);
    for (uint32_t i = 0; i < m->n_lvl; i++) gset_free(&m->lvl[i]);
    free(m->lvl);
    for (uint32_t i = 0; i < m->cap_pool; i++) gset_free(&m->pool[i]);
    free(m->pool);
    free(m->pool_ht);
    free(m->trans);
    free(m->node_state);
    gset_free(&m->scratch);
    free(m->work);
    grammar_unref(m->g);
    free(m);
}

int grammar_accept_bytes(struct grammar_matcher *m, const uint8_t *bytes, size_t n)
{
    if (n == 0) return 0;
    m->overflow = false;
    const struct gset *src = &m->cur;
    struct gset *dst = &m->a;
    for (size_t i = 0; i < n; i++) {
        if (!step(m, src, bytes[i], dst)) return m->overflow ? SA_ERR_TOO_LARGE : SA_ERR_INVALID_ARG;
        if (m->overflow) return SA_ERR_TOO_LARGE;
        src = dst;
        dst = dst == &m->a ? &m->b : &m->a;
    }
    /* src holds the result: swap it into cur (the buffers trade places) */
    struct gset *res = src == &m->a ? &m->a : &m->b, t = m->cur;
    m->cur = *res;
    *res = t;
    return 0;
}

bool grammar_can_end(const struct grammar_matcher *m) { return m->cur.complete && m->cur.prem == 0; }

bool grammar_is_done(const struct grammar_matcher *m) { return grammar_can_end(m) && m->cur.n == 0; }

/* ---- vocabulary trie ---- */

struct grammar_vocab {
    int32_t n_tokens;
    uint8_t *bytes;     /* every token's bytes, concatenated */
    uint32_t *off;      /* [n_tokens + 1] */
    uint32_t max_len;
    /* the trie in preorder: node i's subtree is [i, i + size[i]); node 0 is the root */
    uint32_t n_nodes;
    uint8_t *nbyte;     /* [n_nodes] the byte leading to node i */
    uint32_t *ndepth;   /* [n_nodes] bytes from the root */
    uint32_t *nsize;    /* [n_nodes] nodes in the subtree, itself included */
    uint32_t *ntok;     /* [n_nodes] first index into sorted[] of the tokens ending here */
    uint32_t *nntok;    /* [n_nodes] how many */
    int32_t *sorted;    /* non-empty tokens sorted by bytes */
    uint32_t n_sorted;
};

static int cmp_tok_bytes(const struct grammar_vocab *v, int32_t x, int32_t y)
{
    uint32_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* A merge sort by token bytes (qsort has no context argument in C11). */
static void sort_ids(int32_t *a, int32_t *tmp, uint32_t n, const struct grammar_vocab *v)
{
    if (n < 2) return;
    uint32_t h = n / 2;
    sort_ids(a, tmp, h, v);
    sort_ids(a + h, tmp, n - h, v);
    uint32_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp_tok_bytes(v, a[i], a[j]) <= 0 ? a[i++] : a[j++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

int grammar_vocab_create(const struct tokenizer *t, struct grammar_vocab **out)
{
    *out = NULL;
    struct grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return SA_ERR_NOMEM;
    int32_t n = tok_n_vocab(t);
    v->n_tokens = n;
    v->off = malloc(((size_t)n + 1) * sizeof *v->off);
    int rc = SA_ERR_NOMEM;
    if (!v->off) goto fail;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        v->off[i] = (uint32_t)total;
        size_t l = tok_token_to_bytes(t, i, false, NULL, 0);
        total += l;
        if (l > v->max_len) v->max_len = (uint32_t)l;
        if (total > UINT32_MAX / 2) {
            rc = SA_ERR_TOO_LARGE;
            goto fail;
        }
    }
    v->off[n] = (uint32_t)total;
    v->bytes = malloc(total ? total : 1);
    v->sorted = malloc(((size_t)n + 1) * sizeof *v->sorted);
    int32_t *tmp = malloc(((size_t)n + 1) * sizeof *tmp);
    size_t nn = total + 1;
    v->nbyte = malloc(nn);
    v->ndepth = malloc(nn * sizeof *v->ndepth);
    v->nsize = malloc(nn * sizeof *v->nsize);
    v->ntok = malloc(nn * sizeof *v->ntok);
    v->nntok = calloc(nn, sizeof *v->nntok);
    uint32_t *parent = malloc(nn * sizeof *parent), *path = malloc(((size_t)v->max_len + 1) * sizeof *path);
    if (!v->bytes || !v->sorted || !tmp || !v->nbyte || !v->ndepth || !v->nsize || !v->ntok || !v->nntok || !parent ||
        !path) {
        free(tmp);
        free(parent);
        free(path);
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        uint32_t l = v->off[i + 1] - v->off[i];
        if (l) tok_token_to_bytes(t, i, false, (char *)v->bytes + v->off[i], l);
        if (l) v->sorted[v->n_sorted++] = i;
    }
    sort_ids(v->sorted, tmp, v->n_sorted, v);
    free(tmp);
    /* insert in sorted order: nodes are created in preorder */
    v->n_nodes = 1;
    v->nbyte[0] = 0;
    v->ndepth[0] = 0;
    parent[0] = 0;
    path[0] = 0;
    uint32_t path_len = 0; /* depth of the last inserted token's node */
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (uint32_t k = 0; k < v->n_sorted; k++) {
        int32_t id = v->sorted[k];
        const uint8_t *b = v->bytes + v->off[id];
        uint32_t l = v->off[id + 1] - v->off[id], lcp = 0;
        while (prev && lcp < l && lcp < prev_len && lcp < path_len && b[lcp] == prev[lcp]) lcp++;
        for (uint32_t d = lcp; d < l; d++) {
            uint32_t nd = v->n_nodes++;
            v->nbyte[nd] = b[d];
            v->ndepth[nd] = d + 1;
            parent[nd] = path[d];
            path[d + 1] = nd;
        }
        path_len = l;
        uint32_t node = path[l];
        if (v->nntok[node]++ == 0) v->ntok[node] = k;
        prev = b;
        prev_len = l;
    }
    for (uint32_t i = 0; i < v->n_nodes; i++) v->nsize[i] = 1;
    for (uint32_t i = v->n_nodes; i-- > 1;) v->nsize[parent[i]] += v->nsize[i];
    free(parent);
    free(path);
    *out = v;
    return 0;
fail:
    grammar_vocab_destroy(v);
    return rc;
}

void grammar_vocab_destroy(struct grammar_vocab *v)
{
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->nbyte);
    free(v->ndepth);
    free(v->nsize);
    free(v->ntok);
    free(v->nntok);
    free(v->sorted);
    free(v);
}

int32_t grammar_vocab_n_tokens(const struct grammar_vocab *v) { return v->n_tokens; }
uint32_t grammar_vocab_n_nodes(const struct grammar_vocab *v) { return v->n_nodes; }

const uint8_t *grammar_vocab_bytes(const struct grammar_vocab *v, int32_t id, uint32_t *len)
{
    if (id < 0 || id >= v->n_tokens) return NULL;
    *len = v->off[id + 1] - v->off[id];
    return v->bytes + v->off[id];
}

static uint32_t gset_hash(const struct gset *s)
{
    uint32_t h = stack_hash(s->buf, s->len) ^ (s->complete ? 0x9e3779b9u : 0);
    return h ^ (s->pval * 31 + s->prem * 7 + s->pmin);
}

static bool gset_same(const struct gset *a, const struct gset *b)
{
    return a->len == b->len && a->n == b->n && a->complete == b->complete && a->pval == b->pval &&
           a->prem == b->prem && a->pmin == b->pmin && (a->len == 0 || !memcmp(a->buf, b->buf, a->len * sizeof *a->buf));
}

/* The id of a state equal to s, adding a copy when new; -1 when the cache is full
 * or out of memory. */
static int32_t intern(struct grammar_matcher *m, const struct gset *s)
{
    uint32_t h = gset_hash(s) & (MASK_HT - 1);
    for (; m->pool_ht[h]; h = (h + 1) & (MASK_HT - 1))
        if (gset_same(&m->pool[m->pool_ht[h] - 1], s)) return (int32_t)m->pool_ht[h] - 1;
    if (m->n_pool >= MASK_MAX_STATES) return -1;
    if (m->n_pool == m->cap_pool) {
        uint32_t nc = m->cap_pool ? m->cap_pool * 2 : 64;
        struct gset *p = realloc(m->pool, nc * sizeof *p);
        if (!p) return -1;
        memset(p + m->cap_pool, 0, (nc - m->cap_pool) * sizeof *p);
        m->pool = p;
        int32_t *t = realloc(m->trans, (size_t)nc * 256 * sizeof *t);
        if (!t) return -1;
        m->trans = t;
        m->cap_pool = nc;
    }
    struct gset *d = &m->pool[m->n_pool];
    if (!grow((void **)&d->buf, &d->cap, s->len ? s->len : 1, sizeof *d->buf)) return -1;
    if (s->len) memcpy(d->buf, s->buf, s->len * sizeof *d->buf);
    d->len = s->len;
    d->n = s->n;
    d->complete = s->complete;
    d->pval = s->pval;
    d->prem = s->prem;
    d->pmin = s->pmin;
    int32_t *row = m->trans + (size_t)m->n_pool * 256;
    for (int b = 0; b < 256; b++) row[b] = MASK_UNKNOWN;
    m->pool_ht[h] = ++m->n_pool;
    return (int32_t)m->n_pool - 1;
}

/* Sets the bits of the tokens that end at trie node i; returns how many. */
static int32_t allow_node(const struct grammar_vocab *v, uint32_t i, uint32_t *allowed)
{
    for (uint32_t k = 0; k < v->nntok[i]; k++) {
        int32_t id = v->sorted[v->ntok[i] + k];
        allowed[id >> 5] |= 1u << (id & 31);
    }
    return (int32_t)v->nntok[i];
}

/* The trie walk with states interned: a (state, byte) pair is stepped once per
 * call, so the cost is the trie's size plus the distinct transitions. Returns
 * the count, or -1 when the cache filled up (then the caller walks uncached). */
static int32_t mask_cached(struct grammar_matcher *m, const struct grammar_vocab *v, uint32_t *allowed)
{
    if (!m->pool_ht && !(m->pool_ht = malloc(MASK_HT * sizeof *m->pool_ht))) return -1;
    if (!m->node_state && !(m->node_state = malloc(m->n_lvl * sizeof *m->node_state))) return -1;
    memset(m->pool_ht, 0, MASK_HT * sizeof *m->pool_ht);
    m->n_pool = 0;
    m->overflow = false;
    if (intern(m, &m->cur) != 0) return -1;
    m->node_state[0] = 0;
    int32_t count = 0;
    for (uint32_t i = 1; i < v->n_nodes;) {
        uint32_t d = v->ndepth[i];
        int32_t from = m->node_state[d - 1];
        int32_t to = m->trans[(size_t)from * 256 + v->nbyte[i]];
        if (to == MASK_UNKNOWN) {
            if (!step(m, &m->pool[from], v->nbyte[i], &m->scratch)) {
                to = MASK_DEAD;
            } else if ((to = intern(m, &m->scratch)) < 0) {
                return -1;
            }
            m->trans[(size_t)from * 256 + v->nbyte[i]] = to; /* trans may have moved */
        }
        if (to == MASK_DEAD) {
            i += v->nsize[i];
            continue;
        }
        m->node_state[d] = to;
        count += allow_node(v, i, allowed);
        i++;
    }
    return count;
}

int32_t grammar_mask(struct grammar_matcher *m, const struct grammar_vocab *v, uint32_t *allowed)
{
    memset(allowed, 0, (((size_t)v->n_tokens + 31) / 32) * sizeof *allowed);
    if (m->n_lvl < v->max_len + 1) {
        struct gset *l = realloc(m->lvl, ((size_t)v->max_len + 1) * sizeof *l);
        if (!l) return SA_ERR_NOMEM;
        memset(l + m->n_lvl, 0, (v->max_len + 1 - m->n_lvl) * sizeof *l);
        m->lvl = l;
        m->n_lvl = v->max_len + 1;
        free(m->node_state);
        m->node_state = NULL;
    }
    int32_t count = mask_cached(m, v, allowed);
    if (count >= 0) return count;
    /* too many distinct states (or no memory for the cache): step every node */
    memset(allowed, 0, (((size_t)v->n_tokens + 31) / 32) * sizeof *allowed);
    count = 0;
    m->overflow = false;
    for (uint32_t i = 1; i < v->n_nodes;) {
        uint32_t d = v->ndepth[i];
        const struct gset *s = d == 1 ? &m->cur : &m->lvl[d - 1];
        if (!step(m, s, v->nbyte[i], &m->lvl[d])) {
            i += v->nsize[i];
            continue;
        }
        count += allow_node(v, i, allowed);
        i++;
    }
    return count;
}

int32_t grammar_mask_bruteforce(struct grammar_matcher *m, const struct grammar_vocab *v, uint32_t *allowed)
{
    memset(allowed, 0, (((size_t)v->n_tokens + 31) / 32) * sizeof *allowed);
    int32_t count = 0;
    struct gset saved = {0};
    gset_copy(&saved, &m->cur, m);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint32_t l = v->off[id + 1] - v->off[id];
        if (l == 0) continue;
        if (grammar_accept_bytes(m, v->bytes + v->off[id], l) == 0) {
            allowed[id >> 5] |= 1u << (id & 31);
            count++;
            gset_copy(&m->cur, &saved, m);
        }
    }
    gset_free(&saved);
    return count;
}
