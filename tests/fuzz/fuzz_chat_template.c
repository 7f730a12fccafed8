/* fuzz_chat_template.c — libFuzzer harness of the chat template interpreter (src/chat; see
 * README.md).
 *
 * The input is split at its first NUL byte: before it the template source, after it a JSON array
 * of messages (a fixed two-turn conversation when there is no NUL or it does not parse). The
 * template is parsed and, when it parses, rendered with the variables transformers passes
 * (add_generation_prompt on, bos/eos tokens, tools null) under small limits, so that a template
 * that loops or grows cannot time the fuzzer out. A failure must leave a message; a render must
 * give NUL-terminated text of the length it reports, within the output limit. Seeds: the real
 * cards' templates (tests/fuzz/seeds/fuzz_chat_template/), each with a conversation.
 */
#include <jansson.h>
#include <stdint.h>

#include "chat/chat_template.h"
#include "fuzz_util.h"

static const char *const default_messages =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
    "{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":\"caf\xc3\xa9?\"}]";

enum { MAX_OUTPUT = 1 << 20 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t src_len = nul ? (size_t)(nul - data) : size;
    json_t *msgs = NULL;
    if (nul) {
        json_error_t je;
        msgs = json_loadb((const char *)nul + 1, size - src_len - 1, JSON_DECODE_ANY, &je);
    }
    if (!msgs) msgs = json_loads(default_messages, 0, NULL);
    chat_template *t = NULL;
    llmrt_status st = chat_template_parse(&t, (const char *)data, src_len, "fuzz.jinja");
    if (st != LLMRT_OK) {
        FUZZ_ASSERT(t == NULL);
        FUZZ_ASSERT(llmrt_last_error()[0] != '\0');
        json_decref(msgs);
        return 0;
    }
    chat_template_limits lim = {.max_output = MAX_OUTPUT,
                                .max_memory = 16u << 20,
                                .max_steps = 200000,
                                .max_macro_depth = 32};
    chat_template_set_limits(t, &lim);
    chat_config cc = {.bos_token = "<s>", .eos_token = "</s>"};
    json_t *vars = chat_vars_build(&cc, msgs, 1, NULL, NULL, NULL);
    if (vars) {
        char *out = NULL;
        size_t len = 0;
        st = chat_template_render(t, vars, 1700000000, &out, &len);
        if (st == LLMRT_OK) {
            FUZZ_ASSERT(out != NULL && strlen(out) <= len && out[len] == '\0');
            FUZZ_ASSERT(len <= MAX_OUTPUT);
        } else {
            FUZZ_ASSERT(llmrt_last_error()[0] != '\0');
        }
        free(out);
        json_decref(vars);
    } else {
        FUZZ_ASSERT(llmrt_last_error()[0] != '\0');
    }
    chat_template_free(t);
    json_decref(msgs);
    return 0;
}
