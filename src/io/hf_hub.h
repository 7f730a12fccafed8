/* hf_hub.h — finding a model or tokenizer given by Hugging Face name in the local Hugging Face
 * cache, as huggingface_hub does offline (llmrt never downloads). */
#ifndef LLMRT_IO_HF_HUB_H
#define LLMRT_IO_HF_HUB_H

#include <stddef.h>

#include "base/status.h"

/* The folder of the cache: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
llmrt_status hf_cache_dir(char *out, size_t n);

/* Resolves `spec` into a path in out: an existing file or folder is itself; else a name
 * ORG/NAME or NAME, with @REVISION (a branch, a tag or a commit hash; default main), is the
 * snapshot folder models--ORG--NAME/snapshots/<commit> of the cache. Fails with a message saying
 * where it looked and how to download, or that a path does not exist. */
llmrt_status hf_resolve(const char *spec, char *out, size_t n);

#endif
