/* stop_match.c — stop strings over streamed text (see stop_match.h). */
#include "serve/stop_match.h"

#include <string.h>

void stop_match_init(stop_match *m, const char *const *stops, const size_t *lens, int n_stops) {
    *m = (stop_match){.stops = stops, .lens = lens, .n_stops = n_stops};
}

/* The longest suffix of s[0..n) that is a proper prefix of some stop string. */
static size_t partial_suffix(const stop_match *m, const char *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < m->n_stops; i++) {
        size_t k = m->lens[i] - 1 < n ? m->lens[i] - 1 : n;
        for (; k > best; k--)
            if (!memcmp(s + n - k, m->stops[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

bool stop_match_push(stop_match *m, const char *text, size_t len, sbuf *out) {
    if (m->matched || len == 0) return true;
    if (m->n_stops == 0) return sbuf_add(out, text, len);
    if (!sbuf_add(&m->held, text, len)) return false;
    const char *h = m->held.p;
    size_t n = m->held.n, first = n;
    for (int i = 0; i < m->n_stops; i++) {
        const char *at = memmem(h, n, m->stops[i], m->lens[i]);
        if (at && (size_t)(at - h) < first) first = (size_t)(at - h);
    }
    if (first < n) {
        m->matched = true;
        bool ok = sbuf_add(out, h, first);
        sbuf_free(&m->held);
        return ok;
    }
    size_t keep = partial_suffix(m, h, n);
    if (!sbuf_add(out, h, n - keep)) return false;
    sbuf_consume(&m->held, n - keep);
    return true;
}

bool stop_match_flush(stop_match *m, sbuf *out) {
    bool ok = m->matched || sbuf_add(out, m->held.p, m->held.n);
    sbuf_free(&m->held);
    return ok;
}

void stop_match_free(stop_match *m) {
    sbuf_free(&m->held);
}
