/* safetensors.c — parsing and validating .safetensors headers, single files and shard sets.
 *
 * A safetensors file is: u64 little-endian header length N, N bytes of JSON, then the data
 * area. The JSON object maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the data area), plus an optional "__metadata__" object of
 * strings. Everything in the header is untrusted: each field is checked before use, sizes are
 * computed with overflow checks, and byte ranges are checked against the data area and against
 * each other. Gaps between ranges are allowed (nothing reads them); bytes after the last range
 * are not (the reference reader refuses them: "incomplete metadata, file not fully covered").
 *
 * The header is copied out of the file with pread (a file truncated meanwhile is an error, not
 * a SIGBUS) and read by a streaming parser written for this one shape of JSON: strings are
 * unescaped in place in that copy, so tensor names point into it, and nothing else is kept.
 * Time and memory are linear in the header (plus n log n for sorting names and byte ranges):
 * a 70 MB header of 10^6 tensors opens in about a second with ~200 MB, where a general JSON
 * tree took 8 s and 1.2 GB. Headers above 100 MB are refused, as the reference reader does.
 */
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/utf8.h"
#include "io/json_util.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* An index names each tensor once: real ones are kilobytes to a few megabytes. */
#define ST_MAX_INDEX ((size_t)64 << 20)
#define ST_MAX_DEPTH 64 /* nesting of values that are skipped (unknown fields) */
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* One opened file (or borrowed memory image). Tensors' data point into map, their names into
 * header (the header JSON, unescaped in place). */
typedef struct st_file {
    char *path;          /* as opened, or the name given to safetensors_open_memory */
    file_map map;        /* the file (mapping + kept descriptor), or a memory view */
    char *header;        /* [header length + 1] owned copy of the header */
    uint64_t data_start; /* 8 + header length: file offset of the data area */
} st_file;

/* Owns every file, path and header it refers to. After a successful open the tensors are
 * sorted by name with no duplicates, and each one's data lies inside its file's data area. */
struct st_model {
    char *source;   /* the directory or file the model was opened from */
    st_file *files; /* [n_files] */
    size_t n_files;
    st_tensor *tensors; /* [n_tensors], sorted by name once opening is done */
    size_t n_tensors, cap_tensors;
};

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                              */

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "[2, 3]" into buf, ending in "..." when it does not fit. */
static const char *shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t w = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && w < n; i++)
        w += (size_t)snprintf(buf + w, n - w, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (w < n) w += (size_t)snprintf(buf + w, n - w, "]");
    if (w >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

/* Known safetensors dtypes that llmrt does not read. */
static const char *const unsupported_dtypes[] = {
    "F64",  "I16", "I8",      "U64",     "U32",     "U16",     "U8",
    "BOOL", "C64", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

static int str_is(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static llmrt_status parse_dtype(const char *s, size_t n, dtype *dt, const char *file,
                                const char *tensor) {
    if (str_is(s, n, "F32"))
        *dt = DT_F32;
    else if (str_is(s, n, "F16"))
        *dt = DT_F16;
    else if (str_is(s, n, "BF16"))
        *dt = DT_BF16;
    else if (str_is(s, n, "F8_E4M3")) /* pre-quantized checkpoints: the loader pairs it with its
                                          scale tensor */
        *dt = DT_F8E4M3;
    else if (str_is(s, n, "I32")) /* INT4 checkpoints: packed codes, g_idx; read as stored */
        *dt = DT_I32;
    else if (str_is(s, n, "I64")) /* compressed-tensors' weight_shape */
        *dt = DT_I64;
    else {
        for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof *unsupported_dtypes; i++)
            if (str_is(s, n, unsupported_dtypes[i]))
                return err_set(LLMRT_ERR_UNSUPPORTED,
                               "%s: tensor '%s' has dtype %s; llmrt reads F32, F16, BF16, F8_E4M3, "
                               "I32 and I64",
                               file, tensor, unsupported_dtypes[i]);
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%.40s'", file, tensor,
                       s);
    }
    return LLMRT_OK;
}

static llmrt_status push_tensor(st_model *m, const st_tensor *t) {
    if (m->n_tensors == m->cap_tensors) {
        size_t cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        st_tensor *p = realloc(m->tensors, cap * sizeof *p);
        if (!p) return err_set(LLMRT_ERR_NOMEM, "out of memory for %zu tensors", cap);
        m->tensors = p;
        m->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = *t;
    return LLMRT_OK;
}

static llmrt_status add_file(st_model *m, const char *path, size_t *idx) {
    st_file *p = realloc(m->files, (m->n_files + 1) * sizeof *p);
    if (!p) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    m->files = p;
    st_file *f = &m->files[m->n_files];
    memset(f, 0, sizeof *f);
    f->map = FILE_MAP_EMPTY;
    f->path = str_dup(path);
    if (!f->path) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    *idx = m->n_files++;
    return LLMRT_OK;
}

static st_model *model_new(const char *source) {
    st_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->source = str_dup(source);
    if (!m->source) {
        free(m);
        return NULL;
    }
    return m;
}

void safetensors_free(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_files; i++) {
        file_map_close(&m->files[i].map);
        free(m->files[i].header);
        free(m->files[i].path);
    }
    free(m->tensors);
    free(m->files);
    free(m->source);
    free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* the header parser                                                                          */

/* The JSON value kinds, named as json_type_name names them in messages. */
typedef enum hkind { HK_STRING, HK_INTEGER, HK_REAL, HK_OBJECT, HK_ARRAY, HK_BOOL, HK_NULL } hkind;
static const char *const hkind_name[] = {"string", "integer", "real", "object",
                                         "array",  "boolean", "null"};

/* A cursor over the writable header copy [start, end). line/line_start follow the newlines
 * passed over (raw newlines can only be whitespace), for the column of an error. */
typedef struct hparser {
    char *p, *end, *start;
    const char *file;
    size_t line;
    const char *line_start;
} hparser;

static llmrt_status hp_fail(const hparser *h, const char *at, const char *what) {
    return err_set(LLMRT_ERR_FORMAT, "%s: header: invalid JSON at line %zu, column %zu: %s",
                   h->file, h->line, (size_t)(at - h->line_start) + 1, what);
}

static void hp_ws(hparser *h) {
    char *p = h->p;
    while (p < h->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        if (*p == '\n') {
            h->line++;
            h->line_start = p + 1;
        }
        p++;
    }
    h->p = p;
}

/* Skips whitespace and expects character c. */
static llmrt_status hp_expect(hparser *h, char c, const char *what) {
    hp_ws(h);
    if (h->p >= h->end || *h->p != c) return hp_fail(h, h->p, what);
    h->p++;
    return LLMRT_OK;
}

/* Scans the number at h->p (JSON grammar) without consuming it: its end, whether it has a
 * fraction or exponent, its sign. NULL when it is not a valid number. */
static const char *scan_number(const hparser *h, int *is_real, int *neg) {
    const char *p = h->p, *e = h->end;
    *is_real = 0;
    *neg = 0;
    if (p < e && *p == '-') {
        *neg = 1;
        p++;
    }
    if (p >= e || *p < '0' || *p > '9') return NULL;
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    if (p < e && *p == '.') {
        *is_real = 1;
        p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *is_real = 1;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

/* The kind of the value that starts here (after whitespace), without consuming it. */
static llmrt_status hp_peek(hparser *h, hkind *k) {
    hp_ws(h);
    if (h->p >= h->end) return hp_fail(h, h->p, "unexpected end of the header");
    switch (*h->p) {
    case '"':
        *k = HK_STRING;
        return LLMRT_OK;
    case '{':
        *k = HK_OBJECT;
        return LLMRT_OK;
    case '[':
        *k = HK_ARRAY;
        return LLMRT_OK;
    case 't':
    case 'f':
        *k = HK_BOOL;
        return LLMRT_OK;
    case 'n':
        *k = HK_NULL;
        return LLMRT_OK;
    default: {
        int real, neg;
        if (!scan_number(h, &real, &neg)) return hp_fail(h, h->p, "invalid value");
        *k = real ? HK_REAL : HK_INTEGER;
        return LLMRT_OK;
    }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(const char *s, const char *end, unsigned *out) {
    if (end - s < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hexval(s[i]);
        if (d < 0) return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Reads the string at h->p (at its quote), unescaping it in place and NUL-terminating it there.
 * The text must be well-formed UTF-8 and escapes must be valid (no lone surrogates), as in the
 * reference reader. *has_nul is set when it contains U+0000. */
static llmrt_status hp_string(hparser *h, const char **out, size_t *len, int *has_nul) {
    char *p = h->p + 1, *w = p;
    const char *e = h->end;
    *has_nul = 0;
    while (1) {
        /* the common run: printable ASCII */
        while (p < e && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 &&
               (unsigned char)*p < 0x80)
            *w++ = *p++;
        if (p >= e) return hp_fail(h, p, "unterminated string");
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) return hp_fail(h, p, "control character in a string");
        if (c >= 0x80) {
            long k = utf8_check((const unsigned char *)p, (size_t)(e - p));
            if (k <= 0) return hp_fail(h, p, "invalid UTF-8 in a string");
            memmove(w, p, (size_t)k);
            w += k;
            p += k;
            continue;
        }
        /* an escape */
        if (p + 1 >= e) return hp_fail(h, p, "unterminated string");
        char x = p[1];
        static const char esc[] = "\"\\/bfnrt", repl[] = "\"\\/\b\f\n\r\t";
        const char *simple = x ? strchr(esc, x) : NULL;
        if (simple) {
            *w++ = repl[simple - esc];
            p += 2;
            continue;
        }
        if (x != 'u') return hp_fail(h, p, "invalid escape in a string");
        unsigned cp, lo;
        if (read_hex4(p + 2, e, &cp)) return hp_fail(h, p, "invalid \\u escape");
        p += 6;
        if (cp >= 0xDC00 && cp < 0xE000) return hp_fail(h, p - 6, "lone low surrogate in \\u");
        if (cp >= 0xD800 && cp < 0xDC00) {
            if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || read_hex4(p + 2, e, &lo) ||
                lo < 0xDC00 || lo >= 0xE000)
                return hp_fail(h, p - 6, "lone high surrogate in \\u");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        if (cp == 0) *has_nul = 1;
        /* the UTF-8 form is never longer than the escape (6 or 12 bytes), so w stays behind p */
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xC0 | cp >> 6);
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xE0 | cp >> 12);
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *w++ = (char)(0xF0 | cp >> 18);
            *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    /* p is at the closing quote and w <= p: the NUL fits */
    *w = '\0';
    *out = h->p + 1;
    *len = (size_t)(w - (h->p + 1));
    h->p = p + 1;
    return LLMRT_OK;
}

/* Reads a number. *ok is 1 when it is an integer >= 0 (with its value in *v); integers beyond
 * int64 are refused as JSON errors, as jansson and most readers do. */
static llmrt_status hp_number(hparser *h, uint64_t *v, int *ok) {
    int real, neg;
    const char *end = scan_number(h, &real, &neg);
    if (!end) return hp_fail(h, h->p, "invalid number");
    *ok = 0;
    *v = 0;
    if (!real) {
        uint64_t x = 0, limit = (uint64_t)INT64_MAX + (uint64_t)neg;
        for (const char *q = h->p + neg; q < end; q++) {
            unsigned d = (unsigned)(*q - '0');
            if (x > (limit - d) / 10) return hp_fail(h, h->p, "integer too big");
            x = x * 10 + d;
        }
        *v = x;
        *ok = !neg || x == 0;
    }
    h->p = (char *)end;
    return LLMRT_OK;
}

/* Skips one value of any kind. */
static llmrt_status hp_skip(hparser *h, int depth) {
    hkind k;
    TRY(hp_peek(h, &k));
    if (depth > ST_MAX_DEPTH) return hp_fail(h, h->p, "nesting too deep");
    switch (k) {
    case HK_STRING: {
        const char *s;
        size_t n;
        int nul;
        return hp_string(h, &s, &n, &nul);
    }
    case HK_INTEGER:
    case HK_REAL: {
        uint64_t v;
        int ok;
        return hp_number(h, &v, &ok);
    }
    case HK_BOOL:
    case HK_NULL: {
        const char *word = *h->p == 't' ? "true" : *h->p == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        if ((size_t)(h->end - h->p) < wl || memcmp(h->p, word, wl) != 0)
            return hp_fail(h, h->p, "invalid value");
        h->p += wl;
        return LLMRT_OK;
    }
    case HK_OBJECT:
    case HK_ARRAY: {
        char close = k == HK_OBJECT ? '}' : ']';
        h->p++;
        hp_ws(h);
        if (h->p < h->end && *h->p == close) {
            h->p++;
            return LLMRT_OK;
        }
        while (1) {
            if (k == HK_OBJECT) {
                const char *s;
                size_t n;
                int nul;
                hp_ws(h);
                if (h->p >= h->end || *h->p != '"') return hp_fail(h, h->p, "expected a key");
                TRY(hp_string(h, &s, &n, &nul));
                TRY(hp_expect(h, ':', "expected ':'"));
            }
            TRY(hp_skip(h, depth + 1));
            hp_ws(h);
            if (h->p < h->end && *h->p == ',') {
                h->p++;
                continue;
            }
            if (h->p < h->end && *h->p == close) {
                h->p++;
                return LLMRT_OK;
            }
            return hp_fail(h, h->p, k == HK_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    }
    return LLMRT_OK;
}

/* Iterates the members of an object or elements of an array: call with *first = 1 after the
 * opening bracket was consumed; returns *more = 0 at the closing bracket. */
static llmrt_status hp_next(hparser *h, char close, int *first, int *more) {
    hp_ws(h);
    if (h->p < h->end && *h->p == close && *first) {
        h->p++;
        *more = 0;
        return LLMRT_OK;
    }
    if (!*first) {
        if (h->p < h->end && *h->p == close) {
            h->p++;
            *more = 0;
            return LLMRT_OK;
        }
        if (h->p >= h->end || *h->p != ',')
            return hp_fail(h, h->p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        h->p++;
    }
    *first = 0;
    *more = 1;
    return LLMRT_OK;
}

/* Reads the key of an object member and its ':'. */
static llmrt_status hp_key(hparser *h, const char **key, size_t *len, int *has_nul) {
    hp_ws(h);
    if (h->p >= h->end || *h->p != '"') return hp_fail(h, h->p, "expected a string key");
    TRY(hp_string(h, key, len, has_nul));
    return hp_expect(h, ':', "expected ':'");
}

/* ------------------------------------------------------------------------------------------ */
/* one file's header                                                                          */

enum { F_DTYPE, F_SHAPE, F_OFFSETS };
static const char *const field_names[] = {"dtype", "shape", "data_offsets"};

/* A tensor entry as written, before validation. */
typedef struct raw_entry {
    int have[3];       /* each field seen */
    hkind kind[3];     /* its JSON kind */
    const char *dtype; /* the dtype string (kind string) */
    size_t dtype_len;  /* bytes of dtype */
    size_t n_shape;    /* shape elements (all counted, ST_MAX_DIMS + 1 kept) */
    uint64_t shape[ST_MAX_DIMS + 1];
    int shape_ok[ST_MAX_DIMS + 1]; /* element is a non-negative integer */
    size_t n_off;                  /* data_offsets elements */
    uint64_t off[2];
    int off_ok; /* every element is a non-negative integer */
} raw_entry;

/* Reads an array of numbers into vals/ok (at most cap kept), counting all elements; elements
 * that are not numbers are skipped and marked not ok. */
static llmrt_status read_uint_array(hparser *h, uint64_t *vals, int *ok, size_t cap, size_t *n) {
    h->p++; /* '[' */
    int first = 1, more;
    *n = 0;
    while (1) {
        TRY(hp_next(h, ']', &first, &more));
        if (!more) return LLMRT_OK;
        hkind k;
        TRY(hp_peek(h, &k));
        uint64_t v = 0;
        int good = 0;
        if (k == HK_INTEGER || k == HK_REAL)
            TRY(hp_number(h, &v, &good));
        else
            TRY(hp_skip(h, 1));
        if (*n < cap) {
            vals[*n] = v;
            ok[*n] = good;
        }
        (*n)++;
    }
}

/* Reads the value of tensor `name`'s entry into *r (syntax only; validate_entry checks it). */
static llmrt_status read_entry(hparser *h, const char *name, raw_entry *r) {
    memset(r, 0, sizeof *r);
    hkind k;
    TRY(hp_peek(h, &k));
    if (k != HK_OBJECT)
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': entry must be an object, got %s",
                       h->file, name, hkind_name[k]);
    h->p++;
    int first = 1, more;
    while (1) {
        TRY(hp_next(h, '}', &first, &more));
        if (!more) return LLMRT_OK;
        const char *key;
        size_t kl;
        int nul;
        TRY(hp_key(h, &key, &kl, &nul));
        int f = -1;
        for (int i = 0; i < 3; i++)
            if (!nul && str_is(key, kl, field_names[i])) f = i;
        if (f < 0) { /* other fields are allowed and ignored, as by the reference reader */
            TRY(hp_skip(h, 1));
            continue;
        }
        if (r->have[f])
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", h->file,
                           name, field_names[f]);
        r->have[f] = 1;
        TRY(hp_peek(h, &r->kind[f]));
        if (f == F_DTYPE && r->kind[f] == HK_STRING) {
            int dnul;
            TRY(hp_string(h, &r->dtype, &r->dtype_len, &dnul));
        } else if (f == F_SHAPE && r->kind[f] == HK_ARRAY) {
            TRY(read_uint_array(h, r->shape, r->shape_ok, ST_MAX_DIMS + 1, &r->n_shape));
        } else if (f == F_OFFSETS && r->kind[f] == HK_ARRAY) {
            int ok[2] = {0, 0};
            TRY(read_uint_array(h, r->off, ok, 2, &r->n_off));
            r->off_ok = ok[0] && ok[1];
        } else {
            TRY(hp_skip(h, 1));
        }
    }
}

/* Validates one entry and fills t (name, file fields not yet set). data/size: the data area. */
static llmrt_status validate_entry(st_tensor *t, const char *name, const raw_entry *r,
                                   const unsigned char *data, size_t size, const char *file) {
    for (int i = 0; i < 3; i++)
        if (!r->have[i])
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field '%s' is missing", file, name,
                           field_names[i]);
    if (r->kind[F_DTYPE] != HK_STRING)
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field 'dtype' must be a string, got %s",
                       file, name, hkind_name[r->kind[F_DTYPE]]);
    if (r->kind[F_SHAPE] != HK_ARRAY)
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field 'shape' must be an array, got %s",
                       file, name, hkind_name[r->kind[F_SHAPE]]);
    if (r->kind[F_OFFSETS] != HK_ARRAY || r->n_off != 2)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': field 'data_offsets' must be an array [begin, end]", file,
                       name);

    /* shape: non-negative integers; the product of the non-zero ones stays below 2^60, so
     * that numel * dtype_size cannot overflow */
    if (r->n_shape > ST_MAX_DIMS)
        return err_set(LLMRT_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; at most %d",
                       file, name, r->n_shape, ST_MAX_DIMS);
    t->n_dims = (int)r->n_shape;
    memset(t->shape, 0, sizeof t->shape);
    uint64_t nonzero = 1;
    int has_zero = 0;
    for (size_t i = 0; i < r->n_shape; i++) {
        uint64_t v = r->shape[i];
        if (!r->shape_ok[i])
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] must be a non-negative integer", file, name,
                           i);
        if (v && nonzero > ((uint64_t)1 << 60) / v)
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': shape is too large (overflow)", file,
                           name);
        t->shape[i] = (int64_t)v;
        if (v)
            nonzero *= v;
        else
            has_zero = 1;
    }
    uint64_t numel = has_zero ? 0 : nonzero;

    TRY(parse_dtype(r->dtype, r->dtype_len, &t->dt, file, name));

    if (!r->off_ok)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be non-negative integers", file, name);
    uint64_t begin = r->off[0], end = r->off[1];
    if (begin > end)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end",
                       file, name, begin, end);
    if (end > size)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the data area (%zu bytes; file truncated?)",
                       file, name, begin, end, size);
    /* numel <= 2^60 and dtype_size <= 4: this product cannot overflow */
    uint64_t want = numel * dtype_size(t->dt);
    if (want != end - begin) {
        char sb[128];
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': shape %s of %s needs %" PRIu64
                       " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
                       file, name, shape_str(sb, sizeof sb, t->n_dims, t->shape), dtype_name(t->dt),
                       want, begin, end, end - begin);
    }
    /* data is NULL only for a file with an empty data area, where begin == end == 0 */
    t->data = data ? data + begin : NULL;
    t->nbytes = (size_t)want;
    t->file_offset = begin; /* relative for now: parse_header adds the data area's start */
    return LLMRT_OK;
}

static llmrt_status read_metadata(hparser *h) {
    hkind k;
    TRY(hp_peek(h, &k));
    if (k != HK_OBJECT)
        return err_set(LLMRT_ERR_FORMAT, "%s: __metadata__ must be an object, got %s", h->file,
                       hkind_name[k]);
    h->p++;
    int first = 1, more;
    while (1) {
        TRY(hp_next(h, '}', &first, &more));
        if (!more) return LLMRT_OK;
        const char *key;
        size_t kl;
        int nul;
        TRY(hp_key(h, &key, &kl, &nul));
        TRY(hp_peek(h, &k));
        if (k != HK_STRING)
            return err_set(LLMRT_ERR_FORMAT, "%s: __metadata__ field '%s' must be a string, got %s",
                           h->file, key, hkind_name[k]);
        TRY(hp_skip(h, 1));
    }
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_by_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->file_offset != y->file_offset) return x->file_offset < y->file_offset ? -1 : 1;
    return 0;
}

/* Checks that no two non-empty tensors of one file share bytes: t[0..n) are that file's. */
static llmrt_status check_overlaps(const st_tensor *t, size_t n, uint64_t data_start,
                                   const char *file) {
    if (n < 2) return LLMRT_OK;
    const st_tensor **v = malloc(n * sizeof *v);
    if (!v) return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", file);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].nbytes) v[k++] = &t[i];
    qsort(v, k, sizeof *v, cmp_by_begin);
    llmrt_status s = LLMRT_OK;
    for (size_t i = 1; i < k; i++) {
        uint64_t a0 = v[i - 1]->file_offset - data_start, b0 = v[i]->file_offset - data_start;
        if (b0 < a0 + v[i - 1]->nbytes) {
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: tensors '%s' (bytes %" PRIu64 "..%" PRIu64 ") and '%s' (bytes %" PRIu64
                        "..%" PRIu64 ") overlap",
                        file, v[i - 1]->name, a0, a0 + v[i - 1]->nbytes, v[i]->name, b0,
                        b0 + v[i]->nbytes);
            break;
        }
    }
    free(v);
    return s;
}

/* Reads the header of file m->files[fi] (its map is open) and appends its tensors, sorted by
 * name, with no duplicate names, no overlapping byte ranges and no bytes after the last one. */
static llmrt_status parse_image(st_model *m, size_t fi) {
    st_file *f = &m->files[fi];
    const char *file = f->path;
    size_t size = f->map.size;
    if (size < 8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       file, size);
    unsigned char len8[8];
    TRY(file_map_read(&f->map, 0, len8, 8));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | len8[i];
    if (hlen > size - 8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       file, hlen, size);
    if (hlen > ST_MAX_HEADER)
        return err_set(LLMRT_ERR_FORMAT, "%s: header length %" PRIu64 " is above the 100 MB limit",
                       file, hlen);
    f->header = malloc((size_t)hlen + 1);
    if (!f->header)
        return err_set(LLMRT_ERR_NOMEM, "%s: out of memory for a %" PRIu64 "-byte header", file,
                       hlen);
    TRY(file_map_read(&f->map, 8, f->header, (size_t)hlen));
    f->header[hlen] = '\0';
    f->data_start = 8 + hlen;
    const unsigned char *data = f->map.data ? f->map.data + f->data_start : NULL;
    size_t data_size = size - (size_t)f->data_start;

    hparser h = {f->header, f->header + hlen, f->header, file, 1, f->header};
    hkind k;
    TRY(hp_peek(&h, &k));
    if (k != HK_OBJECT) {
        TRY(hp_skip(&h, 0)); /* a syntax error in it is reported first */
        return err_set(LLMRT_ERR_FORMAT, "%s: header: top level is a JSON %s, not an object", file,
                       hkind_name[k]);
    }
    h.p++;
    size_t first_tensor = m->n_tensors;
    int first = 1, more, seen_meta = 0;
    while (1) {
        TRY(hp_next(&h, '}', &first, &more));
        if (!more) break;
        const char *key;
        size_t kl;
        int nul;
        TRY(hp_key(&h, &key, &kl, &nul));
        if (str_is(key, kl, "__metadata__")) {
            if (seen_meta)
                return err_set(LLMRT_ERR_FORMAT, "%s: header: duplicate key '__metadata__'", file);
            seen_meta = 1;
            TRY(read_metadata(&h));
            continue;
        }
        if (nul)
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor '%s' (cut at a NUL): names must not "
                           "contain U+0000",
                           file, key);
        raw_entry r;
        st_tensor t;
        memset(&t, 0, sizeof t);
        TRY(read_entry(&h, key, &r));
        TRY(validate_entry(&t, key, &r, data, data_size, file));
        t.name = key;
        t.file = file;
        t.file_index = fi;
        t.file_offset += f->data_start;
        TRY(push_tensor(m, &t));
    }
    hp_ws(&h);
    if (h.p != h.end) return hp_fail(&h, h.p, "trailing characters after the header object");

    size_t n = m->n_tensors - first_tensor;
    st_tensor *mine = n ? m->tensors + first_tensor : NULL; /* tensors is NULL while empty */
    if (n > 1) qsort(mine, n, sizeof *mine, cmp_by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(mine[i - 1].name, mine[i].name) == 0)
            return err_set(LLMRT_ERR_FORMAT, "%s: header: duplicate tensor name '%s'", file,
                           mine[i].name);
    TRY(check_overlaps(mine, n, f->data_start, file));
    uint64_t data_end = 0; /* where the last byte range ends, in the data area */
    for (size_t i = 0; i < n; i++)
        if (mine[i].file_offset - f->data_start + mine[i].nbytes > data_end)
            data_end = mine[i].file_offset - f->data_start + mine[i].nbytes;
    if (data_end != data_size)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: %" PRIu64 " byte%s after the data area: the file is %zu bytes, its "
                       "header (%" PRIu64 " bytes with the length) and tensors (%" PRIu64
                       " bytes of data) cover %" PRIu64 " (incomplete metadata, the file is not "
                       "fully covered: appended data or a header that lost tensors?)",
                       file, (uint64_t)data_size - data_end, data_size - data_end == 1 ? "" : "s",
                       size, f->data_start, data_end, f->data_start + data_end);
    return LLMRT_OK;
}

/* Sorts by name (when several files were read) and refuses duplicates across files. */
static llmrt_status finish(st_model *m) {
    if (m->n_files > 1 && m->n_tensors > 1)
        qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_by_name);
    for (size_t i = 1; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i - 1].name, m->tensors[i].name) == 0)
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' appears in both %s and %s", m->source,
                           m->tensors[i].name, m->tensors[i - 1].file, m->tensors[i].file);
    return LLMRT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* opening                                                                                    */

/* Maps path and appends its tensors to m. */
static llmrt_status load_file(st_model *m, const char *path) {
    size_t fi = 0;
    TRY(add_file(m, path, &fi));
    TRY(file_map_open(&m->files[fi].map, path));
    return parse_image(m, fi);
}

llmrt_status safetensors_open_file(st_model **out, const char *path) {
    *out = NULL;
    st_model *m = model_new(path);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    llmrt_status s = load_file(m, path);
    if (s == LLMRT_OK) s = finish(m);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

llmrt_status safetensors_open_memory(st_model **out, const void *data, size_t size,
                                     const char *name) {
    *out = NULL;
    st_model *m = model_new(name);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", name);
    size_t fi = 0;
    llmrt_status s = add_file(m, name, &fi);
    if (s == LLMRT_OK) {
        file_map_memory(&m->files[fi].map, data, size);
        s = parse_image(m, fi);
    }
    if (s == LLMRT_OK) s = finish(m);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

/* A set of shard names (open addressing, FNV-1a): each distinct shard is opened once, in O(1)
 * per weight_map entry however the entries alternate between shards. */
typedef struct name_set {
    const char **slot; /* [cap], NULL = empty */
    size_t cap, n;
} name_set;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds s (borrowed); *added is 0 if it was there. Returns -1 out of memory. */
static int name_set_add(name_set *ns, const char *s, int *added) {
    if (2 * (ns->n + 1) > ns->cap) {
        size_t cap = ns->cap ? 2 * ns->cap : 64;
        const char **slot = calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < ns->cap; i++) {
            if (!ns->slot[i]) continue;
            size_t j = fnv1a(ns->slot[i]) & (cap - 1);
            while (slot[j])
                j = (j + 1) & (cap - 1);
            slot[j] = ns->slot[i];
        }
        free(ns->slot);
        ns->slot = slot;
        ns->cap = cap;
    }
    size_t j = fnv1a(s) & (ns->cap - 1);
    while (ns->slot[j]) {
        if (strcmp(ns->slot[j], s) == 0) {
            *added = 0;
            return 0;
        }
        j = (j + 1) & (ns->cap - 1);
    }
    ns->slot[j] = s;
    ns->n++;
    *added = 1;
    return 0;
}

/* Opens every shard named in the index's weight_map, then checks that each listed tensor is
 * in the shard the index names. Tensors a shard holds beyond the index are kept. */
static llmrt_status load_sharded(st_model *m, const char *dir, const char *index_path) {
    char *text;
    size_t len;
    json_t *root = NULL;
    TRY(file_read_max(index_path, ST_MAX_INDEX, &text, &len));
    llmrt_status s = json_parse_object(&root, text, len, index_path);
    free(text);
    TRY(s);
    const json_t *wm = json_object_get(root, "weight_map");
    const char *name;
    json_t *v;
    char path[4096];
    name_set shards = {NULL, 0, 0};
    if (!wm) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: field 'weight_map' is missing", index_path);
        goto done;
    }
    if (!json_is_object(wm)) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: field 'weight_map' must be an object, got %s",
                    index_path, json_type_name(wm));
        goto done;
    }
    if (json_object_size(wm) == 0) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    /* each distinct shard once, in order of first mention */
    json_object_foreach((json_t *)wm, name, v) {
        if (!json_is_string(v)) {
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: weight_map entry for tensor '%s' must be a string, got %s", index_path,
                        name, json_type_name(v));
            goto done;
        }
        const char *shard = json_string_value(v);
        if (shard[0] == '\0' || strchr(shard, '/') || strcmp(shard, ".") == 0 ||
            strcmp(shard, "..") == 0 || strlen(shard) != json_string_length(v)) {
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: weight_map names shard '%s' for tensor '%s'; shards must be plain "
                        "file names in the model directory",
                        index_path, shard, name);
            goto done;
        }
        int added;
        if (name_set_add(&shards, shard, &added)) {
            s = err_set(LLMRT_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        if (!added) continue;
        if ((s = path_join(path, sizeof path, dir, shard)) != LLMRT_OK) goto done;
        if ((s = load_file(m, path)) != LLMRT_OK) {
            err_wrap(s, "%s lists shard '%s' (for tensor '%s'): ", index_path, shard, name);
            goto done;
        }
    }
    if ((s = finish(m)) != LLMRT_OK) goto done;
    json_object_foreach((json_t *)wm, name, v) {
        const st_tensor *t = safetensors_find(m, name);
        if ((s = path_join(path, sizeof path, dir, json_string_value(v))) != LLMRT_OK) goto done;
        if (!t || strcmp(t->file, path) != 0) {
            s = err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' is listed in shard %s but %s%s",
                        index_path, name, json_string_value(v),
                        t ? "is found in " : "that shard lacks it", t ? t->file : "");
            goto done;
        }
    }
done:
    free(shards.slot);
    json_decref(root);
    return s;
}

llmrt_status safetensors_open_dir(st_model **out, const char *model_dir) {
    *out = NULL;
    char single[4096], index[4096];
    TRY(path_join(single, sizeof single, model_dir, ST_SINGLE_NAME));
    TRY(path_join(index, sizeof index, model_dir, ST_INDEX_NAME));
    TRY(path_check(model_dir, 1));
    /* whatever sits at model.safetensors is the model: a directory or FIFO there is reported */
    if (path_present(single)) {
        TRY(path_check(single, 0));
        return safetensors_open_file(out, single);
    }
    if (!path_present(index))
        return err_set(LLMRT_ERR_IO, "%s: has neither %s nor %s", model_dir, ST_SINGLE_NAME,
                       ST_INDEX_NAME);
    TRY(path_check(index, 0));
    st_model *m = model_new(model_dir);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", model_dir);
    llmrt_status s = load_sharded(m, model_dir, index);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* lookup and reading                                                                         */

const st_tensor *safetensors_find(const st_model *m, const char *name) {
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->tensors[mid].name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

llmrt_status safetensors_expect(const st_model *m, const char *name, int n_dims,
                                const int64_t *shape, const st_tensor **out) {
    *out = NULL;
    const st_tensor *t = safetensors_find(m, name);
    if (!t) return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' is missing", m->source, name);
    int same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", t->file, name,
                       shape_str(got, sizeof got, t->n_dims, t->shape),
                       shape_str(want, sizeof want, n_dims, shape));
    }
    *out = t;
    return LLMRT_OK;
}

llmrt_status safetensors_read(const st_model *m, const st_tensor *t, size_t offset, void *dst,
                              size_t n) {
    if (t->file_index >= m->n_files || offset > t->nbytes || n > t->nbytes - offset)
        return err_set(LLMRT_ERR_INVALID,
                       "%s: reading tensor '%s': bytes %zu..%zu are outside its %zu bytes", t->file,
                       t->name, offset, offset + n, t->nbytes);
    llmrt_status s = file_map_read(&m->files[t->file_index].map, t->file_offset + offset, dst, n);
    if (s != LLMRT_OK) err_wrap(s, "reading tensor '%s': ", t->name);
    return s;
}

/* Elements converted per bounce-buffer fill: 64 KiB of F32, small enough to stay in L2. */
#define ST_CHUNK 16384

llmrt_status safetensors_read_as(const st_model *m, const st_tensor *t, void *dst, dtype dt,
                                 int transpose) {
    size_t es = dtype_size(t->dt), ed = dtype_size(dt), numel = t->nbytes / es;
    if (transpose && t->n_dims != 2)
        return err_set(LLMRT_ERR_INVALID,
                       "%s: tensor '%s' has %d dimensions; only a matrix can be "
                       "transposed",
                       t->file, t->name, t->n_dims);
    if (!transpose && dt == t->dt) return safetensors_read(m, t, 0, dst, t->nbytes);
    /* an FP8 value means nothing without its scale, an integer (packed codes, group indices)
     * nothing as a float: the caller reads the bytes as stored */
    if (dtype_quantized(t->dt) || dtype_quantized(dt) || dtype_integer(t->dt) || dtype_integer(dt))
        return err_set(LLMRT_ERR_INVALID,
                       "%s: tensor '%s' is %s: it is read as stored (%s), not converted to %s%s",
                       t->file, t->name, dtype_name(t->dt),
                       dtype_integer(t->dt) ? "integers" : "with its scale", dtype_name(dt),
                       transpose ? " or transposed" : "");
    if (numel == 0) return LLMRT_OK;
    size_t buf_elems = transpose ? numel : (numel < ST_CHUNK ? numel : ST_CHUNK);
    unsigned char *buf = malloc(buf_elems * es);
    if (!buf)
        return err_set(LLMRT_ERR_NOMEM, "%s: out of memory reading tensor '%s'", t->file, t->name);
    llmrt_status s = LLMRT_OK;
    if (transpose) {
        s = safetensors_read(m, t, 0, buf, t->nbytes);
        if (s == LLMRT_OK)
            dtype_convert_transpose(dst, dt, buf, t->dt, (size_t)t->shape[0], (size_t)t->shape[1]);
    } else {
        for (size_t i = 0; i < numel && s == LLMRT_OK; i += buf_elems) {
            size_t k = numel - i < buf_elems ? numel - i : buf_elems;
            s = safetensors_read(m, t, i * es, buf, k * es);
            if (s == LLMRT_OK) dtype_convert((unsigned char *)dst + i * ed, dt, buf, t->dt, k);
        }
    }
    free(buf);
    return s;
}

size_t safetensors_count(const st_model *m) {
    return m->n_tensors;
}

const st_tensor *safetensors_at(const st_model *m, size_t i) {
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}
