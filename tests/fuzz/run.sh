#!/usr/bin/env bash
# run.sh HARNESS SECONDS — replays HARNESS's committed crash inputs (tests/fuzz/crashes/HARNESS/),
# then fuzzes it for SECONDS on a fresh copy of its seeds (tests/fuzz/seeds/HARNESS/) with its
# options below. Exits non-zero on any crash, leak, sanitizer report or timeout, leaving the
# input under $FUZZ_BUILD/artifacts/HARNESS/. Run from the repository root (make fuzz-run).
set -u
h=${1:?usage: run.sh HARNESS SECONDS}
secs=${2:?usage: run.sh HARNESS SECONDS}
B=${FUZZ_BUILD:-build-fuzz}
case $h in
  fuzz_safetensors|fuzz_safetensors_index) opts="-dict=tests/fuzz/safetensors.dict -max_len=4096" ;;
  fuzz_tokenizer_load) opts="-dict=tests/fuzz/tokenizer.dict -max_len=16384" ;;
  fuzz_tokenizer_encode) opts="-dict=tests/fuzz/encode.dict -max_len=4096 -rss_limit_mb=6144" ;;
  fuzz_tokenizer_decode) opts="-max_len=2048 -rss_limit_mb=6144" ;;
  fuzz_openai_request) opts="-max_len=8192" ;;
  fuzz_config) opts="-dict=tests/fuzz/config.dict -max_len=8192" ;;
  fuzz_chat_template) opts="-max_len=16384 -rss_limit_mb=4096" ;;
  *) echo "run.sh: unknown harness $h" >&2; exit 2 ;;
esac
if [ -d "tests/fuzz/crashes/$h" ] && [ -n "$(ls -A "tests/fuzz/crashes/$h")" ]; then
  echo "== $h: replaying $(ls "tests/fuzz/crashes/$h" | wc -l) committed inputs"
  if ! "$B/$h" $opts -runs=1 "tests/fuzz/crashes/$h"/* >"$B/$h.replay.log" 2>&1; then
    tail -40 "$B/$h.replay.log"; echo "FAIL $h: a committed crash input fails again"; exit 1
  fi
fi
rm -rf "$B/corpus/$h" "$B/artifacts/$h"
mkdir -p "$B/corpus/$h" "$B/artifacts/$h"
cp -r "tests/fuzz/seeds/$h/." "$B/corpus/$h/"
echo "== $h: fuzzing for $secs s"
start=$(date +%s)
if ! "$B/$h" $opts -max_total_time="$secs" -timeout=60 -print_final_stats=1 \
     -artifact_prefix="$B/artifacts/$h/" "$B/corpus/$h" >"$B/$h.log" 2>&1; then
  tail -60 "$B/$h.log"; echo "FAIL $h: the input is in $B/artifacts/$h/"; exit 1
fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/$h.log")
echo "PASS $h: $execs executions in $(( $(date +%s) - start )) s, corpus $(ls "$B/corpus/$h" | wc -l) inputs"
