/*
 * unicode.h - the little UTF-8 machinery the tokenizers need.
 *
 * Character classes (\p{L}, \p{N}, \s, ...) are NOT here: the BPE
 * pre-tokenizers run their regexes with PCRE2 in UTF + UCP mode, which owns
 * the Unicode tables. This module only knows how UTF-8 is laid out, the GPT-2
 * byte <-> code point map, and a repairing decoder that turns any byte stream
 * into valid UTF-8 without ever splitting a character.
 *
 * All functions are pure or work on caller-owned state; any thread.
 */
#ifndef SA_UNICODE_H
#define SA_UNICODE_H

#include "utf8.h" /* UTF8_REPLACEMENT, utf8_seq_len, utf8_valid: the public part */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the character that starts at s[0..n) for splitting text into
 * symbols: the well-formed sequence length, or 1 for a byte that does not
 * start one (so invalid input is handled byte by byte). n must be > 0. */
size_t utf8_char_len(const unsigned char *s, size_t n);

/* Decode the well-formed sequence of length len (from utf8_seq_len). */
uint32_t utf8_decode(const unsigned char *s, size_t len);

/* Encode a code point <= U+10FFFF (not a surrogate); returns 1..4, 0 if invalid. */
size_t utf8_encode(uint32_t cp, unsigned char out[4]);

/* GPT-2 byte-level map: every byte value has a printable code point
 * (printable Latin-1 bytes map to themselves, the other 68 to U+0100..U+0143).
 * bpe_byte_to_utf8 writes the UTF-8 of byte b's code point (1 or 2 bytes).
 * bpe_cp_to_byte inverts the map: the byte, or -1 for a code point outside it. */
size_t bpe_byte_to_utf8(uint8_t b, unsigned char out[2]);
int bpe_cp_to_byte(uint32_t cp);

/*
 * Repairing UTF-8 decoder for byte streams.
 *
 * State is the bytes of a character that has started but not finished:
 * pending[0..*n_pending), at most 3 bytes. utf8_repair_byte feeds one byte and
 * writes to out whatever became final: a complete character, U+FFFD for an
 * ill-formed part (the "maximal subpart" rule of Unicode ch. 3: each maximal
 * prefix of a valid sequence becomes one U+FFFD), or both. At most 6 bytes
 * are written (U+FFFD and then a U+FFFD or an ASCII byte). utf8_repair_flush ends the stream: a pending partial character
 * becomes one U+FFFD (3 bytes) and the state is reset.
 *
 * Feeding the same bytes in any chunking yields the same output, which is
 * what lets a streaming detokenizer equal the whole-sequence decode.
 */
#define UTF8_REPAIR_MAX_OUT 6
size_t utf8_repair_byte(unsigned char pending[4], size_t *n_pending, unsigned char b,
                        unsigned char out[UTF8_REPAIR_MAX_OUT]);
size_t utf8_repair_flush(unsigned char pending[4], size_t *n_pending, unsigned char out[3]);

#endif
