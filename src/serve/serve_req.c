/* serve_req.c — what both sides of a request use (server.c, which talks to libmicrohttpd and
 * the scheduler, and oai_response.c, which writes the answers): the clock, random ids, cancelling
 * choices, freeing a choice. Calls neither of them. */
#include <stdlib.h>
#include <time.h>

#include "serve/serve_internal.h"

double serve_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

uint64_t server_random(server *s) {
    /* splitmix64 of a counter under a random key */
    uint64_t z = s->id_key + 0x9E3779B97F4A7C15ull * (atomic_fetch_add(&s->id_counter, 1) + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void server_cancel(server *s, uint64_t id) {
    pthread_rwlock_rdlock(&s->sched_lock);
    if (s->sched) sched_cancel(s->sched, id);
    pthread_rwlock_unlock(&s->sched_lock);
}

/* Cancels every choice still running (a hang-up, a failure). */
void req_cancel_all(req_ctx *c) {
    for (int i = 0; i < c->n_gens; i++) {
        gen *g = &c->gens[i];
        pthread_mutex_lock(&c->lock);
        bool live = g->submitted && !g->finished;
        uint64_t id = g->sched_id;
        pthread_mutex_unlock(&c->lock);
        if (live) server_cancel(c->s, id);
    }
}

void gen_free(gen *g) {
    for (tok_chunk *k = g->head, *next; k; k = next) {
        next = k->next;
        free(k->top_ids);
        free(k->top_lps);
        free(k);
    }
    tokenizer_stream_free(g->ts);
    stop_match_free(&g->sm);
    sbuf_free(&g->text);
    json_decref(g->lp);
    json_decref(g->echo_lp);
    tool_stream_free(&g->tools);
    json_decref(g->tool_calls);
    sbuf_free(&g->content);
    free(g->error);
    free(g->plp_lp);
    free(g->plp_n_top);
    free(g->plp_ids);
    free(g->plp_top_lps);
}
