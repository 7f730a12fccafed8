#!/usr/bin/env bash
# demo.sh — the README's first command works: `llmrt run` with no --model uses the demo model
# and prints readable text; --json has the documented keys; perplexity runs on the held-out text.
set -u
BIN=${1:?usage: demo.sh LLMRT_BINARY}
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL $*"; }

out=$("$BIN" run --prompt "And it came to pass, when" --num_tokens 32 --device cpu 2>/dev/null)
[ "$out" = " the people saw that they were afraid, that they said, We have seen a great voice in the wilderness, and have done no more any more.
And" ] && ok || bad "default model greedy text: '$out'"

j=$("$BIN" run --prompt "And God said" --num_tokens 8 --json --device cpu --precision BF16 2>/dev/null)
python3 - "$j" <<'PY' && ok || bad "run --json: $j"
import json, sys
j = json.loads(sys.argv[1])
assert j["prompt_ids"][0] == 0 and len(j["generated_ids"]) == 8, j
assert isinstance(j["text"], str) and len(j["text"]) > 0
for k in ("prefill_ms", "decode_ms_per_step", "decode_tokens_per_s", "load_ms"):
    assert j["timings"][k] >= 0, k
PY

j=$("$BIN" run --prompt "And God said" --num_tokens 4 --json --batch_size 3 --device cpu 2>/dev/null)
python3 - "$j" <<'PY' && ok || bad "run --json batch: $j"
import json, sys
j = json.loads(sys.argv[1])
g = j["generated_ids"]
assert len(g) == 3 and all(x == g[0] for x in g) and len(g[0]) == 4, g
assert len(j["text"]) == 3
PY

# same seed, same output; another seed, other output
a=$("$BIN" run --prompt "And God said" --num_tokens 24 --temperature 1 --top-k 50 --seed 7 --device cpu 2>/dev/null)
b=$("$BIN" run --prompt "And God said" --num_tokens 24 --temperature 1 --top-k 50 --seed 7 --device cpu 2>/dev/null)
c=$("$BIN" run --prompt "And God said" --num_tokens 24 --temperature 1 --top-k 50 --seed 8 --device cpu 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] && ok || bad "seeded sampling: '$a' '$b' '$c'"

# no cache gives the same greedy tokens as the static cache
a=$("$BIN" run --prompt "And God said" --num_tokens 12 --cache none --device cpu 2>/dev/null)
b=$("$BIN" run --prompt "And God said" --num_tokens 12 --cache static_v2 --device cpu 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "cache none vs static: '$a' '$b'"

p=$("$BIN" perplexity --model models/demo-llama --file models/demo-llama/heldout.txt --json --device cpu 2>/dev/null)
python3 - "$p" <<'PY' && ok || bad "perplexity: $p"
import json, sys
j = json.loads(sys.argv[1])
assert abs(j["perplexity"] - 21.611903) / 21.611903 < 1e-3, j
PY
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
