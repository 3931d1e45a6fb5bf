/*
 * unicode.c - UTF-8 layout, the GPT-2 byte map and the repairing decoder.
 * See unicode.h for the contracts.
 */
#include "engine/unicode.h"

#include <string.h>

/* Sequence length announced by a lead byte: 1..4, or 0 for a byte that can
 * never start a well-formed sequence (continuation bytes, C0, C1, F5..FF). */
static size_t lead_len(unsigned char b)
{
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) return 3;
    if (b < 0xF5) return 4;
    return 0;
}

/* Whether b may be byte number pos (1-based after the lead) of a sequence
 * starting with lead. The second byte has lead-specific bounds that rule out
 * overlong forms, surrogates and code points above U+10FFFF. */
static bool cont_ok(unsigned char lead, size_t pos, unsigned char b)
{
    unsigned char lo = 0x80, hi = 0xBF;
    if (pos == 1) {
        if (lead == 0xE0) lo = 0xA0;
        else if (lead == 0xED) hi = 0x9F;
        else if (lead == 0xF0) lo = 0x90;
        else if (lead == 0xF4) hi = 0x8F;
    }
    return b >= lo && b <= hi;
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    size_t len = lead_len(s[0]);
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if (!cont_ok(s[0], i, s[i])) return 0;
    return len;
}

size_t utf8_char_len(const unsigned char *s, size_t n)
{
    size_t len = utf8_seq_len(s, n);
    return len ? len : 1;
}

uint32_t utf8_decode(const unsigned char *s, size_t len)
{
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    case 4:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    default: return 0xFFFD;
    }
}

size_t utf8_encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (unsigned char)(0xF0 | (cp >> 18));
        out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_seq_len(s + i, n - i);
        if (!len) return false;
        i += len;
    }
    return true;
}

/* ---- GPT-2 byte-level map ----
 * Bytes that are printable Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF)
 * keep their value; the other 68 bytes, in increasing order, take the code
 * points U+0100.. : 0x00-0x20 -> U+0100-U+0120, 0x7F-0xA0 -> U+0121-U+0142,
 * 0xAD -> U+0143. This is the bytes_to_unicode() table of the GPT-2 encoder
 * that every byte-level BPE vocabulary is written in. */
static uint32_t byte_to_cp(uint8_t b)
{
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121 + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 0x143;
    return b;
}

size_t bpe_byte_to_utf8(uint8_t b, unsigned char out[2])
{
    uint32_t cp = byte_to_cp(b); /* < U+0144: one or two bytes */
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
}

int bpe_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100) return (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) ? -1 : (int)cp;
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}

/* ---- repairing decoder ---- */

static size_t put_replacement(unsigned char *out)
{
    memcpy(out, UTF8_REPLACEMENT, 3);
    return 3;
}

size_t utf8_repair_byte(unsigned char pending[4], size_t *n_pending, unsigned char b,
                        unsigned char out[UTF8_REPAIR_MAX_OUT])
{
    size_t k = 0;
    if (*n_pending > 0) {
        if (cont_ok(pending[0], *n_pending, b)) {
            pending[(*n_pending)++] = b;
            if (*n_pending == lead_len(pending[0])) {
                memcpy(out, pending, *n_pending);
                k = *n_pending;
                *n_pending = 0;
            }
            return k;
        }
        /* The pending bytes are a maximal subpart: one U+FFFD, then b starts over. */
        k += put_replacement(out);
        *n_pending = 0;
    }
    size_t len = lead_len(b);
    if (len == 1) {
        out[k++] = b;
    } else if (len == 0) {
        k += put_replacement(out + k);
    } else {
        pending[0] = b;
        *n_pending = 1;
    }
    return k;
}

size_t utf8_repair_flush(unsigned char pending[4], size_t *n_pending, unsigned char out[3])
{
    (void)pending; /* the pending bytes are dropped, whatever they are */
    if (*n_pending == 0) return 0;
    *n_pending = 0;
    return put_replacement(out);
}
