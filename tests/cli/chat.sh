#!/usr/bin/env bash
# chat.sh — `llmrt chat` on a pseudo-terminal (tmux): two turns, the second prefilling only what
# the first did not (read from the timing lines), Ctrl-C stopping a reply, Ctrl-D leaving with
# status 0. Usage: chat.sh path/to/llmrt   (run by CTest from the repo root)
set -u
BIN=${1:?usage: chat.sh LLMRT_BINARY}
command -v tmux >/dev/null || { echo "FAIL: tmux is needed (scripts/install-deps.sh)"; exit 1; }
T=$(mktemp -d)
SOCK="llmrt-chat-test-$$"
cleanup() { tmux -L "$SOCK" kill-server 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail=0
bad() { fail=1; echo "FAIL: $*"; echo "--- stderr:"; cat "$T/err"; echo "--- screen:"; tmux -L "$SOCK" capture-pane -p -t t 2>/dev/null; }

# wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN (10 s at most)
wait_for() {
    for _ in $(seq 500); do
        [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
        sleep 0.02
    done
    return 1
}
screen() { tmux -L "$SOCK" capture-pane -p -t t > "$T/screen"; }

# bash runs llmrt as a terminal's shell does (a Ctrl-C that llmrt handles leaves bash be)
cat > "$T/run.sh" <<EOF
OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1 "$BIN" chat --model models/demo-llama --device cpu --num_tokens 24 2>"$T/err"
echo EXIT=\$? > "$T/rc"
sleep 5
EOF
tmux -L "$SOCK" new-session -d -s t -x 200 -y 60 "exec bash $T/run.sh"
for _ in $(seq 500); do screen; grep -q '^>' "$T/screen" && break; sleep 0.02; done
grep -q '^>' "$T/screen" || bad "no prompt"

tmux -L "$SOCK" send-keys -t t "And it came to pass" Enter
wait_for "$T/err" '^\[prefill' 1 || bad "no first reply"
tmux -L "$SOCK" send-keys -t t "what then" Enter
wait_for "$T/err" '^\[prefill' 2 || bad "no second reply"
a=$(grep '^\[prefill' "$T/err" | sed -n 1p | sed 's/\[prefill \([0-9]*\) tokens.*/\1/')
b=$(grep '^\[prefill' "$T/err" | sed -n 2p | sed 's/\[prefill \([0-9]*\) tokens.*/\1/')
# the whole second prompt, through the same template and tokenizer
reply=$(screen; sed -n '/^> And it came to pass/,/^> what then/p' "$T/screen" | sed '1d;$d' | tr -d '\n')
printf '[{"role":"user","content":"And it came to pass"},{"role":"assistant","content":%s},{"role":"user","content":"what then"}]' \
    "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1].strip()))' "$reply")" > "$T/m.json"
"$BIN" template --tokenizer models/demo-llama --messages "$T/m.json" --add-generation-prompt > "$T/prompt2"
total=$("$BIN" tokenize --tokenizer models/demo-llama --file "$T/prompt2" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
if [ -z "$a" ] || [ -z "$b" ] || [ "$b" -ge $((total - a)) ]; then
    bad "second turn prefilled $b tokens of $total (the first turn's $a should come from the cache)"
fi

# Ctrl-C stops a long reply; the chat goes on
tmux -L "$SOCK" send-keys -t t "/reset" Enter
wait_for "$T/err" 'conversation reset' 1 || bad "no /reset"
tmux -L "$SOCK" send-keys -t t "Tell me everything" Enter
for _ in $(seq 500); do screen; [ "$(grep -c . "$T/screen")" -gt 8 ] && break; sleep 0.01; done
tmux -L "$SOCK" send-keys -t t C-c
wait_for "$T/err" '^\[prefill' 3 || bad "no third reply"
grep -q 'stopped\]' "$T/err" || {
    # a reply of 24 tokens may end before the Ctrl-C arrives: then it must not say stopped
    n=$(grep '^\[prefill' "$T/err" | sed -n 3p | sed 's/.*reply \([0-9]*\) tokens.*/\1/')
    [ "$n" = 24 ] || bad "Ctrl-C: the reply neither stopped nor completed ($n tokens)"
}
tmux -L "$SOCK" send-keys -t t "still here" Enter
wait_for "$T/err" '^\[prefill' 4 || bad "no reply after Ctrl-C"

# Ctrl-C at the prompt drops the half-typed line and asks again
tmux -L "$SOCK" send-keys -t t "half a line"
sleep 0.2
tmux -L "$SOCK" send-keys -t t C-c
sleep 0.2
tmux -L "$SOCK" send-keys -t t "after" Enter
wait_for "$T/err" '^\[prefill' 5 || bad "no reply after Ctrl-C at the prompt"
screen
grep -q '^> after' "$T/screen" || bad "the line after Ctrl-C at the prompt is not 'after'"

# Ctrl-D leaves with status 0
tmux -L "$SOCK" send-keys -t t C-d
wait_for "$T/rc" 'EXIT=' 1 || bad "Ctrl-D did not leave"
grep -q 'EXIT=0' "$T/rc" 2>/dev/null || bad "exit status $(cat "$T/rc" 2>/dev/null)"
[ $fail -eq 0 ] && echo "chat.sh: two turns (second prefilled $b of $total tokens), Ctrl-C, Ctrl-D: ok"
exit $fail
