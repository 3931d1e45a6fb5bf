/*
 * grammar.h - structured output: a GBNF-like grammar compiled once, an
 * incremental matcher over UTF-8 bytes, and the token mask of one step.
 *
 * Syntax (the subset of llama.cpp's GBNF that saserve accepts):
 *   rule    ::= name "::=" alts            (one rule per definition; `root` starts)
 *   alts    ::= seq ("|" seq)*
 *   seq     ::= (item ("*" | "+" | "?" | "{" m "}" | "{" m ",}" | "{" m "," n "}")?)*
 *                                          (an empty seq matches the empty string)
 *   item    ::= name | "literal" | [class] | [^class] | "(" alts ")" | "."
 * name: [a-zA-Z0-9_-]+. Literals and classes take the escapes \n \r \t \\ \"
 * \] \[ \- \/ \xHH \uHHHH \UHHHHHHHH; a class is a list of characters and
 * ranges a-z over Unicode code points; "." is any code point. Comments run
 * from '#' to the end of the line. Rules may be used before they are defined.
 *
 * Compilation checks, each an SA_ERR_INVALID_ARG whose message names the rule
 * and the byte position ("grammar: rule 'value' at byte 17: unterminated
 * string literal"): syntax, undefined or duplicate rules, a missing root,
 * left recursion (also through rules that can match nothing: it would make
 * the matcher loop), and rules that can never finish ("a ::= "x" a": every
 * output would be a dead end). Sizes are bounded (GRAMMAR_MAX_*): too big is
 * SA_ERR_TOO_LARGE; the parser recurses at most GRAMMAR_MAX_NESTING groups.
 *
 * Compiled form: rules are ids (0 = root); X*, X+, X? and groups become
 * generated rules (R ::= X R | "" for X*, with the tail position reused so a
 * repetition keeps the stack flat). Every rule is a list of alternatives, each
 * a list of elements (a character class or a rule reference) in one flat
 * array; a matcher position is an index into it.
 *
 * Matcher: a set of pushdown stacks of positions (Earley-like, as llama.cpp's
 * grammar sampler works), deduplicated, plus the partial UTF-8 character that
 * every stack shares. A byte is accepted when some stack's next element can
 * still match a code point beginning with the bytes read so far; a stack that
 * has matched all of root is "complete". The matcher accepts at most
 * GRAMMAR_MAX_STACKS stacks of at most GRAMMAR_MAX_DEPTH positions: a deeper
 * nesting is not accepted (so a JSON value nested deeper than that cannot be
 * produced) and more stacks than the limit is SA_ERR_TOO_LARGE.
 *
 * Mask: grammar_vocab_create renders every token to bytes once
 * (tok_token_to_bytes, control tokens render empty) and builds a byte trie of
 * them, in preorder. grammar_mask walks the trie depth first together with
 * the matcher, and a subtree is skipped as soon as no stack survives its
 * prefix. The states met on the way are interned by content and each
 * (state, byte) transition is computed once per call (at most
 * MASK_MAX_STATES states, else every node is stepped): inside a string body,
 * where almost every token is allowed, the walk is then a lookup per trie
 * node instead of a matcher step. Measured by test_grammar on the GPT-2
 * vocabulary (50257 tokens, 98024 nodes; 2 cores shared with other builds,
 * so the spread is load): 0.45-1.4 ms per step on average over JSON texts
 * against 19-88 ms for matching every token alone (about 40x); 0.01-0.08 ms
 * after a number's digit, 0.9-2.4 ms inside a string (50032 tokens allowed).
 * Tokens that render to no bytes are never allowed (they could loop forever);
 * end-of-generation tokens are the caller's: grammar_can_end says whether the
 * grammar allows the output to end here.
 *
 * Ownership and threads: a struct grammar is immutable after compilation and
 * reference counted (grammar_ref / grammar_unref, atomic: any thread). A
 * struct grammar_vocab is immutable and shared by every sequence. A struct
 * grammar_matcher belongs to one sequence and one thread at a time.
 */
#ifndef SA_GRAMMAR_H
#define SA_GRAMMAR_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRAMMAR_MAX_TEXT ENGINE_GRAMMAR_MAX_TEXT /* bytes of grammar text (engine.h) */
#define GRAMMAR_MAX_RULES 4096         /* rules, generated ones included */
#define GRAMMAR_MAX_ELEMS 65536        /* elements over all alternatives */
#define GRAMMAR_MAX_NESTING 64         /* nested groups in the text */
#define GRAMMAR_MAX_STACKS 1024        /* live matcher stacks */
#define GRAMMAR_MAX_DEPTH 256          /* positions on one stack */
#define GRAMMAR_MAX_REPEAT 1000        /* m and n of X{m,n} */

struct tokenizer;
struct grammar;
struct grammar_vocab;
struct grammar_matcher;

/* Compile len bytes of grammar text (no NUL needed). 0 and *out (refcount 1),
 * or SA_ERR_INVALID_ARG / SA_ERR_TOO_LARGE with msg naming the rule and byte
 * position, SA_ERR_NOMEM. Any thread. */
int grammar_compile(const char *text, size_t len, struct grammar **out, char *msg, size_t msg_len);
struct grammar *grammar_ref(struct grammar *g); /* returns g */
void grammar_unref(struct grammar *g);          /* frees at zero; accepts NULL */
uint32_t grammar_n_rules(const struct grammar *g); /* generated rules included */

/* Index the vocabulary (every id of t). The tokenizer may be destroyed after. */
int grammar_vocab_create(const struct tokenizer *t, struct grammar_vocab **out);
void grammar_vocab_destroy(struct grammar_vocab *v); /* accepts NULL */
int32_t grammar_vocab_n_tokens(const struct grammar_vocab *v);
uint32_t grammar_vocab_n_nodes(const struct grammar_vocab *v); /* trie nodes, root included */
/* The bytes token id renders to (*len set), or NULL out of range. Borrowed from v. */
const uint8_t *grammar_vocab_bytes(const struct grammar_vocab *v, int32_t id, uint32_t *len);

/* A matcher at the start of g (takes a reference on g). */
int grammar_matcher_create(struct grammar *g, struct grammar_matcher **out);
void grammar_matcher_destroy(struct grammar_matcher *m); /* accepts NULL */
/* Back to the start state. */
void grammar_matcher_reset(struct grammar_matcher *m);

/* Advance by n bytes. 0 when every byte was acceptable (the state moved), or
 * SA_ERR_INVALID_ARG when one was not (the state is then unchanged: all or
 * nothing), SA_ERR_TOO_LARGE when the stacks exceed GRAMMAR_MAX_STACKS. */
int grammar_accept_bytes(struct grammar_matcher *m, const uint8_t *bytes, size_t n);
/* Could the output end here (some stack complete, no character half read)? */
bool grammar_can_end(const struct grammar_matcher *m);
/* Must it end here (complete and no byte can follow)? */
bool grammar_is_done(const struct grammar_matcher *m);

/* The tokens of v whose bytes the matcher can accept next, as a bitmap:
 * bit (id % 32) of allowed[id / 32] (allowed has (n_tokens + 31) / 32 words;
 * all are written). Returns the number of allowed tokens (0: none; whether
 * the output may end is grammar_can_end), or SA_ERR_TOO_LARGE. Does not move
 * the matcher. */
int32_t grammar_mask(struct grammar_matcher *m, const struct grammar_vocab *v, uint32_t *allowed);

/* The same answer by matching every token alone (tests and the bench). */
int32_t grammar_mask_bruteforce(struct grammar_matcher *m, const struct grammar_vocab *v, uint32_t *allowed);

#endif
