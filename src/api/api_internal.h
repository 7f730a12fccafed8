/* api_internal.h — what the handles of include/llmrt.h hold, shared by the src/api files. */
#ifndef LLMRT_API_INTERNAL_H
#define LLMRT_API_INTERNAL_H

#include <limits.h>

#include "llmrt.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

/* A tokenizer handle: the model's (owned by it) or one opened on its own. */
struct llmrt_tokenizer {
    tokenizer *t;
};

/* A model: its config and tokenizer from llmrt_model_open; backend, weights and engine from
 * llmrt_model_load (NULL before). */
struct llmrt_model {
    char path[PATH_MAX];    /* the folder in use */
    char tok_dir[PATH_MAX]; /* the folder of the tokenizer given apart (its chat template and
                               special tokens); "" when the tokenizer is the model's own */
    model_config cfg;
    struct llmrt_tokenizer tok; /* tok.t NULL: no tokenizer */
    struct llmrt_chat *chat;    /* the chat template, read on first use (llmrt_model_chat) */
    double open_ms;
    /* loaded */
    backend *be;
    model *m;
    engine *e;
    llmrt_precision precision;
    char device[32];         /* "cpu", "cuda:0" */
    char device_note[1024];  /* why auto chose the CPU */
    double load_ms;          /* open + load */
    llmrt_session *sessions; /* live sessions (freeing the model detaches them) */
    bool generating;         /* in llmrt_generate (its token callback may call back) */
    bool free_pending;       /* llmrt_model_free came from that callback */
};

/* A session handle. */
struct llmrt_session {
    llmrt_model *m; /* NULL once the model was freed (s too) */
    session *s;
    llmrt_session *prev, *next; /* the model's live sessions */
    bool generating;            /* one of the sessions of a running llmrt_generate */
    bool free_pending;          /* llmrt_session_free came from its token callback */
};

/* Gives a session's cache back and takes it off its model's list (model freed, or session). */
void api_session_detach(llmrt_session *s);

/* Fails unless the model has been loaded (who: the calling function, for the message). */
llmrt_status api_need_loaded(const llmrt_model *m, const char *who);
/* Fails while an llmrt_generate on the model runs (a call from its token callback): the model's
 * engine is between two steps of it, maybe with the next one started on the device. */
llmrt_status api_need_idle(const llmrt_model *m, const char *who);

#endif
