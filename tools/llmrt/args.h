/* args.h — command-line flags as run_llm.py spells them: `--num_tokens 8`, `--num-tokens=8`. */
#ifndef LLMRT_TOOL_ARGS_H
#define LLMRT_TOOL_ARGS_H

#include <stdint.h>

/* Walks argv. For each flag, `name` is given without dashes, with '-' folded to '_'; the
 * short flags -m -p -n -t stand for --model, --prompt, --num_tokens and --temperature. Every
 * name args_is compares with is remembered, so that an unknown flag gets the closest known one
 * as a suggestion. */
typedef struct args {
    int argc, i;
    char **argv;
    const char *cmd;        /* subcommand name for messages */
    char name[64];          /* the current flag, normalized: "num_tokens" */
    const char *inline_v;   /* value after '=' if given */
    const char *known[128]; /* names compared with so far (args_is), for suggestions */
    int n_known;
} args;

void args_init(args *a, const char *cmd, int argc, char **argv);
/* Advances to the next flag; returns 0 at the end. Exits with a message on a bare word. */
int args_next(args *a);
int args_is(args *a, const char *name); /* name in underscore form */
/* The flag's value (inline or the next word); exits with a message if absent, or if the next
 * word is a flag ("--json", "-n": the value was forgotten); --flag=VALUE passes any value. */
const char *args_value(args *a);
long args_long(args *a, long lo, long hi);
double args_double(args *a, double lo, double hi);
/* The value as a number in (lo, hi]: lo itself refused (--top-p 0, which the library would read
 * as "no filter"); exits with status 2 otherwise. */
double args_double_above(args *a, double lo, double hi);
/* Edit distance (insert, delete, substitute, swap of neighbours) between two short names. */
int args_edit_distance(const char *x, const char *y);
/* Exits with "unknown flag" naming the command, and the closest known flag when one is near. */
void args_unknown(const args *a);

/* Parses "1,2,3" (spaces allowed) of token ids (>= 0), or of positive integers (the messages
 * say which, after "llmrt CMD:"); returns the count, or -1 with a message printed. */
int args_parse_ids(const args *a, const char *s, int32_t **out, const char *flag);
int args_parse_positive(const args *a, const char *s, int32_t **out, const char *flag);

#endif
