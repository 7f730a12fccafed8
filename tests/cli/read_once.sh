#!/usr/bin/env bash
# read_once.sh — `llmrt run` opens each of config.json and tokenizer.json exactly once (the
# model is opened once through the API and every check reads what was parsed), counted with
# strace. Usage: read_once.sh path/to/llmrt   (run by CTest from the repo root)
set -u
BIN=${1:?usage: read_once.sh LLMRT_BINARY}
command -v strace >/dev/null || { echo "FAIL: strace is needed (scripts/install-deps.sh)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
for args in "--prompt hello --num_tokens 4" "--prompt-ids 1,2,3 --num_tokens 4" \
    "--benchmark --isl 8 --num_tokens 4 --iterations 1 --warmup 0"; do
    # shellcheck disable=SC2086
    # LeakSanitizer cannot work under ptrace: leaks are the other tests' concern here
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -e trace=open,openat -o "$T/trace" "$BIN" run --model models/demo-llama \
        --device cpu $args >/dev/null 2>"$T/err" || { echo "FAIL: run $args: $(cat "$T/err")"; fail=1; }
    cfg=$(grep -cE '"[^"]*/config\.json"' "$T/trace")
    tok=$(grep -cE '"[^"]*/tokenizer\.json"' "$T/trace")
    if [ "$cfg" -ne 1 ] || [ "$tok" -ne 1 ]; then
        echo "FAIL: run $args opened config.json $cfg times and tokenizer.json $tok times"
        grep -E 'config\.json|tokenizer\.json' "$T/trace"
        fail=1
    fi
done
[ $fail -eq 0 ] && echo "read_once.sh: config.json and tokenizer.json are each read once"
exit $fail
