/* tok_internal.h — the tokenizer's data: the pieces of a tokenizer.json pipeline, flattened.
 *
 * Every Sequence (normalizer, pre-tokenizer, processor, decoder) is flattened into an array of
 * steps applied in order. All strings a tokenizer owns live in `arena`; nothing points into the
 * JSON text once loading ends. Encoding scratch (BPE symbols, the word cache, PCRE2 match data)
 * lives in the tokenizer too, which is why one tokenizer must not encode on two threads at once.
 */
#ifndef LLMRT_TOKENIZER_TOK_INTERNAL_H
#define LLMRT_TOKENIZER_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "base/utf8.h"
#include "tokenizer/tok_map.h"
#include "tokenizer/tokenizer.h"

/* ---- growable byte and id buffers ---- */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

int tok_buf_reserve(tok_buf *b, size_t extra); /* 0, or -1 out of memory */
int tok_buf_put(tok_buf *b, const void *s, size_t n);
void tok_buf_free(tok_buf *b);

typedef struct tok_idbuf {
    int32_t *p;
    size_t n, cap;
} tok_idbuf;

int tok_idbuf_push(tok_idbuf *b, int32_t id);

/* ---- UTF-8 ----
 * Text reaching the pipeline is well-formed (tokenizer.json strings are checked when loaded,
 * encode repairs its input), but these helpers stay safe on any bytes: each reads only s[0..n)
 * and steps over an ill-formed sequence as one U+FFFD of its maximal ill-formed subpart. */
/* Decodes the character at s[0..n), n >= 1, setting *len to its byte length (1..min(4, n)). */
static inline uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    return utf8_decode(s, n, len);
}
/* The byte length of the character at s[0..n), n >= 1 (as tok_utf8_decode steps). */
static inline size_t tok_utf8_len(const char *s, size_t n) {
    size_t k;
    if ((unsigned char)s[0] < 0x80) return 1;
    (void)utf8_decode((const unsigned char *)s, n, &k);
    return k;
}
size_t tok_utf8_encode(uint32_t cp, char *out); /* out: 4 bytes; returns length */
/* Appends s[0..n) to out with each maximal invalid subpart replaced by U+FFFD (the way Python's
 * errors="replace" and Rust's from_utf8_lossy do). Returns the number of replacements, or -1
 * when out of memory. */
long tok_utf8_sanitize(const char *s, size_t n, tok_buf *out);
/* The length of the longest valid-UTF-8 prefix of s[0..n) (n when all of it is valid). */
size_t tok_utf8_valid_prefix(const char *s, size_t n);

/* ---- pipeline steps ---- */
enum {
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
    NORM_LOWERCASE,
    NORM_STRIP,
    NORM_PREPEND,
    NORM_REPLACE
};
typedef struct tok_norm {
    int kind;
    const char *a; /* Prepend: prefix; Replace: literal pattern (NULL when `re`) */
    size_t a_len;
    const char *b; /* Replace: content */
    size_t b_len;
    pcre2_code *re;  /* Replace with a regex pattern */
    int left, right; /* Strip */
} tok_norm;

/* Split delimiter behaviours, as HF names them. */
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PT_BYTELEVEL, PT_SPLIT, PT_METASPACE, PT_WHITESPACE_SPLIT };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct tok_pretok {
    int kind;
    pcre2_code *re;  /* Split (regex pattern), ByteLevel with use_regex */
    const char *pat; /* Split with a string pattern */
    size_t pat_len;
    int behavior, invert; /* Split */
    int add_prefix_space; /* ByteLevel */
    char repl[8];         /* Metaspace replacement (UTF-8) */
    size_t repl_len;
    int prepend_scheme, split; /* Metaspace */
} tok_pretok;

enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
typedef struct tok_dec {
    int kind;
    const char *a; /* Replace: pattern; Strip: content char; Metaspace: replacement */
    size_t a_len;
    const char *b; /* Replace: content */
    size_t b_len;
    int start, stop;    /* Strip */
    int prepend_scheme; /* Metaspace */
} tok_dec;

typedef struct tok_added {
    int32_t id;
    const char *content;
    size_t len;
    char *norm; /* normalized=true: the normalized content (HF decodes to it), else NULL */
    size_t norm_len;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* A byte trie over added-token contents: leftmost-longest matching, as HF's Aho-Corasick. */
typedef struct tok_trie {
    tok_u64map edges; /* node << 8 | byte -> child node */
    int32_t *term;    /* [n_nodes] index into added[], or -1 */
    size_t n_nodes, cap_nodes;
    uint8_t first[256]; /* bytes that start some token */
    size_t n_tokens;
} tok_trie;

#define TOK_MAX_PRETOKS 6

/* Pieces of a string: [start, end) byte ranges, with a flag (a delimiter match or not). */
typedef struct tok_span {
    size_t start, end;
    int match;
} tok_span;
typedef struct tok_spans {
    tok_span *p;
    size_t n, cap;
} tok_spans;

/* One cached BPE result: the word's bytes and its ids. */
#define TOK_CACHE_SLOTS 16384
#define TOK_CACHE_WORD 48
#define TOK_CACHE_IDS 14
typedef struct tok_cache_slot {
    uint64_t hash;
    uint8_t len, n_ids;
    char word[TOK_CACHE_WORD];
    int32_t ids[TOK_CACHE_IDS];
} tok_cache_slot;

typedef struct tok_sym {
    int32_t id, prev, next;
    int32_t alive;
} tok_sym;

typedef struct tok_heap_item {
    uint64_t key; /* rank << 32 | position: the smallest merges first, leftmost among equals */
    int32_t new_id;
} tok_heap_item;

struct tokenizer {
    char *path; /* the tokenizer.json read, for messages */
    char *arena;
    size_t arena_n, arena_cap;

    /* the model: BPE */
    size_t n_vocab;       /* model vocabulary entries (ids may have holes) */
    size_t n_ids;         /* 1 + the largest id, model or added */
    const char **voc_str; /* [n_ids] model token string of id, NULL if none */
    uint32_t *voc_len;    /* [n_ids] */
    tok_strmap vocab;     /* model token string -> id */
    tok_u64map merges;    /* a << 32 | b -> rank << 32 | new id */
    int32_t unk_id;       /* -1 when the model has no unk token */
    int fuse_unk, byte_fallback, ignore_merges;
    const char *cont_prefix, *end_suffix; /* NULL when absent */
    size_t cont_prefix_len, end_suffix_len;
    int32_t byte_id[256];   /* id of "<0xXX>", -1 if absent */
    int32_t char_id[0x800]; /* single-character tokens below U+0800: id, -1 absent, -2 unknown */

    tok_norm *norms;
    size_t n_norms;
    tok_pretok *pretoks;
    size_t n_pretoks;
    tok_dec *decs;
    size_t n_decs;
    int has_decoder;
    int has_bytelevel_pretok; /* bytes are mapped to the GPT-2 alphabet before the model */

    tok_added *added;
    size_t n_added;
    int32_t *added_of_id;         /* [n_ids] index into added[], -1 if none */
    tok_trie trie_raw, trie_norm; /* added tokens matched before / after normalizing */

    int32_t *post_pre, *post_suf; /* ids the post-processor adds around a single sequence */
    size_t n_post_pre, n_post_suf;

    int32_t bos_id, eos_id;

    /* Words are cut before each U+2581 that follows another character when no merge can cross
     * such a place (SentencePiece-style vocabularies): then each piece merges on its own, with
     * the same result, and the word cache works. `bridges` lists the few vocabulary tokens that
     * do cross one (Gemma 3 has ">▁</"); a place inside an occurrence of one is not cut. */
    int meta_cut;
    const char **bridges; /* [n_bridges] */
    uint32_t *bridge_len; /* [n_bridges] */
    size_t n_bridges;

    /* encoding scratch */
    tok_cache_slot *cache; /* [TOK_CACHE_SLOTS] */
    tok_sym *syms;
    size_t syms_cap;
    tok_heap_item *heap;
    size_t heap_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* with a JIT stack large enough for long whitespace runs */
    pcre2_jit_stack *jit_stack;
    tok_buf scratch[2 * TOK_MAX_PRETOKS + 2]; /* two per pre-tokenizer stage, two for normalizing */
    tok_spans spans[TOK_MAX_PRETOKS];         /* split points, one list per pre-tokenizer stage */
};

/* ---- loading helpers ---- */
const char *tok_arena_put(tokenizer *t, const char *s, size_t n); /* NUL-terminated copy */

/* ---- bytes <-> GPT-2 byte-level characters ---- */
extern const uint16_t tok_byte_to_cp[256];
int tok_cp_to_byte(uint32_t cp); /* the byte, or -1 when cp is not in the alphabet */

/* ---- string helpers shared by normalizers and pre-tokenizers (tok_normalize.c) ---- */
int tok_is_ws(uint32_t c); /* Rust's char::is_whitespace (White_Space) */
/* The next literal occurrence of pat in s[from..n): its start, or n. */
size_t tok_find_lit(const char *s, size_t n, size_t from, const char *pat, size_t pl);
/* The next match of re in s[from..n) into *ms and *me: 1, 0 if none, < 0 a PCRE2 error (see
 * tok_re_error). Empty matches are returned too. */
int tok_find_re(tokenizer *t, pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms,
                size_t *me);
llmrt_status tok_re_error(tokenizer *t, int rc);

/* Runs the normalizers on s[0..n); *out points into the tokenizer's scratch (valid until the
 * next normalization). *origin is cleared when the result no longer starts at offset 0. */
llmrt_status tok_normalize(tokenizer *t, const char *s, size_t n, int *origin, const char **out,
                           size_t *out_n);

/* ---- the model ---- */
/* Appends the ids of one pre-tokenized word to out. */
llmrt_status tok_bpe_word(tokenizer *t, const char *w, size_t n, tok_idbuf *out);

#endif
