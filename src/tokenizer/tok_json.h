/* tok_json.h — a small, fast, in-place JSON parser for tokenizer.json (a 33 MB file must load in
 * well under 500 ms; jansson takes ~460 ms just to parse Gemma 3's).
 *
 * The whole document becomes an array of nodes. Strings are unescaped in place inside the
 * caller's (writable) buffer and NUL-terminated there, so node strings live as long as the
 * buffer. Children of arrays and objects are linked through `next`; an object's members carry
 * their key in `key`/`key_len`. Index 0 is the root; `next == 0` ends a list.
 */
#ifndef LLMRT_TOKENIZER_TOK_JSON_H
#define LLMRT_TOKENIZER_TOK_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef enum tj_type { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ } tj_type;

typedef struct tj_node {
    uint8_t type;    /* tj_type */
    uint32_t len;    /* string bytes, or number of children */
    uint32_t next;   /* next sibling, 0 = last */
    uint32_t first;  /* first child (arrays, objects), 0 = none */
    uint32_t key_len;
    const char *key; /* member name inside an object, else NULL */
    union {
        const char *s; /* TJ_STR: NUL-terminated, may contain NULs (use len) */
        double num;    /* TJ_NUM */
    } v;
} tj_node;

typedef struct tj_doc {
    tj_node *nodes; /* [n] */
    size_t n, cap;
} tj_doc;

/* Parses buf[0..len) in place (buf must be writable and stay alive). On failure the message
 * names `what` (the file) with line and column. */
llmrt_status tj_parse(tj_doc *d, char *buf, size_t len, const char *what);
void tj_free(tj_doc *d);

/* The member `key` of object node `obj`, or NULL (also NULL if obj is not an object). */
const tj_node *tj_get(const tj_doc *d, const tj_node *obj, const char *key);
/* Child navigation: first child / next sibling, NULL at the end. */
const tj_node *tj_first(const tj_doc *d, const tj_node *n);
const tj_node *tj_next(const tj_doc *d, const tj_node *n);

#endif
