/*
 * schema.c - JSON Schema subset -> GBNF text (contracts: schema.h).
 *
 * Every schema node becomes one rule "n<k>"; objects add the rules "n<k>-f<i>"
 * (properties i.. with none written yet) and "n<k>-t<i>" (properties i.. after
 * one was written: each begins with a comma), so optional properties cost a
 * linear number of rules. A $ref is memoised by its target, which makes
 * recursive schemas recursive rules.
 */
#include "schema.h"

#include "engine/engine.h"
#include "engine/errors.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON rules every schema grammar shares; the json_object grammar is them under a root. */
#define JSON_RULES                                                                                                    \
    "ws ::= ( \" \" | \"\\n\" [ \\t]{0,8} )?\n"                                                                         \
    "json-value ::= json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"\n"           \
    "json-object ::= \"{\" ws ( json-string ws \":\" ws json-value ws ( \",\" ws json-string ws \":\" ws json-value ws )* )? \"}\"\n" \
    "json-array ::= \"[\" ws ( json-value ws ( \",\" ws json-value ws )* )? \"]\"\n"                                     \
    "json-string ::= \"\\\"\" json-char* \"\\\"\"\n"                                                                    \
    "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" [\"\\\\/bfnrt]\n"                                                  \
    "json-number ::= json-integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n"                                \
    "json-integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"

static const char JSON_LIB[] = JSON_RULES "json-boolean ::= \"true\" | \"false\"\n"
                                          "json-null ::= \"null\"\n";

static const char JSON_OBJECT_GBNF[] = "root ::= json-object\n" JSON_RULES;

const char *schema_json_object_gbnf(void) { return JSON_OBJECT_GBNF; }

void gbnf_put(struct gbnf_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void gbnf_puts(struct gbnf_buf *b, const char *s) { gbnf_put(b, s, strlen(s)); }

void gbnf_printf(struct gbnf_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if ((size_t)n < sizeof tmp) {
        gbnf_put(b, tmp, (size_t)n);
        return;
    }
    /* longer (a long property name in a rule): never truncated, which would cut a literal */
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    gbnf_put(b, big, (size_t)n);
    free(big);
}

/* A GBNF literal matching exactly the bytes s[0..n). */
void gbnf_literal(struct gbnf_buf *b, const char *s, size_t n)
{
    gbnf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            gbnf_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            gbnf_printf(b, "\\x%02X", c);
        } else {
            gbnf_put(b, (const char *)&c, 1);
        }
    }
    gbnf_puts(b, "\"");
}

/* A literal for a JSON value in compact form (enum, const, property names). */
static int put_json_literal(struct gbnf_buf *b, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    if (!s) return SA_ERR_NOMEM;
    gbnf_literal(b, s, strlen(s));
    free(s);
    return 0;
}

struct conv {
    json_t *root;
    const char *pfx; /* prefix of every rule name ("" for a whole grammar) */
    struct gbnf_buf out; /* finished rules */
    char *msg;
    size_t msg_len;
    uint32_t next;   /* rule counter */
    struct {
        json_t *node;
        uint32_t rule;
    } refs[256];     /* $ref targets already given a rule */
    uint32_t n_refs;
    int depth;
};

static int fail(struct conv *c, int code, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(struct conv *c, int code, const char *path, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sa_errf(code, c->msg, c->msg_len, "json_schema: %s (at %s)", what, path);
}

static int gen(struct conv *c, json_t *s, const char *path, uint32_t *rule);

static bool is_annotation(const char *k)
{
    static const char *const ann[] = {"title", "description", "$schema", "$id", "$comment", "default", "examples",
                                      "deprecated", "readOnly", "writeOnly", "$defs", "definitions"};
    for (size_t i = 0; i < sizeof ann / sizeof *ann; i++)
        if (!strcmp(k, ann[i])) return true;
    return false;
}

static bool allowed_for(const char *k, const char *type)
{
    static const struct {
        const char *type, *key;
    } tab[] = {{"object", "properties"}, {"object", "required"}, {"object", "additionalProperties"},
               {"array", "items"},       {"array", "minItems"},  {"array", "maxItems"},
               {"string", "minLength"},  {"string", "maxLength"}};
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (!strcmp(k, tab[i].key) && (!type || !strcmp(type, tab[i].type))) return true;
    return false;
}

static void child_path(char *dst, size_t cap, const char *path, const char *a, const char *b)
{
    snprintf(dst, cap, "%s/%s%s%s", path, a, b ? "/" : "", b ? b : "");
}

static int get_count(struct conv *c, json_t *s, const char *key, const char *path, long long max, long long *v,
                     bool *present)
{
    json_t *x = json_object_get(s, key);
    *present = x != NULL;
    if (!x) return 0;
    if (!json_is_integer(x) || json_integer_value(x) < 0)
        return fail(c, SA_ERR_INVALID_ARG, path, "'%s' must be a non-negative integer", key);
    *v = json_integer_value(x);
    if (*v > max) return fail(c, SA_ERR_UNSUPPORTED, path, "'%s' above %lld is not supported", key, max);
    return 0;
}

/* The body of one type alternative of s, appended to body. */
static int gen_type(struct conv *c, json_t *s, const char *type, const char *path, uint32_t self,
                    struct gbnf_buf *body)
{
    int rc;
    if (!strcmp(type, "null") || !strcmp(type, "boolean") || !strcmp(type, "number") || !strcmp(type, "integer")) {
        gbnf_puts(body, !strcmp(type, "null") ? "json-null" : !strcmp(type, "boolean") ? "json-boolean"
                      : !strcmp(type, "number") ? "json-number" : "json-integer");
        return 0;
    }
    if (!strcmp(type, "string")) {
        long long lo = 0, hi = 0;
        bool has_lo, has_hi;
        if ((rc = get_count(c, s, "minLength", path, SCHEMA_MAX_LENGTH, &lo, &has_lo)) ||
            (rc = get_count(c, s, "maxLength", path, SCHEMA_MAX_LENGTH, &hi, &has_hi)))
            return rc;
        if (has_hi && hi < lo) return fail(c, SA_ERR_INVALID_ARG, path, "maxLength below minLength");
        if (!has_lo && !has_hi)
            gbnf_puts(body, "json-string");
        else if (has_hi)
            gbnf_printf(body, "\"\\\"\" json-char{%lld,%lld} \"\\\"\"", lo, hi);
        else
            gbnf_printf(body, "\"\\\"\" json-char{%lld,} \"\\\"\"", lo);
        return 0;
    }
    if (!strcmp(type, "array")) {
        json_t *items = json_object_get(s, "items");
        char ipath[512];
        uint32_t item_rule = 0;
        bool any_item = !items || json_is_true(items);
        if (!any_item) {
            child_path(ipath, sizeof ipath, path, "items", NULL);
            if ((rc = gen(c, items, ipath, &item_rule))) return rc;
        }
        char item[64];
        if (any_item)
            snprintf(item, sizeof item, "json-value");
        else
            snprintf(item, sizeof item, "%sn%u", c->pfx, item_rule);
        long long lo = 0, hi = 0;
        bool has_lo, has_hi;
        if ((rc = get_count(c, s, "minItems", path, SCHEMA_MAX_ITEMS, &lo, &has_lo)) ||
            (rc = get_count(c, s, "maxItems", path, SCHEMA_MAX_ITEMS, &hi, &has_hi)))
            return rc;
        if (has_hi && hi < lo) return fail(c, SA_ERR_INVALID_ARG, path, "maxItems below minItems");
        if (has_hi && hi == 0)
            gbnf_puts(body, "\"[\" ws \"]\"");
        else if (lo == 0 && !has_hi)
            gbnf_printf(body, "\"[\" ws ( %s ws ( \",\" ws %s ws )* )? \"]\"", item, item);
        else if (lo == 0)
            gbnf_printf(body, "\"[\" ws ( %s ws ( \",\" ws %s ws ){0,%lld} )? \"]\"", item, item, hi - 1);
        else if (!has_hi)
            gbnf_printf(body, "\"[\" ws %s ws ( \",\" ws %s ws ){%lld,} \"]\"", item, item, lo - 1);
        else
            gbnf_printf(body, "\"[\" ws %s ws ( \",\" ws %s ws ){%lld,%lld} \"]\"", item, item, lo - 1, hi - 1);
        return 0;
    }
    if (!strcmp(type, "object")) {
        json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
                     *add = json_object_get(s, "additionalProperties");
        if (props && !json_is_object(props)) return fail(c, SA_ERR_INVALID_ARG, path, "'properties' must be an object");
        if (req && !json_is_array(req)) return fail(c, SA_ERR_INVALID_ARG, path, "'required' must be an array");
        if (add && !json_is_boolean(add))
            return fail(c, SA_ERR_UNSUPPORTED, path, "'additionalProperties' other than true or false is not supported");
        size_t n = props ? json_object_size(props) : 0, k = 0;
        if (!props && !req && !json_is_false(add)) { /* any object */
            gbnf_puts(body, "json-object");
            return 0;
        }
        for (size_t i = 0; req && i < json_array_size(req); i++) {
            json_t *r = json_array_get(req, i);
            if (!json_is_string(r)) return fail(c, SA_ERR_INVALID_ARG, path, "'required' must list strings");
            if (!props || !json_object_get(props, json_string_value(r)))
                return fail(c, SA_ERR_UNSUPPORTED, path, "required property '%.64s' is not in 'properties'",
                            json_string_value(r));
        }
        uint32_t *vals = calloc(n ? n : 1, sizeof *vals);
        bool *reqd = calloc(n ? n : 1, sizeof *reqd);
        const char **names = calloc(n ? n : 1, sizeof *names);
        if (!vals || !reqd || !names) {
            free(vals), free(reqd), free(names);
            return SA_ERR_NOMEM;
        }
        const char *key;
        json_t *val;
        rc = 0;
        json_object_foreach(props, key, val) /* insertion order (jansson >= 2.8) */
        {
            char ppath[512];
            child_path(ppath, sizeof ppath, path, "properties", key);
            names[k] = key;
            for (size_t i = 0; req && i < json_array_size(req); i++)
                if (!strcmp(json_string_value(json_array_get(req, i)), key)) reqd[k] = true;
            if ((rc = gen(c, val, ppath, &vals[k]))) break;
            k++;
        }
        /* f<i>: properties i.. with none written yet; t<i>: after one (each starts with ",") */
        for (size_t i = n; !rc && i-- > 0;) {
            struct gbnf_buf kv = {0};
            json_t *name = json_string(names[i]);
            if (!name || put_json_literal(&kv, name)) rc = SA_ERR_NOMEM;
            json_decref(name);
            if (!rc) {
                gbnf_printf(&kv, " ws \":\" ws %sn%u ws", c->pfx, vals[i]);
                char next_f[80], next_t[80];
                if (i + 1 < n) {
                    snprintf(next_f, sizeof next_f, " %sn%u-f%zu", c->pfx, self, i + 1);
                    snprintf(next_t, sizeof next_t, " %sn%u-t%zu", c->pfx, self, i + 1);
                } else {
                    next_f[0] = next_t[0] = 0;
                }
                gbnf_printf(&c->out, "%sn%u-f%zu ::= %s%s", c->pfx, self, i, kv.p ? kv.p : "", next_t);
                if (!reqd[i]) gbnf_printf(&c->out, " | %s", i + 1 < n ? next_f + 1 : "\"\"");
                gbnf_printf(&c->out, "\n%sn%u-t%zu ::= \",\" ws %s%s", c->pfx, self, i, kv.p ? kv.p : "", next_t);
                if (!reqd[i]) gbnf_printf(&c->out, " | %s", i + 1 < n ? next_t + 1 : "\"\"");
                gbnf_puts(&c->out, "\n");
            }
            free(kv.p);
        }
        free(vals), free(reqd), free(names);
        if (rc) return rc;
        if (n)
            gbnf_printf(body, "\"{\" ws %sn%u-f0 \"}\"", c->pfx, self);
        else
            gbnf_puts(body, "\"{\" ws \"}\"");
        return 0;
    }
    return fail(c, SA_ERR_UNSUPPORTED, path, "type '%.32s' is not supported", type);
}

/* Resolve a $ref inside the root schema. */
static json_t *resolve_ref(const struct conv *c, const char *ref)
{
    if (!strcmp(ref, "#")) return c->root;
    const char *name = NULL;
    json_t *defs = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) {
        defs = json_object_get(c->root, "$defs");
        name = ref + 8;
    } else if (!strncmp(ref, "#/definitions/", 14)) {
        defs = json_object_get(c->root, "definitions");
        name = ref + 14;
    }
    if (!defs || !name || !*name || strchr(name, '/') || strchr(name, '~')) return NULL;
    return json_object_get(defs, name);
}

static int gen(struct conv *c, json_t *s, const char *path, uint32_t *rule)
{
    if (++c->depth > SCHEMA_MAX_DEPTH) {
        c->depth--;
        return fail(c, SA_ERR_TOO_LARGE, path, "schemas nested deeper than %d", SCHEMA_MAX_DEPTH);
    }
    int rc = 0;
    uint32_t self = c->next++;
    struct gbnf_buf body = {0};
    if (self > 2000) {
        rc = fail(c, SA_ERR_TOO_LARGE, path, "schema too large");
        goto out;
    }
    *rule = self;
    if (json_is_true(s)) {
        gbnf_puts(&body, "json-value");
        goto emit;
    }
    if (json_is_false(s)) {
        rc = fail(c, SA_ERR_UNSUPPORTED, path, "the schema 'false' matches nothing");
        goto out;
    }
    if (!json_is_object(s)) {
        rc = fail(c, SA_ERR_INVALID_ARG, path, "a schema must be an object or a boolean");
        goto out;
    }
    /* keywords we do not know or support are named, never ignored */
    const char *key;
    json_t *val;
    json_t *type = json_object_get(s, "type");
    json_object_foreach(s, key, val)
    {
        if (is_annotation(key) || !strcmp(key, "type") || !strcmp(key, "enum") || !strcmp(key, "const") ||
            !strcmp(key, "anyOf") || !strcmp(key, "oneOf") || !strcmp(key, "$ref"))
            continue;
        if (allowed_for(key, NULL)) continue; /* checked against the type below */
        rc = fail(c, SA_ERR_UNSUPPORTED, path, "'%.64s' is not supported", key);
        goto out;
    }
    json_t *en = json_object_get(s, "enum"), *cst = json_object_get(s, "const"),
                 *any = json_object_get(s, "anyOf"), *one = json_object_get(s, "oneOf"),
                 *ref = json_object_get(s, "$ref");
    int forms = (en != NULL) + (cst != NULL) + (any != NULL) + (one != NULL) + (ref != NULL);
    if (forms > 1 || (forms && type)) {
        rc = fail(c, SA_ERR_UNSUPPORTED, path, "combining %s with other constraints is not supported",
                  en ? "'enum'" : cst ? "'const'" : any ? "'anyOf'" : one ? "'oneOf'" : "'$ref'");
        goto out;
    }
    if (forms) {
        json_object_foreach(s, key, val) if (allowed_for(key, NULL))
        {
            rc = fail(c, SA_ERR_UNSUPPORTED, path, "'%.64s' beside enum/const/anyOf/oneOf/$ref is not supported", key);
            goto out;
        }
    }
    if (ref) {
        if (!json_is_string(ref)) {
            rc = fail(c, SA_ERR_INVALID_ARG, path, "'$ref' must be a string");
            goto out;
        }
        json_t *target = resolve_ref(c, json_string_value(ref));
        if (!target) {
            rc = fail(c, SA_ERR_UNSUPPORTED, path, "'$ref' %.128s: only #, #/$defs/<name> and #/definitions/<name> "
                      "that exist are supported", json_string_value(ref));
            goto out;
        }
        uint32_t tr = UINT32_MAX;
        for (uint32_t i = 0; i < c->n_refs; i++)
            if (c->refs[i].node == target) tr = c->refs[i].rule;
        if (target == c->root) tr = 0;
        if (tr == UINT32_MAX) {
            if (c->n_refs >= sizeof c->refs / sizeof *c->refs) {
                rc = fail(c, SA_ERR_TOO_LARGE, path, "too many $ref targets");
                goto out;
            }
            /* reserve the target's rule number before generating it, so a recursive
             * reference finds it */
            uint32_t slot = c->n_refs++;
            c->refs[slot].node = target;
            c->refs[slot].rule = c->next;
            char rpath[512];
            snprintf(rpath, sizeof rpath, "%.500s", json_string_value(ref));
            if ((rc = gen(c, target, rpath, &tr))) goto out;
        }
        gbnf_printf(&body, "%sn%u", c->pfx, tr);
        goto emit;
    }
    if (en || cst) {
        if (en && (!json_is_array(en) || json_array_size(en) == 0)) {
            rc = fail(c, SA_ERR_INVALID_ARG, path, "'enum' must be a non-empty array");
            goto out;
        }
        size_t n = en ? json_array_size(en) : 1;
        for (size_t i = 0; i < n && !rc; i++) {
            if (i) gbnf_puts(&body, " | ");
            rc = put_json_literal(&body, en ? json_array_get(en, i) : cst);
        }
        goto emit;
    }
    if (any || one) {
        json_t *list = any ? any : one;
        if (!json_is_array(list) || json_array_size(list) == 0) {
            rc = fail(c, SA_ERR_INVALID_ARG, path, "'%s' must be a non-empty array", any ? "anyOf" : "oneOf");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(list); i++) {
            char bpath[512], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            child_path(bpath, sizeof bpath, path, any ? "anyOf" : "oneOf", idx);
            uint32_t br;
            if ((rc = gen(c, json_array_get(list, i), bpath, &br))) goto out;
            gbnf_printf(&body, "%s%sn%u", i ? " | " : "", c->pfx, br);
        }
        goto emit;
    }
    if (!type) { /* no type: keywords of one type imply it, none means any value */
        const char *implied = NULL;
        json_object_foreach(s, key, val)
        {
            const char *t = allowed_for(key, "object") ? "object" : allowed_for(key, "array") ? "array"
                            : allowed_for(key, "string") ? "string" : NULL;
            if (t && implied && strcmp(t, implied)) {
                rc = fail(c, SA_ERR_UNSUPPORTED, path, "keywords of several types without 'type' are not supported");
                goto out;
            }
            if (t) implied = t;
        }
        if (!implied) {
            gbnf_puts(&body, "json-value");
            goto emit;
        }
        rc = gen_type(c, s, implied, path, self, &body);
        goto emit;
    }
    size_t n_types = json_is_array(type) ? json_array_size(type) : 1;
    if (!json_is_string(type) && !(json_is_array(type) && n_types > 0)) {
        rc = fail(c, SA_ERR_INVALID_ARG, path, "'type' must be a string or a non-empty array of strings");
        goto out;
    }
    json_object_foreach(s, key, val) if (allowed_for(key, NULL))
    {
        bool fits = false;
        for (size_t i = 0; i < n_types; i++) {
            json_t *t = json_is_array(type) ? json_array_get(type, i) : type;
            if (json_is_string(t) && allowed_for(key, json_string_value(t))) fits = true;
        }
        if (!fits) {
            rc = fail(c, SA_ERR_UNSUPPORTED, path, "'%.64s' does not apply to the type given", key);
            goto out;
        }
    }
    for (size_t i = 0; i < n_types && !rc; i++) {
        json_t *t = json_is_array(type) ? json_array_get(type, i) : type;
        if (!json_is_string(t)) {
            rc = fail(c, SA_ERR_INVALID_ARG, path, "'type' must list strings");
            goto out;
        }
        if (i) gbnf_puts(&body, " | ");
        gbnf_puts(&body, "( ");
        rc = gen_type(c, s, json_string_value(t), path, self, &body);
        gbnf_puts(&body, " )");
    }
emit:
    if (!rc) {
        gbnf_printf(&c->out, "%sn%u ::= ", c->pfx, self);
        gbnf_puts(&c->out, body.p ? body.p : "\"\"");
        gbnf_puts(&c->out, "\n");
        if (body.oom || c->out.oom) rc = SA_ERR_NOMEM;
    }
out:
    free(body.p);
    c->depth--;
    return rc;
}

/* The rules of schema, named pfx + "n<k>", the top one's name in *root. */
static int schema_rules(json_t *schema, const char *pfx, struct conv *c, uint32_t *root, char *msg, size_t msg_len)
{
    *c = (struct conv){.root = schema, .pfx = pfx, .msg = msg, .msg_len = msg_len};
    return gen(c, schema, "#", root);
}

int schema_to_gbnf(json_t *schema, char **gbnf, char *msg, size_t msg_len)
{
    *gbnf = NULL;
    struct conv c;
    uint32_t root;
    int rc = schema_rules(schema, "", &c, &root, msg, msg_len);
    if (!rc) {
        gbnf_printf(&c.out, "root ::= n%u\n", root);
        gbnf_puts(&c.out, JSON_LIB);
        if (c.out.oom) rc = SA_ERR_NOMEM;
        else if (c.out.n > ENGINE_GRAMMAR_MAX_TEXT) rc = sa_errf(SA_ERR_TOO_LARGE, msg, msg_len, "json_schema: the schema's grammar is too large");
    }
    if (rc) {
        free(c.out.p);
        return rc;
    }
    *gbnf = c.out.p;
    return 0;
}

int schema_to_gbnf_rules(json_t *schema, const char *prefix, char **rules, char *msg, size_t msg_len)
{
    *rules = NULL;
    struct conv c;
    uint32_t root;
    int rc = schema_rules(schema, prefix, &c, &root, msg, msg_len);
    if (!rc) {
        gbnf_printf(&c.out, "%s ::= %sn%u\n", prefix, prefix, root);
        if (c.out.oom)
            rc = SA_ERR_NOMEM;
        else if (c.out.n > ENGINE_GRAMMAR_MAX_TEXT)
            rc = sa_errf(SA_ERR_TOO_LARGE, msg, msg_len, "json_schema: the schema's grammar is too large");
    }
    if (rc) {
        free(c.out.p);
        return rc;
    }
    *rules = c.out.p;
    return 0;
}

const char *schema_json_lib_gbnf(void) { return JSON_LIB; }

int schema_response_format_gbnf(json_t *rf, char **gbnf, char *msg, size_t msg_len)
{
    *gbnf = NULL;
    if (!json_is_object(rf)) return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format: must be an object");
    json_t *type = json_object_get(rf, "type");
    const char *t = json_string_value(type);
    if (!t) return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.type: must be a string");
    const char *key;
    json_t *val;
    json_object_foreach(rf, key, val) if (strcmp(key, "type") && strcmp(key, "json_schema"))
        return sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "response_format.%.64s: not supported", key);
    if (!strcmp(t, "text") || !strcmp(t, "json_object")) {
        if (json_object_get(rf, "json_schema"))
            return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.json_schema: only with type json_schema");
        if (!strcmp(t, "text")) return 0;
        *gbnf = strdup(JSON_OBJECT_GBNF);
        return *gbnf ? 0 : SA_ERR_NOMEM;
    }
    if (strcmp(t, "json_schema"))
        return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len,
                       "response_format.type: '%.32s' is not one of text, json_object, json_schema", t);
    json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js)) return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.json_schema: must be an object");
    json_object_foreach(js, key, val)
    {
        if (!strcmp(key, "name")) {
            if (!json_is_string(val))
                return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.json_schema.name: must be a string");
        } else if (!strcmp(key, "strict")) {
            if (!json_is_boolean(val) && !json_is_null(val))
                return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.json_schema.strict: must be a boolean");
        } else if (!strcmp(key, "description")) {
            if (!json_is_string(val))
                return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len,
                               "response_format.json_schema.description: must be a string");
        } else if (strcmp(key, "schema")) {
            return sa_errf(SA_ERR_UNSUPPORTED, msg, msg_len, "response_format.json_schema.%.64s: not supported", key);
        }
    }
    if (!json_is_string(json_object_get(js, "name")))
        return sa_errf(SA_ERR_INVALID_ARG, msg, msg_len, "response_format.json_schema.name: required");
    json_t *schema = json_object_get(js, "schema");
    if (!schema) { /* OpenAI: no schema = any JSON object */
        *gbnf = strdup(JSON_OBJECT_GBNF);
        return *gbnf ? 0 : SA_ERR_NOMEM;
    }
    char inner[200];
    int rc = schema_to_gbnf(schema, gbnf, inner, sizeof inner);
    if (rc) return sa_errf(rc, msg, msg_len, "response_format.json_schema.schema: %s", inner);
    return 0;
}
