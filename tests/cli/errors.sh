#!/usr/bin/env bash
# errors.sh — every bad input gives a clear message naming what is wrong, a non-zero exit,
# and nothing on stdout. Usage: errors.sh path/to/llmrt   (run by CTest from the repo root)
set -u
BIN=${1:?usage: errors.sh LLMRT_BINARY}
FIX=tests/fixtures/llama2_mha_f32
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0

# expect_fail NAME NEEDLE -- command...   : exit != 0, stderr contains NEEDLE, stdout empty
expect_fail() {
  local name=$1 needle=$2; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$needle" "$TMP/err" && [ ! -s "$TMP/out" ] && [ $rc -lt 128 ]; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "FAIL $name: rc=$rc, stderr: $(head -c 400 "$TMP/err"), stdout: $(head -c 200 "$TMP/out")"
  fi
}

copy_fixture() { rm -rf "$TMP/m"; cp -r "$FIX" "$TMP/m"; }

expect_fail missing-model "no-such-model" -- "$BIN" run --model "$TMP/no-such-model" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; truncate -s 1000 "$TMP/m/model.safetensors"
expect_fail truncated "model.safetensors" -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; printf 'garbage' > "$TMP/m/model.safetensors"
expect_fail garbage "model.safetensors" -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; sed -i 's/"model_type": "llama"/"model_type": "mamba"/' "$TMP/m/config.json"
expect_fail model-type '"mamba" is not supported' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; sed -i 's/"hidden_size": [0-9]*,//' "$TMP/m/config.json"
expect_fail missing-field '"hidden_size"' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; sed -i 's/"intermediate_size": \([0-9]*\)/"intermediate_size": 999/' "$TMP/m/config.json"
expect_fail wrong-shape 'expected [999' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; python3 - "$TMP/m/model.safetensors" <<'PY' 2>/dev/null || sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$TMP/m/config.json"
import sys
# rename one tensor so that it is missing (same name length keeps the header valid)
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
i = b.find(b'model.layers.1.mlp.up_proj.weight'); b[i:i+5] = b'xodel'
open(p, 'wb').write(b)
PY
expect_fail missing-tensor 'model.layers.1.mlp.up_proj.weight' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
# tensors the config leaves unused that change what the model computes: a layer past
# num_hidden_layers, an attention bias with attention_bias false (both ran, computing another model)
copy_fixture; sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 1/' "$TMP/m/config.json"
expect_fail extra-layer 'num_hidden_layers = 1, but the checkpoint has tensor "model.layers.1.input_layernorm.weight"' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; python3 - "$TMP/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); data = b[8 + n:]
h['model.layers.1.self_attn.o_proj.bias'] = {'dtype': 'F32', 'shape': [64], 'data_offsets': [len(data), len(data) + 256]}
hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + data + bytes(256))
PY
expect_fail extra-bias 'tensor "model.layers.1.self_attn.o_proj.bias", a bias the model leaves out (config.json'"'"'s attention_bias is false or absent)' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
sed -i 's/"attention_bias": false/"attention_bias": true/' "$TMP/m/config.json"
expect_fail extra-bias-true 'tensor "model.layers.0.self_attn.q_proj.bias" is missing' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu

# an F32 weight beyond FP16's range: FP16 storage turns it into infinity and the logits into
# NaN, which must be reported naming the tensor (not blamed on the activations); FP32 runs it
copy_fixture; python3 - "$TMP/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
t = h['lm_head.weight']; off = 8 + n + t['data_offsets'][0]
for i in range(64): b[off + 4 * i:off + 4 * i + 4] = struct.pack('<f', 1e6)
open(p, 'wb').write(b)
PY
expect_fail fp16-overflow 'non-finite logits at step 0 of session 0 in F16' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP16 --device cpu
expect_fail fp16-overflow-tensor 'tensor "lm_head.weight" holds 1e+06, beyond F16'"'"'s range' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP16 --device cpu
expect_fail fp16-overflow-sampled 'tensor "lm_head.weight" holds 1e+06' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP16 --temperature 1 --device cpu
expect_fail fp16-overflow-logits 'tensor "lm_head.weight" holds 1e+06' -- "$BIN" logits --model "$TMP/m" --prompt-ids 1,2 --precision FP16 --device cpu
if "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP32 --device cpu >/dev/null 2>&1; then
  pass=$((pass+1))
else
  fail=$((fail+1)); echo "FAIL fp16-overflow: the same model in FP32 must run"
fi
expect_fail too-long "exceeds the model's context" -- "$BIN" run --model "$FIX" --prompt-ids 1,2,3 --num_tokens 500 --device cpu
expect_fail bad-precision "--precision must be FP32, FP16, BF16 or FP8" -- "$BIN" run --model "$FIX" --prompt-ids 1 --precision FP4
expect_fail bad-flag "unknown flag --frobnicate" -- "$BIN" run --frobnicate
expect_fail bad-ids "prompt-ids" -- "$BIN" run --model "$FIX" --prompt-ids 1,x,3 --device cpu
expect_fail id-range "outside the vocabulary" -- "$BIN" run --model "$FIX" --prompt-ids 1,99999 --num_tokens 4 --device cpu
expect_fail bad-cache "--cache must be" -- "$BIN" run --model "$FIX" --prompt-ids 1 --cache paged
expect_fail bad-device "device must be auto, cpu, cuda or cuda:N, got 'tpu'" -- "$BIN" run --model "$FIX" --prompt-ids 1 --num_tokens 4 --device tpu
expect_fail no-tokenizer "tokenizer.json" -- "$BIN" run --model "$FIX" --prompt "hello" --device cpu
expect_fail num-tokens "--num_tokens must be an integer" -- "$BIN" run --model "$FIX" --prompt-ids 1 --num_tokens -3
# a flag where a value belongs: the value was forgotten (this ran the prompt "--json", exit 0,
# without JSON output); --flag=VALUE still passes a value that starts with -
expect_fail forgotten-value "--prompt needs a value, and the next word '--json' is a flag" -- "$BIN" run --model models/demo-llama -n 2 --device cpu --prompt --json
expect_fail forgotten-value-short "--model needs a value, and the next word '-n' is a flag" -- "$BIN" run --model -n 2 --prompt-ids 1 --device cpu
expect_fail forgotten-value-tokenize "--text needs a value, and the next word '--tokenizer' is a flag" -- "$BIN" tokenize --text --tokenizer models/demo-llama
if out=$("$BIN" tokenize --tokenizer models/demo-llama --text=--x 2>&1) && [ "$out" = "[15, 15, 90]" ]; then
  pass=$((pass+1))
else
  fail=$((fail+1)); echo "FAIL value-with-dashes: --text=--json must be taken as the text"
fi
# a Hugging Face cache whose refs/<revision> is not a file holding a commit hash: a FIFO (fopen
# waited on it forever), a folder, a path leading out of snapshots/
H="$TMP/hub/models--org--tiny"; mkdir -p "$H/refs/dir" "$H/snapshots/0123456789abcdef0123456789abcdef01234567" "$TMP/hub/elsewhere"
mkfifo "$H/refs/main"; printf '../../elsewhere\n' > "$H/refs/evil"
expect_fail hub-ref-fifo "refs/main: is not a regular file (FIFO)" -- env HF_HUB_CACHE="$TMP/hub" timeout 20 "$BIN" run -m org/tiny --prompt-ids 1 -n 1 --device cpu
expect_fail hub-ref-dir "refs/dir: is a directory, not a file" -- env HF_HUB_CACHE="$TMP/hub" "$BIN" run -m org/tiny@dir --prompt-ids 1 -n 1 --device cpu
expect_fail hub-ref-path "refs/evil: holds '../../elsewhere', not a commit hash" -- env HF_HUB_CACHE="$TMP/hub" "$BIN" run -m org/tiny@evil --prompt-ids 1 -n 1 --device cpu
# a tokenizer of another model: its ids are said to come from the tokenizer (it was "token id
# 15339 is outside the vocabulary (0..4095)", for a prompt given as text)
expect_fail tokenizer-mismatch "the tokenizer makes token id 15339 of the prompt, outside the model's vocabulary (vocab_size 4096 in models/demo-llama/config.json)" -- "$BIN" run --model models/demo-llama --tokenizer ../shared/tokenizers/llama3 --prompt "hello world" -n 2 --device cpu
printf 'hello world' > "$TMP/text.txt"
expect_fail tokenizer-mismatch-ppl "token id 15339 of $TMP/text.txt, outside the model's vocabulary" -- "$BIN" perplexity --model models/demo-llama --tokenizer ../shared/tokenizers/llama3 --file "$TMP/text.txt" --device cpu
expect_fail logits-no-ids "--prompt-ids is required" -- "$BIN" logits --model "$FIX"
expect_fail unknown-sub "unknown subcommand" -- "$BIN" frobnicate

# a NaN in a weight is named, in FP32 as in FP16 (not blamed on the precision)
copy_fixture; python3 - "$TMP/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
off = 8 + n + h['model.norm.weight']['data_offsets'][0]
b[off:off + 4] = struct.pack('<f', float('nan'))
open(p, 'wb').write(b)
PY
expect_fail nan-weight 'tensor "model.norm.weight" holds a NaN' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP32 --device cpu
expect_fail nan-weight-sampled 'tensor "model.norm.weight" holds a NaN' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --precision FP32 --temperature 1 --device cpu
expect_fail nan-weight-logits 'tensor "model.norm.weight" holds a NaN' -- "$BIN" logits --model "$TMP/m" --prompt-ids 1,2 --precision FP32 --device cpu
# config values of the wrong type or range are named, not replaced or called missing
edit_config() { copy_fixture; python3 -c "import json,sys; p='$TMP/m/config.json'; j=json.load(open(p)); j['$1']=json.loads(sys.argv[1]); json.dump(j,open(p,'w'))" "$2"; }
edit_config rope_theta 0
expect_fail rope-theta-zero "rope_theta = 0 must be positive" -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
edit_config hidden_act 5
expect_fail hidden-act-type '"hidden_act" must be a string' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
edit_config model_type 123
expect_fail model-type-type '"model_type" must be a string' -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
edit_config rms_norm_eps 1e-60
expect_fail tiny-eps "the norm epsilon 1e-60" -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
# what is at the model path: a symlink loop, a dangling link, a FIFO as config.json
ln -s "$TMP/loop1" "$TMP/loop2"; ln -s "$TMP/loop2" "$TMP/loop1"
expect_fail symlink-loop "symlink loop" -- "$BIN" run --model "$TMP/loop1" --prompt-ids 1,2 --num_tokens 4 --device cpu
ln -s "$TMP/nothing-here" "$TMP/dangling"
expect_fail dangling-link "dangling symbolic link" -- "$BIN" run --model "$TMP/dangling" --prompt-ids 1,2 --num_tokens 4 --device cpu
copy_fixture; mkdir "$TMP/m/tokenizer.json"
expect_fail folder-tokenizer "tokenizer.json: is a directory, not a file" -- "$BIN" run --model "$TMP/m" --prompt hi --num_tokens 4 --device cpu
copy_fixture; rm "$TMP/m/config.json"; mkfifo "$TMP/m/config.json"
expect_fail fifo-config "not a regular file" -- "$BIN" run --model "$TMP/m" --prompt-ids 1,2 --num_tokens 4 --device cpu
# output that cannot be written: a message and a non-zero exit, never 0
expect_full() {
  local name=$1; shift
  "$@" >/dev/full 2>"$TMP/err"; local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(grep -c "writing the output failed: No space left on device" "$TMP/err")" = 1 ]; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "FAIL $name > /dev/full: rc=$rc, stderr: $(head -c 300 "$TMP/err")"
  fi
}
if [ -w /dev/full ]; then
  expect_full run-text "$BIN" run --model "$FIX" --prompt-ids 1,2 --num_tokens 4 --device cpu
  expect_full run-json "$BIN" run --model "$FIX" --prompt-ids 1,2 --num_tokens 4 --json --device cpu
  expect_full run-streamed "$BIN" run --model models/demo-llama --prompt "Once upon" --num_tokens 4 --device cpu
  expect_full run-default "$BIN" --model models/demo-llama --prompt-ids 1 --num_tokens 2 --device cpu
  expect_full help "$BIN" --help
  expect_full version "$BIN" --version
  for sub in run logits tokenize detokenize bench perplexity template chat serve bench-serve; do
    expect_full "$sub-help" "$BIN" $sub --help
  done
  expect_full logits "$BIN" logits --model "$FIX" --prompt-ids 1,2 --device cpu
  expect_full tokenize "$BIN" tokenize --tokenizer models/demo-llama --text hello
  expect_full detokenize "$BIN" detokenize --tokenizer models/demo-llama --ids 5,6,7
  expect_full perplexity "$BIN" perplexity --model models/demo-llama --file models/demo-llama/heldout.txt --device cpu
  printf '[{"role": "user", "content": "hi"}]' > "$TMP/msgs.json"
  expect_full template "$BIN" template --tokenizer models/demo-llama --messages "$TMP/msgs.json"
fi

# --top-p 0 would mean "no filter" to the library: refused with the range, as the server does
expect_fail top-p-zero "--top_p must be a number in (0, 1], got '0'" -- "$BIN" run --model "$FIX" --prompt-ids 1,2 --top-p 0 --device cpu
expect_fail chat-top-p-zero "--top_p must be a number in (0, 1], got '0'" -- "$BIN" chat --model models/demo-llama --top-p 0 --device cpu
# contradicting inputs are refused, not one of them ignored
printf '[{"role": "user", "content": "hi"}]' > "$TMP/msgs.json"
printf 'hi' > "$TMP/p.txt"
expect_fail messages-prompt "give --messages or --prompt (or --prompt-file), not both" -- "$BIN" run --model models/demo-llama --messages "$TMP/msgs.json" -p "other" -n 2 --device cpu
expect_fail messages-prompt-file "give --messages or --prompt (or --prompt-file), not both" -- "$BIN" run --model models/demo-llama --messages "$TMP/msgs.json" --prompt-file "$TMP/p.txt" -n 2 --device cpu
expect_fail messages-system "give --messages or --system, not both" -- "$BIN" run --model models/demo-llama --messages "$TMP/msgs.json" --system "be brief" -n 2 --device cpu
expect_fail tools-no-chat "--tools goes through the chat template" -- "$BIN" run --model models/demo-llama -p hi --tools "$TMP/msgs.json" -n 2 --device cpu
expect_fail tokenize-text-file "give one of --text, --file and --jsonl" -- "$BIN" tokenize --tokenizer models/demo-llama --text hi --file "$TMP/p.txt"
expect_fail tokenize-text-jsonl "give one of --text, --file and --jsonl" -- "$BIN" tokenize --tokenizer models/demo-llama --text hi --jsonl
expect_fail detokenize-ids-jsonl "give --ids 1,2,3 or --jsonl, not both" -- "$BIN" detokenize --tokenizer models/demo-llama --ids 1 --jsonl
# list flags: the subcommand in the message; bench's lists are positive and say so
expect_fail prompt-ids-empty "llmrt run: --prompt-ids: no token ids given" -- "$BIN" run --model "$FIX" --prompt-ids "" --device cpu
expect_fail ids-negative "llmrt detokenize: --ids: expected comma-separated non-negative token ids, got '1,-2'" -- "$BIN" detokenize --tokenizer models/demo-llama --ids 1,-2
expect_fail isl-gap "llmrt bench: --isl: expected comma-separated positive integers, got '8,,16'" -- "$BIN" bench --model models/demo-llama --isl 8,,16 --no-plot
expect_fail isl-zero "llmrt bench: --isl: expected comma-separated positive integers, got '0'" -- "$BIN" bench --model models/demo-llama --isl 0 --no-plot
expect_fail logits-ids-junk "llmrt logits: --prompt-ids: unexpected 'x' in '1x'" -- "$BIN" logits --model "$FIX" --prompt-ids 1x
# a model without a tokenizer: the subcommand's own flag for ids
copy_fixture; printf 'some text' > "$TMP/t.txt"
expect_fail perplexity-no-tokenizer "has no tokenizer.json; give a tokenizer (--tokenizer PATH) or the prompt as --ids" -- "$BIN" perplexity --model "$TMP/m" --file "$TMP/t.txt" --device cpu
expect_fail run-no-tokenizer "has no tokenizer.json; give a tokenizer (--tokenizer PATH) or the prompt as --prompt-ids" -- "$BIN" run --model "$TMP/m" -p hi --device cpu
# --quant_format's help names int4, which it takes
for sub in run logits perplexity chat; do
  if "$BIN" $sub --help | grep -q -- "fp8 (E4M3), int8, int4 or none"; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "FAIL $sub --help: --quant_format does not name int4"; fi
done

# and the good path works: ids out, exit 0
if out=$("$BIN" run --model "$FIX" --prompt-ids 1,2,3 --num_tokens 4 --device cpu --ignore-eos 2>/dev/null) && [ "$(echo $out | wc -w)" = 4 ]; then
  pass=$((pass+1))
else
  fail=$((fail+1)); echo "FAIL good-path: '$out'"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
