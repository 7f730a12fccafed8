/* sbuf.h — a growing byte buffer for the text and JSON the server writes. */
#ifndef LLMRT_SERVE_SBUF_H
#define LLMRT_SERVE_SBUF_H

#include <stdbool.h>
#include <stddef.h>

/* p[0..n) holds the bytes, followed by a NUL when p is not NULL; cap >= n + 1 once p is set.
 * A failed allocation sets oom and leaves the contents as they were (later appends do nothing). */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

bool sbuf_add(sbuf *b, const void *p, size_t n);
bool sbuf_adds(sbuf *b, const char *s);
bool sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void sbuf_consume(sbuf *b, size_t n);
void sbuf_free(sbuf *b);

#endif
