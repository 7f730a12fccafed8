/* utf8.c — checking and decoding UTF-8 from untrusted bytes (see utf8.h). */
#include "base/utf8.h"

size_t utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        long k = utf8_check(u + i, n - i);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return n;
}

size_t utf8_chars(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0, len; i < n; i += len, chars++)
        utf8_decode(u + i, n - i, &len);
    return chars;
}
