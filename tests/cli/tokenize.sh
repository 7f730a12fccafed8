#!/usr/bin/env bash
# tokenize.sh — `llmrt tokenize` / `llmrt detokenize`: output formats, --jsonl, exit codes and
# messages. Usage: tests/cli/tokenize.sh path/to/llmrt (run from the repo root; needs
# ../shared/tokenizers, and fails when it is missing).
set -u
BIN=${1:?usage: tokenize.sh LLMRT}
TOK=../shared/tokenizers
fail=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        echo "FAIL $1: expected [$2] got [$3]"
        fail=1
    else
        echo "PASS $1"
    fi
}
if [ ! -f $TOK/gpt2/tokenizer.json ]; then
    echo "FAIL: $TOK/gpt2/tokenizer.json is missing (../shared must sit beside the repo)"
    exit 1
fi

check gpt2_text "[15496, 995, 0]" "$($BIN tokenize --tokenizer $TOK/gpt2 --text 'Hello world!')"
check llama2_bos "[1, 22557, 1526, 28808]" \
    "$($BIN tokenize --tokenizer $TOK/llama2/tokenizer.json --text 'Hello world!' --add-special-tokens)"
check qwen3_special "[151644, 872, 198, 13048, 151645]" \
    "$($BIN tokenize --tokenizer $TOK/qwen3 --text $'<|im_start|>user\nHi<|im_end|>')"
check stdin "[15496, 995, 0]" "$(printf 'Hello world!' | $BIN tokenize --tokenizer $TOK/gpt2)"
check jsonl "$(printf '[15496]\n[]\n[39305, 198]\n')" \
    "$(printf '"Hello"\n""\n"abc\\n"\n' | $BIN tokenize --tokenizer $TOK/gpt2 --jsonl)"
check detok "Hello world!" "$($BIN detokenize --tokenizer $TOK/gpt2 --ids 15496,995,0)"
check detok_skip "Hi" "$($BIN detokenize --tokenizer $TOK/qwen3 --ids 151644,13048,151645 --skip-special-tokens)"
check detok_keep "<|im_start|>Hi<|im_end|>" "$($BIN detokenize --tokenizer $TOK/qwen3 --ids 151644,13048,151645)"
check detok_stream "Hello world!" "$($BIN detokenize --tokenizer $TOK/llama2 --ids 1,22557,1526,28808 --skip-special-tokens --stream)"
check detok_jsonl "$(printf '"Hello world!"\n""\n')" \
    "$(printf '[15496, 995, 0]\n[]\n' | $BIN detokenize --tokenizer $TOK/gpt2 --jsonl)"

# invalid UTF-8: replaced, one warning, ids as HF gives for "a\ufffdb"
out=$(printf 'a\xffb\xfe' | $BIN tokenize --tokenizer $TOK/gpt2 2>/tmp/llmrt_tok_err.$$)
check invalid_utf8 "[64, 4210, 65, 4210]" "$out"
check invalid_utf8_warns 1 "$(grep -c 'not valid UTF-8' /tmp/llmrt_tok_err.$$)"
out=$(printf '"a\xffb"\n"ok"\n"\xfe"\n' | $BIN tokenize --tokenizer $TOK/gpt2 --jsonl 2>/tmp/llmrt_tok_err.$$)
check invalid_utf8_jsonl "$(printf '[64, 4210, 65]\n[482]\n[4210]')" "$out"
check invalid_utf8_jsonl_warns 1 "$(grep -c 'not valid UTF-8' /tmp/llmrt_tok_err.$$)"
rm -f /tmp/llmrt_tok_err.$$

# errors: exit codes and messages naming what is wrong
msg=$($BIN tokenize --tokenizer /nonexistent/tok.json --text x 2>&1); rc=$?
check missing_rc 1 $rc
case "$msg" in *"/nonexistent/tok.json"*) echo "PASS missing_msg" ;; *) echo "FAIL missing_msg: $msg"; fail=1 ;; esac
$BIN tokenize --text x >/dev/null 2>&1; check no_tokenizer_rc 2 $?
$BIN detokenize --tokenizer $TOK/gpt2 --ids 1,x >/dev/null 2>&1; check bad_ids_rc 2 $?
msg=$($BIN detokenize --tokenizer $TOK/gpt2 --ids 999999 2>&1); rc=$?
check out_of_range_rc 1 $rc
case "$msg" in *"out of range"*) echo "PASS out_of_range_msg" ;; *) echo "FAIL out_of_range_msg: $msg"; fail=1 ;; esac
printf 'not json\n' | $BIN tokenize --tokenizer $TOK/gpt2 --jsonl >/dev/null 2>&1; check bad_jsonl_rc 1 $?
$BIN tokenize --tokenizer $TOK/gpt2 --bogus >/dev/null 2>&1; check unknown_flag_rc 2 $?
exit $fail
