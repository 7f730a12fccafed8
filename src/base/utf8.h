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
 * its maximal ill-formed subpart (what gets one U+FFFD under Python's errors="replace"; -1..-3). */
long utf8_check(const unsigned char *s, size_t n);

/* The length of the longest well-formed prefix of s[0..n) (n when all of it is valid). */
size_t utf8_valid_prefix(const char *s, size_t n);

static inline int utf8_valid(const char *s, size_t n) {
    return utf8_valid_prefix(s, n) == n;
}

/* Decodes the character at s[0..n), n >= 1, whatever the bytes: *len gets its byte length (>= 1,
 * <= n); an ill-formed sequence decodes to U+FFFD over its maximal ill-formed subpart. */
uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *len);

#endif
