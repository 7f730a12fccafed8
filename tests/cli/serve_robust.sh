#!/usr/bin/env bash
# serve_robust.sh — `llmrt serve` survives 1,000 malformed or hostile requests
# (tests/serve/robust.py: bad JSON, wrong types, huge max_tokens, 10 MB bodies, slow senders,
# abrupt disconnects mid-stream, 200 concurrent connections), then answers a well-formed request
# correctly and exits cleanly on SIGTERM — with no sanitizer report under `make asan`.
set -u
BIN=${1:?usage: serve_robust.sh LLMRT_BINARY}
. tests/serve/lib.sh
LOG=$(mktemp)
trap 'rm -f "$LOG"; kill -KILL ${SERVE_PID:-} 2>/dev/null' EXIT
pass=0 fail=0
REF=$(curl --version >/dev/null && "$BIN" run --prompt "And God said" --num_tokens 12 --device cpu --precision FP32 2>/dev/null)
serve_start "$BIN" "$LOG" --timeout 2 --quiet || { echo "0 passed, 1 failed"; exit 1; }
if python3 tests/serve/robust.py "$SERVE_URL" "$REF"; then pass=$((pass+1)); else fail=$((fail+1)); fi
if serve_stop "$LOG"; then pass=$((pass+1)); else fail=$((fail+1)); tail -30 "$LOG"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
