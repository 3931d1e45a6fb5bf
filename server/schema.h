/*
 * schema.h - OpenAI response_format (json_object, json_schema) to the GBNF
 * text that engine_grammar_compile takes (engine/grammar.h has the syntax).
 *
 * Why here and why this name: the schema arrives as a parsed jansson value,
 * and jansson stays out of the engine (STYLE.md: the engine has no JSON), so
 * the converter lives in the server beside request.c and hands the engine
 * plain grammar text. The module is "schema", not "json_schema", because
 * json_ is jansson's prefix.
 *
 * Supported JSON Schema subset (anything else is SA_ERR_UNSUPPORTED with a
 * message naming the keyword and where it is: "json_schema: 'pattern' is not
 * supported (at #/properties/name)"; never silently ignored):
 *   type (a name or an array of names): object, array, string, number,
 *     integer, boolean, null;
 *   object: properties (generated in the order given), required (must name
 *     properties), additionalProperties false / true / absent (only the
 *     declared properties are generated: a subset of what the schema allows);
 *   array: items, minItems, maxItems (<= SCHEMA_MAX_ITEMS);
 *   string: minLength, maxLength (<= SCHEMA_MAX_LENGTH);
 *   enum, const (any JSON values, generated in compact form); anyOf / oneOf of
 *     supported schemas (oneOf is generated as anyOf: branches that overlap can
 *     yield a value matching two of them); $ref to "#", "#/$defs/<name>" or
 *     "#/definitions/<name>" (recursion allowed when it can end; the grammar
 *     compiler refuses a recursion that cannot);
 *   annotations, accepted and unused: title, description, $schema, $id,
 *     $comment, default, examples, deprecated, readOnly, writeOnly, $defs,
 *     definitions; `true` and {} mean any JSON value.
 * Numbers are generated with at most 16 integer digits, 16 decimals and a
 * 3-digit exponent, and whitespace between tokens is one space, or one newline
 * and at most 8 spaces or tabs, so a model cannot loop on digits or spaces; string bodies have no
 * bound unless maxLength. The output carries no whitespace before or after
 * the top-level value, so the grammar is finished when the value closes.
 *
 * Threading: pure functions; any thread. The returned text is malloc'd
 * (caller frees).
 */
#ifndef SA_SCHEMA_H
#define SA_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SCHEMA_MAX_DEPTH 32     /* nested schemas */
#define SCHEMA_MAX_ITEMS 64     /* maxItems / minItems that are generated exactly */
#define SCHEMA_MAX_LENGTH 256   /* maxLength / minLength */

/* A grammar for the JSON Schema `schema`. 0 and *gbnf, or SA_ERR_UNSUPPORTED /
 * SA_ERR_INVALID_ARG (malformed schema) / SA_ERR_TOO_LARGE with msg, SA_ERR_NOMEM. */
int schema_to_gbnf(json_t *schema, char **gbnf, char *msg, size_t msg_len);

/* The rules alone, for a grammar that embeds several schemas (tool calls):
 * every rule name starts with prefix ([a-zA-Z0-9-]+, at most 16 bytes; it must
 * not start with "json-" nor be "ws"), the schema's value is the rule named
 * prefix itself, and the rules refer to the shared ones of
 * schema_json_lib_gbnf() (ws, json-value, json-string, ...), which the caller
 * appends once. Errors as schema_to_gbnf. */
int schema_to_gbnf_rules(json_t *schema, const char *prefix, char **rules, char *msg, size_t msg_len);
/* The shared rules (ws, json-*), no root. Static text. */
const char *schema_json_lib_gbnf(void);

/* Building grammar text (also tools.c's call grammars). A zeroed gbnf_buf is
 * empty; p is NUL-terminated and malloc'd (the caller frees it) and stays NULL
 * until something is put; after an allocation failure oom is set and every
 * later put does nothing. */
struct gbnf_buf {
    char *p;
    size_t n, cap;
    bool oom;
};
void gbnf_put(struct gbnf_buf *b, const char *s, size_t n);
void gbnf_puts(struct gbnf_buf *b, const char *s);
void gbnf_printf(struct gbnf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A GBNF literal matching exactly the bytes s[0..n) (quotes and backslashes
 * escaped, control bytes as \xNN). */
void gbnf_literal(struct gbnf_buf *b, const char *s, size_t n);

/* The grammar of any JSON object (response_format json_object). Static text. */
const char *schema_json_object_gbnf(void);

/* A whole OpenAI response_format value: {"type":"text"} gives 0 and *gbnf =
 * NULL (no constraint); {"type":"json_object"}; {"type":"json_schema",
 * "json_schema":{"name":..., "schema":{...}, "strict":..., "description":...}}.
 * Errors name the field ("response_format.json_schema.schema: ..."). */
int schema_response_format_gbnf(json_t *response_format, char **gbnf, char *msg, size_t msg_len);

#endif
