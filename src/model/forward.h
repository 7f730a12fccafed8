/* forward.h — the forward pass, written once over the backend op table. */
#ifndef LLMRT_MODEL_FORWARD_H
#define LLMRT_MODEL_FORWARD_H

#include <stdbool.h>

#include "runtime/session.h"

/* One step: n_tokens (<= s->o.chunk) new tokens per sequence at positions s->pos. Leaves
 * F32 logits in s->logits (backend memory): every row if all_logits, else the last row of
 * each sequence. Does not advance s->pos. */
llmrt_status forward_step(session *s, const int32_t *ids /* [batch * n_tokens] */, int n_tokens,
                          bool all_logits);

#endif
