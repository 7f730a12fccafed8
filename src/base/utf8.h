/* utf8.h — checking and decoding UTF-8 from untrusted bytes.
 *
 * Well-formed means Unicode's table 3-7: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF, no truncated sequences. Every function here reads only s[0..n).
 */
#ifndef LLMRT_BASE_UTF8_H
#define LLMRT_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The well-formed character at s[0..n), n >= 1: its byte length (1..4), or minus the length of
 * its maximal ill-formed subpart (what gets one U+FFFD under Python's errors="replace"; -1..-3).
 * Inline: the tokenizer's loader runs it on every non-ASCII character of a 33 MB file. */
static inline long utf8_check(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0; /* no overlongs */
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90; /* no overlongs */
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0, C1 or F5..FF */
    }
    for (size_t k = 1; k < need; k++) {
        if (k >= n) return -(long)k;
        unsigned char b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -(long)k;
    }
    return (long)need;
}

/* The length of the longest well-formed prefix of s[0..n) (n when all of it is valid). */
size_t utf8_valid_prefix(const char *s, size_t n);

/* Characters in s[0..n) as Python counts them after decoding with errors="replace" (each
 * maximal ill-formed subpart one U+FFFD): what string offsets of JSON APIs count. */
size_t utf8_chars(const char *s, size_t n);

static inline int utf8_valid(const char *s, size_t n) {
    return utf8_valid_prefix(s, n) == n;
}

/* Decodes the character at s[0..n), n >= 1, whatever the bytes: *len gets its byte length (>= 1,
 * <= n); an ill-formed sequence decodes to U+FFFD over its maximal ill-formed subpart. */
static inline uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    long k = utf8_check(s, n);
    if (k < 0) {
        *len = (size_t)-k;
        return 0xFFFD;
    }
    *len = (size_t)k;
    if (k == 2) return (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
    if (k == 3) return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    return (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
           (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

#endif
