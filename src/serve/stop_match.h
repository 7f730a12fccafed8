/* stop_match.h — OpenAI's `stop` strings on generated text: matched across token boundaries,
 * never shown, and held back while they could still match so that nothing past a stop is ever
 * released.
 *
 * Text goes in as the streaming detokenizer releases it; out comes the part that can no longer
 * be the start of a stop string. Once a stop string is found, the text before it is released and
 * everything after it (the stop included) is dropped for good.
 */
#ifndef LLMRT_SERVE_STOP_MATCH_H
#define LLMRT_SERVE_STOP_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "serve/sbuf.h"

/* Invariants: held never contains a whole stop string; n_held < the longest stop's length
 * (after each push); nothing is held or released once matched. */
typedef struct stop_match {
    const char *const *stops; /* [n_stops] borrowed, non-empty */
    const size_t *lens;       /* [n_stops] */
    int n_stops;
    sbuf held;    /* text that could still begin a stop string */
    bool matched; /* a stop string was found */
} stop_match;

void stop_match_init(stop_match *m, const char *const *stops, const size_t *lens, int n_stops);
/* Appends text[0..len); appends to out what is final. Returns false when out of memory. */
bool stop_match_push(stop_match *m, const char *text, size_t len, sbuf *out);
/* The end of the text: releases what is held (nothing after a match). */
bool stop_match_flush(stop_match *m, sbuf *out);
void stop_match_free(stop_match *m);

#endif
