#!/usr/bin/env bash
# serve_bench.sh — `llmrt bench-serve` against `llmrt serve` (demo model): closed loop and
# Poisson arrivals, completions and chat, exact prompt and output lengths, the JSON it writes.
set -u
BIN=${1:?usage: serve_bench.sh LLMRT_BINARY}
. tests/serve/lib.sh
LOG=$(mktemp)
OUT=$(mktemp -d)
trap 'rm -rf "$LOG" "$OUT"; kill -KILL ${SERVE_PID:-} 2>/dev/null' EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
serve_start "$BIN" "$LOG" --quiet || { echo "0 passed, 1 failed"; exit 1; }
out=$("$BIN" bench-serve --url "$SERVE_URL" --concurrency 4 --num-prompts 12 --isl 40 --osl 9 --out "$OUT" --no-plot 2>&1)
rc=$?
[ $rc -eq 0 ] && [[ "$out" == *"12 ok, 0 failed"* && "$out" == *"time to first token (ms)"* ]] && ok || bad "closed loop (rc $rc): $out"
python3 - "$OUT/bench_serve.json" <<'PY' && ok || bad "bench_serve.json: $(head -c 600 "$OUT/bench_serve.json")"
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"]
assert r["completed"] == 12 and r["failed"] == 0, r
assert r["prompt_tokens"] == 12 * 40 and r["output_tokens"] == 12 * 9, r
assert all(x["ok"] and x["output_tokens"] == 9 for x in j["requests"])
for k in ("ttft", "itl", "tpot", "e2e"):
    assert 0 < r[k]["p50_ms"] <= r[k]["p90_ms"] <= r[k]["p99_ms"], (k, r[k])
PY
out=$("$BIN" bench-serve --url "$SERVE_URL/v1" --request-rate 50 --num-prompts 8 --isl 16 --osl 4 --chat 2>&1)
[ $? -eq 0 ] && [[ "$out" == *"8 ok, 0 failed"* && "$out" == *"Poisson"* ]] && ok || bad "Poisson chat: $out"
out=$("$BIN" bench-serve --url "http://127.0.0.1:1" --num-prompts 2 2>&1)
[ $? -ne 0 ] && ok || bad "no server: $out"
serve_stop "$LOG" && ok || bad "server exit"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
