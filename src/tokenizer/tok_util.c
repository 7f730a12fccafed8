/* tok_util.c — buffers, UTF-8 helpers and the GPT-2 byte-level alphabet for the tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

int tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (tok_buf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int tok_idbuf_push(tok_idbuf *b, int32_t id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = id;
    return 0;
}

size_t tok_utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

long tok_utf8_sanitize(const char *s, size_t n, tok_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    long repl = 0;
    size_t i = 0, run = 0;
    if (tok_buf_reserve(out, n + 1)) return -1;
    while (i < n) {
        /* copy ASCII fast */
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        long k = utf8_check(u + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (tok_buf_put(out, s + run, i - run)) return -1;
        if (tok_buf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        repl++;
        i += (size_t)(-k);
        run = i;
    }
    if (tok_buf_put(out, s + run, n - run)) return -1;
    return repl;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    return utf8_valid_prefix(s, n);
}

/* GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 on. */
const uint16_t tok_byte_to_cp[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274,
    275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 33,  34,  35,  36,  37,
    38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51,  52,  53,  54,  55,  56,
    57,  58,  59,  60,  61,  62,  63,  64,  65,  66,  67,  68,  69,  70,  71,  72,  73,  74,  75,
    76,  77,  78,  79,  80,  81,  82,  83,  84,  85,  86,  87,  88,  89,  90,  91,  92,  93,  94,
    95,  96,  97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113,
    114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289, 290, 291, 292, 293, 294,
    295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313,
    314, 315, 316, 317, 318, 319, 320, 321, 322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170,
    171, 172, 323, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189,
    190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208,
    209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227,
    228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246,
    247, 248, 249, 250, 251, 252, 253, 254, 255};

/* The inverse for U+0100..U+0143: the bytes that are not printable. */
static const uint8_t cp_to_byte_hi[68] = {
    0,   1,   2,   3,   4,   5,   6,   7,   8,   9,   10,  11,  12,  13,  14,  15,  16,
    17,  18,  19,  20,  21,  22,  23,  24,  25,  26,  27,  28,  29,  30,  31,  32,  127,
    128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144,
    145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173};

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) {
        if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
            return (int)cp;
        return -1;
    }
    return cp < 0x144 ? cp_to_byte_hi[cp - 0x100] : -1;
}

llmrt_status tokenizer_utf8_repair(const char *s, size_t n, char **out, size_t *out_len,
                                   size_t *n_replaced) {
    tok_buf b = {0};
    long r = tok_utf8_sanitize(s, n, &b);
    if (r < 0 || tok_buf_reserve(&b, 1)) {
        tok_buf_free(&b);
        return err_set(LLMRT_ERR_NOMEM, "out of memory repairing UTF-8");
    }
    b.p[b.n] = 0;
    *out = b.p;
    *out_len = b.n;
    if (n_replaced) *n_replaced = (size_t)r;
    return LLMRT_OK;
}
