#!/usr/bin/env bash
# habits.sh — what people used to run_llm.py, transformers and llama.cpp expect of the command:
# --version, short flags, --prompt - and --prompt-file, --prefill-chunk, "did you mean" for flags and
# subcommands, run_llm.py's flags accepted (said once), Ctrl-C ending a run with its timings, a
# newline before the timing line when piped, load progress lines in a log and --quiet, options
# that need --benchmark, --benchmark defaults that fit the demo model's context, --chat and
# `llmrt template` (exact bytes, raise_exception). Usage: habits.sh path/to/llmrt (from the repo
# root, as CTest runs it)
set -u
BIN=${1:?usage: habits.sh LLMRT_BINARY}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
run() { "$BIN" run --device cpu --precision FP32 "$@"; }

# --version: one line, exit 0
v=$("$BIN" --version) && [[ "$v" == "llmrt "[0-9]* ]] && ok || bad "--version: '$v'"

# short flags and the long ones give the same text; --prompt - and --prompt-file too
ref=$(run --model models/demo-llama --prompt "And God said" --num_tokens 12 2>/dev/null)
[ -n "$ref" ] && ok || bad "reference run"
out=$(run -m models/demo-llama -p "And God said" -n 12 -t 0 2>/dev/null)
[ "$out" = "$ref" ] && ok || bad "short flags: '$out' vs '$ref'"
out=$(printf 'And God said' | run --prompt - -n 12 2>/dev/null)
[ "$out" = "$ref" ] && ok || bad "--prompt -: '$out'"
printf 'And God said' > "$T/p.txt"
out=$(run --prompt-file "$T/p.txt" -n 12 2>/dev/null)
[ "$out" = "$ref" ] && ok || bad "--prompt-file: '$out'"

# --prefill-chunk: a prompt fed 3 tokens per forward step gives the same text; 0 is refused
out=$(run -p "And God said" -n 12 --prefill-chunk 3 2>/dev/null)
[ "$out" = "$ref" ] && ok || bad "--prefill-chunk 3: '$out'"
run -p "And God said" -n 2 --prefill-chunk 0 > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "prefill_chunk must be an integer in \[1," "$T/err" && [ ! -s "$T/out" ] &&
  ok || bad "--prefill-chunk 0: rc $rc, $(cat "$T/err")"

# stdout ends with a newline when piped, so the timing line starts on its own
run -p "And God said" -n 12 > "$T/out" 2>/dev/null
[ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ] && ok || bad "no newline at the end of piped text"

# misspelled flags and subcommands get the nearest name, exit 2, nothing on stdout
"$BIN" run --num_token 4 > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "did you mean --num_tokens?" "$T/err" && [ ! -s "$T/out" ] && ok ||
  bad "misspelled flag: rc $rc, $(cat "$T/err")"
"$BIN" rnu > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "did you mean 'run'?" "$T/err" && [ ! -s "$T/out" ] && ok ||
  bad "misspelled subcommand: rc $rc, $(head -1 "$T/err")"

# run_llm.py's flags are accepted; each says once that it has no effect
out=$(run --cudagraph --debug --min_block_size 3 --model_precision FP32 -p "And God said" -n 12 2> "$T/err")
[ "$out" = "$ref" ] && [ "$(grep -c 'cudagraph is run_llm.py' "$T/err")" = 1 ] &&
  grep -q 'min_block_size is run_llm.py' "$T/err" && ok || bad "run_llm.py flags: $(cat "$T/err")"

# benchmark-only options without --benchmark: a warning, and the run goes on
run -p "And God said" -n 12 --isl 64 --iterations 3 > "$T/out" 2> "$T/err"
[ "$(cat "$T/out")" = "$ref" ] &&
  grep -q -- "--isl, --iterations have no effect without --benchmark" "$T/err" && ok ||
  bad "benchmark-only flags: $(cat "$T/err")"

# load progress: one line per tenth of the layers in a log (stderr is a file here); --quiet:
# nothing but errors
run -p "And God said" -n 4 > /dev/null 2> "$T/err"
[ "$(grep -c '^llmrt: loading: ' "$T/err")" -ge 2 ] && grep -q '^llmrt: loading: 100% ' "$T/err" &&
  ok || bad "load progress lines: $(cat "$T/err")"
run -p "And God said" -n 4 --quiet > "$T/out" 2> "$T/err"
[ ! -s "$T/err" ] && [ -s "$T/out" ] && ok || bad "--quiet left on stderr: $(cat "$T/err")"

# --cache none: no KV cache size is claimed; a one-step decode is not called a rate
run -p "And God said" -n 4 --cache none > /dev/null 2> "$T/err"
grep -q "KV cache [0-9]" "$T/err" && bad "--cache none reports a KV cache: $(cat "$T/err")" || ok
run -p "And God said" -n 2 > /dev/null 2> "$T/err"
grep -q "tok/s)" "$T/err" && grep "decode" "$T/err" | grep -q "1 step.*tok/s" &&
  bad "a one-step decode rate: $(cat "$T/err")" || ok

# --benchmark's defaults (isl 2048) fit the demo model's 512 positions, with a note
run --benchmark --iterations 1 --warmup 0 -n 8 > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 0 ] && grep -q "BW-Fraction" "$T/out" && grep -qi "isl" "$T/err" && ok ||
  bad "benchmark defaults on the demo model: rc $rc, $(cat "$T/err")"

# Ctrl-C during a run: the text so far, a newline, the timings, exit 130
"$BIN" run --device cpu -p "x" -n 500 --ignore-eos --cache none > "$T/out" 2> "$T/err" &
pid=$!
for _ in $(seq 200); do grep -q "^llmrt: loaded" "$T/err" && break; sleep 0.05; done
sleep 0.5
kill -INT $pid
wait $pid; rc=$?
[ $rc = 130 ] && grep -q "decode [0-9]* steps" "$T/err" && grep -qi "interrupted" "$T/err" &&
  [ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ] && ok ||
  bad "Ctrl-C: rc $rc, stderr: $(cat "$T/err")"

# --chat renders the prompt with the chat template: its ids are the template's text tokenized
# without special tokens (as apply_chat_template does)
printf '[{"role": "user", "content": "And God said"}]' > "$T/m.json"
"$BIN" template --tokenizer models/demo-llama --messages "$T/m.json" --add-generation-prompt > "$T/text"
[ "$(cat "$T/text")" = "$(printf 'user: And God said\nassistant:')" ] && ok ||
  bad "template text: '$(cat "$T/text")'"
[ "$(tail -c 1 "$T/text")" = ":" ] && ok || bad "template output ends with an added newline"
ids=$("$BIN" tokenize --tokenizer models/demo-llama --file "$T/text")
j=$(run --chat -p "And God said" -n 4 --json 2>/dev/null)
python3 - "$j" "$ids" <<'PY' && ok || bad "--chat prompt ids: $j vs $ids"
import json, sys
j, ids = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert j["prompt_ids"] == ids, (j["prompt_ids"], ids)
PY
j2=$(run --messages "$T/m.json" -n 4 --json 2>/dev/null)
[ "$(echo "$j2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_ids"])')" = \
  "$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_ids"])')" ] && ok ||
  bad "--messages differs from --chat: $j2"

# --tokenizer brings its chat template (as in transformers and `llmrt template --tokenizer`), a
# folder or its tokenizer.json alike; one without a template is refused, not replaced by the
# model folder's
mkdir -p "$T/tpl" "$T/notpl"
cp models/demo-llama/tokenizer.json "$T/tpl/"
cp models/demo-llama/tokenizer.json "$T/notpl/"
printf '{"chat_template": "TPL:{{ messages[0].content }}"}' > "$T/tpl/tokenizer_config.json"
ids=$("$BIN" tokenize --tokenizer models/demo-llama --text "TPL:And God said")
for tok in "$T/tpl" "$T/tpl/tokenizer.json"; do
  j=$(run --tokenizer "$tok" --chat -p "And God said" -n 2 --json 2>/dev/null)
  [ "$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_ids"])')" = "$ids" ] &&
    ok || bad "--chat --tokenizer $tok: $j vs $ids"
  j=$(run --tokenizer "$tok" --messages "$T/m.json" -n 2 --json 2>/dev/null)
  [ "$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_ids"])')" = "$ids" ] &&
    ok || bad "--messages --tokenizer $tok: $j vs $ids"
done
run --tokenizer "$T/notpl" --chat -p "And God said" -n 2 > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 1 ] && grep -q "notpl: no" "$T/err" && [ ! -s "$T/out" ] && ok ||
  bad "--chat with a tokenizer without a template: rc $rc, $(cat "$T/err")"

# a chat prompt or system message that is not valid UTF-8 is repaired (U+FFFD) and warned of, as
# a plain prompt is; it used to go without its content (an empty user turn), silently
pids() { python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_ids"])'; }
fixed=$(run --tokenizer "$T/tpl" --chat -p $'And \xef\xbf\xbd God' -n 2 --json 2>/dev/null | pids)
j=$(run --tokenizer "$T/tpl" --chat -p $'And \xff God' -n 2 --json 2> "$T/err" | pids)
[ -n "$fixed" ] && [ "$j" = "$fixed" ] && grep -q "the prompt is not valid UTF-8; 1 invalid" "$T/err" &&
  ok || bad "--chat invalid UTF-8 prompt: $j vs $fixed, $(cat "$T/err")"
printf '{"chat_template": "TPL:{{ messages[0].content }}|{{ messages[1].content }}"}' > "$T/tpl/tokenizer_config.json"
fixed=$(run --tokenizer "$T/tpl" --system $'S\xef\xbf\xbd' -p "And God said" -n 2 --json 2>/dev/null | pids)
j=$(run --tokenizer "$T/tpl" --system $'S\xc3' -p "And God said" -n 2 --json 2> "$T/err" | pids)
[ -n "$fixed" ] && [ "$j" = "$fixed" ] && grep -q -- "--system is not valid UTF-8" "$T/err" && ok ||
  bad "--system invalid UTF-8: $j vs $fixed, $(cat "$T/err")"
# llmrt chat: the typed line likewise (the same prefill as the repaired line)
printf 'And \xef\xbf\xbd God\n' | "$BIN" chat --model models/demo-llama --device cpu -n 1 2> "$T/err1" > /dev/null
printf 'And \xff God\n' | "$BIN" chat --model models/demo-llama --device cpu -n 1 2> "$T/err" > /dev/null
a=$(grep -o '^\[prefill [0-9]*' "$T/err1"); b=$(grep -o '^\[prefill [0-9]*' "$T/err")
[ -n "$a" ] && [ "$a" = "$b" ] && grep -q "the user message is not valid UTF-8" "$T/err" && ok ||
  bad "chat invalid UTF-8 line: '$b' vs '$a', $(cat "$T/err")"

# --quiet: taken by every subcommand that loads a model; no progress and no notes (the
# weight-only note of --quant_format), errors only
for cmd in "run -p hi -n 2" "logits --prompt-ids 1,2" "perplexity --ids 1,2,3" \
           "bench --isl 4 --num_tokens 2 --iterations 1 --warmup 0 --no-plot --out $T/bench"; do
  "$BIN" $cmd --model models/demo-llama --device cpu --quant_format int8 --quiet > /dev/null 2> "$T/err"; rc=$?
  [ $rc = 0 ] && [ ! -s "$T/err" ] && ok || bad "--quiet ($cmd): rc $rc, stderr: $(cat "$T/err")"
done
"$BIN" perplexity --model models/demo-llama --device cpu --quiet --ids 1 > /dev/null 2> "$T/err"
[ -s "$T/err" ] && ok || bad "--quiet hid an error"

# llmrt chat: an unknown /command is refused with the list (not sent to the model); empty lines
# are ignored; // sends a line beginning with /
printf '/bogus\n\n  \nAnd it came\n' | "$BIN" chat --model models/demo-llama --device cpu -n 4 > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 0 ] && grep -q "unknown command /bogus; the commands are /reset, /system TEXT and /quit" "$T/err" &&
  [ "$(grep -c '^\[prefill' "$T/err")" = 1 ] && ok || bad "chat /bogus and empty lines: rc $rc, $(cat "$T/err")"
printf '//bogus\n' | "$BIN" chat --model models/demo-llama --device cpu -n 4 > "$T/out" 2> "$T/err"
[ "$(grep -c '^\[prefill' "$T/err")" = 1 ] && ! grep -q "unknown command" "$T/err" && ok ||
  bad "chat //: $(cat "$T/err")"

# a template's raise_exception: its message, exit 1, nothing on stdout
mkdir -p "$T/tok"
cp models/demo-llama/tokenizer.json "$T/tok/"
printf '{"chat_template": "{%%- if messages[0].role != \\"system\\" %%}{{ raise_exception(\\"the first message must be system\\") }}{%%- endif %%}x"}' \
  > "$T/tok/tokenizer_config.json"
"$BIN" template --tokenizer "$T/tok" --messages "$T/m.json" > "$T/out" 2> "$T/err"; rc=$?
[ $rc = 1 ] && grep -q "the first message must be system" "$T/err" && [ ! -s "$T/out" ] && ok ||
  bad "raise_exception: rc $rc, $(cat "$T/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
