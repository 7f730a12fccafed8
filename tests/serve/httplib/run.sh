#!/usr/bin/env bash
# run.sh — the HTTP library measurement of docs/SERVER.md: builds the three micro-servers, drives
# each with wrk (GET /json and GET /sse, keep-alive, C connections) and prints requests/s and
# latency percentiles. Loopback only. Usage: tests/serve/httplib/run.sh [SECONDS] [CONNECTIONS]
set -eu
cd "$(dirname "$0")"
D=${1:-8}
C=${2:-64}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc=(gcc -O2 -Wall -Wextra -Wno-unused-parameter)
"${cc[@]}" -o "$out/mhd" mhd_bench.c -lmicrohttpd -lpthread
"${cc[@]}" -o "$out/civetweb" civetweb_bench.c -lcivetweb -lpthread
"${cc[@]}" -o "$out/h2o" h2o_bench.c -lh2o -luv -lssl -lcrypto -lpthread
port=18081
for lib in mhd civetweb h2o; do
  "$out/$lib" $port >/dev/null 2>&1 &
  pid=$!
  sleep 0.5
  for path in json sse; do
    r=$(wrk -t1 -c"$C" -d"${D}s" --latency "http://127.0.0.1:$port/$path")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$r")
    p50=$(awk '$1=="50%" {print $2}' <<<"$r")
    p99=$(awk '$1=="99%" {print $2}' <<<"$r")
    err=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$r" | tr '\n' ' ')
    printf '%-9s /%-4s %10s req/s  p50 %8s  p99 %8s  %s\n' "$lib" "$path" "$rps" "$p50" "$p99" "$err"
  done
  kill -TERM $pid; wait $pid || true
  port=$((port+1))
done
