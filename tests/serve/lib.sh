# lib.sh — starting and stopping `llmrt serve` for the shell tests in tests/cli/serve*.sh.
# serve_start BIN LOG [FLAGS...]: starts the server on a free loopback port with the demo model
#   (on SERVE_HOST, default 127.0.0.1; ::1 for IPv6), waits until GET /health answers 200; sets
#   SERVE_PID, SERVE_PORT, SERVE_URL (the URL as the server prints it).
# serve_stop: SIGTERM, waits; returns 0 when it exited 0 and its log has no sanitizer report.
serve_start() {
  local bin=$1 log=$2
  shift 2
  # SERVE_OWN_TEMPLATE=1: the model's own chat template instead of the demo one
  local tmpl=(--chat-template tests/serve/demo_chat.jinja)
  [ -n "${SERVE_OWN_TEMPLATE:-}" ] && tmpl=()
  # emptied here, not only by the redirection below: that runs in the child, after the loop
  # below may have read the port of the previous server logged to the same file
  : >"$log"
  local host=${SERVE_HOST:-127.0.0.1} url_host
  url_host=$host
  [[ $host == *:* ]] && url_host="[$host]" # IPv6 in URLs: in brackets
  local re
  re=$(printf '%s' "$url_host" | sed 's/[].[]/\\&/g')
  "$bin" serve --host "$host" --port 0 --device cpu --precision FP32 --max-batch 16 \
    "${tmpl[@]}" "$@" >"$log" 2>&1 &
  SERVE_PID=$!
  SERVE_PORT=
  for _ in $(seq 1 300); do
    SERVE_PORT=$(sed -n "s/.*listening on http:\/\/$re:\([0-9]*\).*/\1/p" "$log" | head -1)
    [ -n "$SERVE_PORT" ] && break
    kill -0 $SERVE_PID 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$SERVE_PORT" ]; then
    echo "FAIL the server did not start:"; cat "$log"; return 1
  fi
  SERVE_URL=http://$url_host:$SERVE_PORT
  for _ in $(seq 1 600); do
    [ "$(curl -sg -o /dev/null -w '%{http_code}' "$SERVE_URL/health")" = 200 ] && return 0
    kill -0 $SERVE_PID 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL the server did not become healthy:"; cat "$log"; return 1
}

serve_stop() {
  local log=$1 rc=0
  kill -TERM $SERVE_PID 2>/dev/null
  for _ in $(seq 1 200); do
    kill -0 $SERVE_PID 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 $SERVE_PID 2>/dev/null; then
    echo "FAIL the server did not exit within 20 s of SIGTERM"; kill -KILL $SERVE_PID; rc=1
  fi
  wait $SERVE_PID
  local code=$?
  if [ $code -ne 0 ]; then echo "FAIL the server exited with $code"; rc=1; fi
  if grep -q "Sanitizer" "$log"; then echo "FAIL sanitizer report:"; cat "$log"; rc=1; fi
  return $rc
}
