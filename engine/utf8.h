/*
 * utf8.h - UTF-8 well-formedness (implemented in unicode.c).
 *
 * Public: the one piece of the engine's text machinery the server needs for
 * itself. JSON and the Prometheus text format must be valid UTF-8, and the
 * server writes model-made and client-made bytes into both (server/response.c,
 * server/metrics.c), so it checks and repairs them with the same definition of
 * "well-formed" the tokenizers use. The rest of unicode.h (the GPT-2 byte map,
 * the streaming repair decoder) is the tokenizers' and stays internal.
 *
 * Pure functions; any thread.
 */
#ifndef SA_UTF8_H
#define SA_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), or 0 when the
 * bytes there are not one (bad lead byte, bad or missing continuation byte,
 * overlong form, surrogate, > U+10FFFF). n == 0 gives 0. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

/* True if s[0..n) is entirely well-formed UTF-8. */
bool utf8_valid(const unsigned char *s, size_t n);

#endif
