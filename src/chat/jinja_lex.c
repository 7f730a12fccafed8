/* jinja_lex.c — Jinja2's lexer with transformers' settings (trim_blocks, lstrip_blocks).
 *
 * Follows jinja2/lexer.py rule by rule: data up to the first `{{`, `{%` or `{#`; a `-` after the
 * opening tag strips all (Unicode) whitespace before it, otherwise lstrip_blocks removes spaces and
 * tabs between the start of the line and a block or comment tag; `-%}`, `-}}` and `-#}` swallow
 * all whitespace after, and with trim_blocks `%}` and `#}` swallow one newline; `+` turns either
 * off. Inside a tag, end markers only count while brackets are balanced. String literals are
 * decoded as Python's "unicode-escape" codec does after Jinja's backslashreplace.
 */
#include <stdlib.h>
#include <string.h>

#include "chat/chat_internal.h"

#define MAX_BRACKETS 256

/* Lexer state: toks[0..nt) emitted so far (nt <= cap); s is the whole source. */
typedef struct lexer {
    jctx *ctx;
    const char *s; /* [n] source */
    size_t n;
    jtok *toks; /* [cap] malloc'd while lexing */
    size_t nt, cap;
    int line_starting; /* the last match ended with a newline (or nothing was matched yet) */
} lexer;

static jtok *push(lexer *lx, int type, size_t pos) {
    if (lx->nt == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        jtok *t = realloc(lx->toks, cap * sizeof *t);
        if (!t) {
            jerr(lx->ctx, pos, LLMRT_ERR_NOMEM, "out of memory");
            return NULL;
        }
        lx->toks = t;
        lx->cap = cap;
    }
    jtok *t = &lx->toks[lx->nt++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    t->pos = pos;
    return t;
}

/* Length of the whitespace character at s[i], or 0. */
static size_t space_at(const lexer *lx, size_t i) {
    if (i >= lx->n) return 0;
    size_t len;
    uint32_t c = u8_decode(lx->s + i, lx->n - i, &len);
    return py_isspace(c) ? len : 0;
}

static size_t skip_space(const lexer *lx, size_t i) {
    size_t k;
    while ((k = space_at(lx, i)) != 0)
        i += k;
    return i;
}

/* Python's str.rstrip() of s[a..b): the new end. */
static size_t rstrip_end(const lexer *lx, size_t a, size_t b) {
    while (b > a) {
        size_t start = b - 1;
        while (start > a && ((unsigned char)lx->s[start] & 0xC0) == 0x80)
            start--;
        size_t len;
        uint32_t c = u8_decode(lx->s + start, b - start, &len);
        if (!py_isspace(c)) break;
        b = start;
    }
    return b;
}

static int starts(const lexer *lx, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i <= lx->n && lx->n - i >= k && memcmp(lx->s + i, lit, k) == 0;
}

/* Emits the data s[a..b) before a tag whose sign is `sign` ('-', '+' or 0); lstrip applies to
 * block and comment tags. */
static int emit_data(lexer *lx, size_t a, size_t b, char sign, int lstrip_ok) {
    if (sign == '-') {
        b = rstrip_end(lx, a, b);
    } else if (sign != '+' && lstrip_ok) {
        size_t l = b;
        while (l > a && lx->s[l - 1] != '\n')
            l--;
        int after_newline = l > a;
        if (after_newline || lx->line_starting) {
            size_t i = l;
            while (i < b && (lx->s[i] == ' ' || lx->s[i] == '\t'))
                i++;
            if (i == b) b = l;
        }
    }
    if (b > a) {
        jtok *t = push(lx, T_DATA, a);
        if (!t) return -1;
        t->p = lx->s + a;
        t->n = b - a;
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the body s[a..b) of a string literal (Python unicode-escape after backslashreplace). */
static int decode_string(lexer *lx, size_t a, size_t b, jtok *t) {
    jctx *ctx = lx->ctx;
    char *out = jalloc(ctx, a, (b - a) * 3 + 1); /* an escape never grows past 3x */
    if (!out) return -1;
    size_t k = 0, i = a;
    const char *s = lx->s;
    while (i < b) {
        if (s[i] != '\\') {
            out[k++] = s[i++];
            continue;
        }
        size_t esc = i;
        i++; /* the lexer guarantees a character after a backslash */
        unsigned char d = (unsigned char)s[i];
        if (d >= 0x80) { /* backslashreplace made it `\xhh`/`\uhhhh`/`\Uhhhhhhhh`: kept as text */
            size_t len;
            uint32_t cp = u8_decode(s + i, b - i, &len);
            char tmp[16];
            int m = cp < 0x100     ? snprintf(tmp, sizeof tmp, "\\x%02x", cp)
                    : cp < 0x10000 ? snprintf(tmp, sizeof tmp, "\\u%04x", cp)
                                   : snprintf(tmp, sizeof tmp, "\\U%08x", cp);
            memcpy(out + k, tmp, (size_t)m);
            k += (size_t)m;
            i += len;
            continue;
        }
        i++;
        uint32_t cp;
        switch (d) {
        case '\n':
            continue;
        case '\\':
        case '\'':
        case '"':
            out[k++] = (char)d;
            continue;
        case 'a':
            out[k++] = 7;
            continue;
        case 'b':
            out[k++] = 8;
            continue;
        case 'f':
            out[k++] = 12;
            continue;
        case 'n':
            out[k++] = '\n';
            continue;
        case 'r':
            out[k++] = '\r';
            continue;
        case 't':
            out[k++] = '\t';
            continue;
        case 'v':
            out[k++] = 11;
            continue;
        case 'x':
        case 'u':
        case 'U': {
            int want = d == 'x' ? 2 : d == 'u' ? 4 : 8;
            cp = 0;
            for (int j = 0; j < want; j++) {
                int h = i < b ? hexval(s[i]) : -1;
                if (h < 0)
                    return jerr(ctx, esc, LLMRT_ERR_FORMAT, "truncated \\%c%s escape", d,
                                d == 'x'   ? "XX"
                                : d == 'u' ? "XXXX"
                                           : "XXXXXXXX");
                cp = cp << 4 | (uint32_t)h;
                i++;
            }
            if (cp > 0x10FFFF) return jerr(ctx, esc, LLMRT_ERR_FORMAT, "illegal Unicode character");
            if (cp >= 0xD800 && cp <= 0xDFFF)
                return jerr(ctx, esc, LLMRT_ERR_UNSUPPORTED,
                            "a surrogate escape in a string literal is not supported");
            k += u8_encode(cp, out + k);
            continue;
        }
        case 'N':
            return jerr(ctx, esc, LLMRT_ERR_UNSUPPORTED, "\\N{...} escapes are not supported");
        default:
            if (d >= '0' && d <= '7') {
                cp = d - '0';
                for (int j = 0; j < 2 && i < b && s[i] >= '0' && s[i] <= '7'; j++)
                    cp = cp * 8 + (uint32_t)(s[i++] - '0');
                k += u8_encode(cp, out + k);
                continue;
            }
            out[k++] = '\\';
            out[k++] = (char)d;
            continue;
        }
    }
    out[k] = 0;
    t->p = out;
    t->n = k;
    return 0;
}

/* Digits with single underscores between them, from i: the end, or i when none. */
static size_t digits(const lexer *lx, size_t i, int (*ok)(char)) {
    size_t j = i;
    if (j >= lx->n || !ok(lx->s[j])) return i;
    while (j < lx->n) {
        if (ok(lx->s[j])) {
            j++;
        } else if (lx->s[j] == '_' && j + 1 < lx->n && ok(lx->s[j + 1])) {
            j++;
        } else {
            break;
        }
    }
    return j;
}
static int is_dec(char c) {
    return c >= '0' && c <= '9';
}
static int is_bin(char c) {
    return c == '0' || c == '1';
}
static int is_oct(char c) {
    return c >= '0' && c <= '7';
}
static int is_hex(char c) {
    return hexval(c) >= 0;
}

static int lex_number(lexer *lx, size_t *pi) {
    size_t i = *pi, n = lx->n;
    const char *s = lx->s;
    char buf[128];
    /* float first, as Jinja tries it first (not right after a '.') */
    if (!(i > 0 && s[i - 1] == '.')) {
        size_t a = digits(lx, i, is_dec), end = 0;
        if (a > i) {
            size_t f = a;
            if (f < n && s[f] == '.' && digits(lx, f + 1, is_dec) > f + 1)
                f = digits(lx, f + 1, is_dec);
            if (f < n && (s[f] == 'e' || s[f] == 'E')) {
                size_t e = f + 1;
                if (e < n && (s[e] == '+' || s[e] == '-')) e++;
                size_t ee = digits(lx, e, is_dec);
                if (ee > e) end = ee;
            }
            if (!end && f > a) end = f;
        }
        if (end) {
            size_t k = 0;
            for (size_t j = i; j < end && k < sizeof buf - 1; j++)
                if (s[j] != '_') buf[k++] = s[j];
            buf[k] = 0;
            jtok *t = push(lx, T_FLOAT, i);
            if (!t) return -1;
            t->f = strtod(buf, NULL);
            *pi = end;
            return 0;
        }
    }
    int base = 10;
    size_t a = i, end;
    if (s[i] == '0' && i + 1 < n &&
        (s[i + 1] == 'b' || s[i + 1] == 'B' || s[i + 1] == 'o' || s[i + 1] == 'O' ||
         s[i + 1] == 'x' || s[i + 1] == 'X')) {
        char k = (char)(s[i + 1] | 0x20);
        int (*ok)(char) = k == 'b' ? is_bin : k == 'o' ? is_oct : is_hex;
        base = k == 'b' ? 2 : k == 'o' ? 8 : 16;
        size_t j = i + 2;
        if (j < n && s[j] == '_') j++;
        end = digits(lx, j, ok);
        if (end == j) end = 0;
        a = i + 2;
    } else if (s[i] == '0') {
        end = i + 1;
        while (end < n && (s[end] == '0' || (s[end] == '_' && end + 1 < n && s[end + 1] == '0')))
            end++;
    } else {
        end = digits(lx, i, is_dec);
    }
    if (!end) return jerr(lx->ctx, i, LLMRT_ERR_FORMAT, "unexpected char '%c'", s[i]);
    size_t k = 0;
    for (size_t j = a; j < end && k < sizeof buf - 1; j++)
        if (s[j] != '_') buf[k++] = s[j];
    buf[k] = 0;
    uint64_t v = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t d = (uint64_t)hexval(buf[j]);
        if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX)
            return jerr(lx->ctx, i, LLMRT_ERR_UNSUPPORTED, "integer literal too large");
        v = v * (uint64_t)base + d;
    }
    jtok *t = push(lx, T_INT, i);
    if (!t) return -1;
    t->i = (int64_t)v;
    *pi = end;
    return 0;
}

static const struct {
    const char *s;
    jop op;
} OPS[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW},   {"==", OP_EQ},      {"!=", OP_NE},      {">=", OP_GE},
    {"<=", OP_LE},       {"+", OP_ADD},    {"-", OP_SUB},      {"/", OP_DIV},      {"*", OP_MUL},
    {"%", OP_MOD},       {"~", OP_TILDE},  {"[", OP_LBRACKET}, {"]", OP_RBRACKET}, {"(", OP_LPAREN},
    {")", OP_RPAREN},    {"{", OP_LBRACE}, {"}", OP_RBRACE},   {">", OP_GT},       {"<", OP_LT},
    {"=", OP_ASSIGN},    {".", OP_DOT},    {":", OP_COLON},    {"|", OP_PIPE},     {",", OP_COMMA},
    {";", OP_SEMICOLON},
};

/* Lexes the inside of a tag from *pi up to and including its end marker. kind: '%' or '{'. */
static int lex_tag(lexer *lx, size_t *pi, char kind, size_t tag_pos) {
    jctx *ctx = lx->ctx;
    const char *s = lx->s;
    size_t i = *pi, n = lx->n;
    char stack[MAX_BRACKETS];
    size_t depth = 0;
    const char *end = kind == '%' ? "%}" : "}}";
    for (;;) {
        if (i >= n)
            return jerr(ctx, tag_pos, LLMRT_ERR_FORMAT,
                        "unexpected end of template: the tag opened here has no '%s'", end);
        if (depth == 0) {
            size_t e = 0;
            int trim = 0;
            if (kind == '%' && s[i] == '+' && starts(lx, i + 1, end)) {
                e = i + 3;
            } else if (s[i] == '-' && starts(lx, i + 1, end)) {
                e = skip_space(lx, i + 3);
            } else if (starts(lx, i, end)) {
                e = i + 2;
                trim = kind == '%';
                if (trim && e < n && s[e] == '\n') e++;
            }
            if (e) {
                if (!push(lx, kind == '%' ? T_BLOCK_END : T_VAR_END, i)) return -1;
                lx->line_starting = s[e - 1] == '\n';
                *pi = e;
                return 0;
            }
        }
        size_t sp = space_at(lx, i);
        if (sp) {
            i += sp;
            continue;
        }
        char c = s[i];
        if (is_dec(c)) {
            if (lex_number(lx, &i)) return -1;
            continue;
        }
        if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t j = i + 1;
            while (j < n && (s[j] == '_' || is_dec(s[j]) || (s[j] >= 'a' && s[j] <= 'z') ||
                             (s[j] >= 'A' && s[j] <= 'Z')))
                j++;
            jtok *t = push(lx, T_NAME, i);
            if (!t) return -1;
            t->p = s + i;
            t->n = j - i;
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c)
                j += s[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j >= n)
                return jerr(ctx, i, LLMRT_ERR_FORMAT,
                            "unexpected char '%c' (an unterminated string)", c);
            jtok *t = push(lx, T_STRING, i);
            if (!t || decode_string(lx, i + 1, j, t)) return -1;
            i = j + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof OPS / sizeof OPS[0]; k++)
            if (starts(lx, i, OPS[k].s)) break;
        if (k == sizeof OPS / sizeof OPS[0]) {
            size_t len;
            u8_decode(s + i, n - i, &len);
            return jerr(ctx, i, LLMRT_ERR_FORMAT, "unexpected char '%.*s'", (int)len, s + i);
        }
        jop op = OPS[k].op;
        if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
            if (depth == MAX_BRACKETS)
                return jerr(ctx, i, LLMRT_ERR_FORMAT, "brackets nested more than %d deep",
                            MAX_BRACKETS);
            stack[depth++] = op == OP_LPAREN ? ')' : op == OP_LBRACKET ? ']' : '}';
        } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
            char want = op == OP_RPAREN ? ')' : op == OP_RBRACKET ? ']' : '}';
            if (depth == 0) return jerr(ctx, i, LLMRT_ERR_FORMAT, "unexpected '%c'", want);
            if (stack[depth - 1] != want)
                return jerr(ctx, i, LLMRT_ERR_FORMAT, "unexpected '%c', expected '%c'", want,
                            stack[depth - 1]);
            depth--;
        }
        jtok *t = push(lx, T_OP, i);
        if (!t) return -1;
        t->op = (uint8_t)op;
        i += strlen(OPS[k].s);
    }
}

/* `{% raw %}` at i (the '{'): returns the end of the opening tag, or 0 if it is not one. */
static size_t raw_begin(const lexer *lx, size_t i) {
    size_t j = i + 2;
    if (j < lx->n && (lx->s[j] == '-' || lx->s[j] == '+')) j++;
    j = skip_space(lx, j);
    if (!starts(lx, j, "raw")) return 0;
    j = skip_space(lx, j + 3);
    if (starts(lx, j, "-%}")) return skip_space(lx, j + 3);
    if (starts(lx, j, "%}")) return j + 2;
    return 0;
}

/* The raw body from i: emits it as data and returns the end of `{% endraw %}`. */
static int lex_raw(lexer *lx, size_t *pi, size_t tag_pos) {
    size_t i = *pi;
    for (size_t q = i; q + 1 < lx->n; q++) {
        if (lx->s[q] != '{' || lx->s[q + 1] != '%') continue;
        size_t j = q + 2;
        char sign = 0;
        if (j < lx->n && (lx->s[j] == '-' || lx->s[j] == '+')) sign = lx->s[j++];
        j = skip_space(lx, j);
        if (!starts(lx, j, "endraw")) continue;
        j = skip_space(lx, j + 6);
        size_t e = 0;
        if (starts(lx, j, "+%}")) {
            e = j + 3;
        } else if (starts(lx, j, "-%}")) {
            e = skip_space(lx, j + 3);
        } else if (starts(lx, j, "%}")) {
            e = j + 2;
            if (e < lx->n && lx->s[e] == '\n') e++;
        } else {
            continue;
        }
        if (emit_data(lx, i, q, sign, 1)) return -1;
        lx->line_starting = lx->s[e - 1] == '\n';
        *pi = e;
        return 0;
    }
    return jerr(lx->ctx, tag_pos, LLMRT_ERR_FORMAT, "missing end of raw directive");
}

int jinja_lex(jctx *ctx, const char *src, size_t n, jtok **toks, size_t *n_toks) {
    lexer lx = {.ctx = ctx, .s = src, .n = n, .line_starting = 1};
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t q = i;
        while (q + 1 < n &&
               !(src[q] == '{' && (src[q + 1] == '{' || src[q + 1] == '%' || src[q + 1] == '#')))
            q++;
        if (q + 1 >= n) { /* no more tags: the rest is data, as it is */
            jtok *t = push(&lx, T_DATA, i);
            if (!t) {
                rc = -1;
                break;
            }
            t->p = src + i;
            t->n = n - i;
            break;
        }
        char kind = src[q + 1];
        char sign = q + 2 < n && (src[q + 2] == '-' || src[q + 2] == '+') ? src[q + 2] : 0;
        size_t body = q + 2 + (sign ? 1 : 0);
        size_t raw_end = kind == '%' ? raw_begin(&lx, q) : 0;
        if ((rc = emit_data(&lx, i, q, sign, kind != '{')) != 0) break;
        if (raw_end) {
            i = raw_end;
            rc = lex_raw(&lx, &i, q);
        } else if (kind == '#') {
            size_t e = body;
            while (e + 1 < n && !(src[e] == '#' && src[e + 1] == '}'))
                e++;
            if (e + 1 >= n) {
                rc = jerr(ctx, q, LLMRT_ERR_FORMAT, "missing end of comment tag");
                break;
            }
            if (e > body && src[e - 1] == '-') {
                i = skip_space(&lx, e + 2);
            } else if (e > body && src[e - 1] == '+') {
                i = e + 2;
            } else {
                i = e + 2;
                if (i < n && src[i] == '\n') i++;
            }
            lx.line_starting = src[i - 1] == '\n';
        } else {
            if (!push(&lx, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, q)) {
                rc = -1;
                break;
            }
            i = body;
            rc = lex_tag(&lx, &i, kind, q);
        }
    }
    if (rc == 0 && !push(&lx, T_EOF, n)) rc = -1;
    if (rc == 0) {
        *toks = jalloc(ctx, 0, lx.nt * sizeof(jtok));
        if (!*toks)
            rc = -1;
        else
            memcpy(*toks, lx.toks, lx.nt * sizeof(jtok));
        *n_toks = lx.nt;
    }
    free(lx.toks);
    return rc;
}
