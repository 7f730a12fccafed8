/* commands.h — the subcommands of the `llmrt` program, one file each in tools/llmrt/. */
#ifndef LLMRT_TOOL_COMMANDS_H
#define LLMRT_TOOL_COMMANDS_H

int cmd_run(int argc, char **argv);        /* run.c: generate text, --benchmark */
int cmd_logits(int argc, char **argv);     /* logits.c: teacher-forced logits as JSON */
int cmd_tokenize(int argc, char **argv);   /* tokenize.c: text -> ids */
int cmd_detokenize(int argc, char **argv); /* tokenize.c: ids -> text */
int cmd_bench(int argc, char **argv);      /* bench.c: benchmark sweep, JSON/CSV/PNG */
int cmd_perplexity(int argc, char **argv); /* perplexity.c: perplexity of a text */
int cmd_template(int argc, char **argv);   /* template.c: a conversation through the template */
int cmd_chat(int argc, char **argv);       /* chat.c: interactive chat on a terminal */

int cmd_serve(int argc, char **argv);       /* serve.c: the OpenAI-compatible HTTP server */
int cmd_bench_serve(int argc, char **argv); /* bench_serve.c: load test of a server */

#endif
