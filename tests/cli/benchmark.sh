#!/usr/bin/env bash
# benchmark.sh — `llmrt run --benchmark` and `llmrt bench` on a fixture (CPU): the table's
# keys, the PyTorch paths without PyTorch (python missing, a fake baseline script that
# disagrees, a failing one), flag errors, and the sweep's JSON and CSV files.
# Usage: tests/cli/benchmark.sh path/to/llmrt   (CTest passes the binary; run from the repo root)
# LLMRT_TEST_PYTORCH=1 also runs scripts/pytorch_baseline.py for real (needs torch +
# transformers; slow) and requires its greedy tokens to agree with llmrt's.
set -u
BIN=${1:?usage: benchmark.sh LLMRT_BINARY}
M=tests/fixtures/qwen3_qknorm_f32
export OMP_WAIT_POLICY=passive # other processes on a small CI machine stall spinning threads
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}
# has FILE TEXT: FILE contains TEXT (fixed string)
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2'"; }

COMMON=(--model "$M" --device cpu --precision FP32 --isl 16 --num_tokens 8 --batch_size 2
    --iterations 3 --warmup 1)

# ---- the table ----
"$BIN" run --benchmark "${COMMON[@]}" >"$T/out" 2>"$T/err" || fail "run --benchmark exit $?"
for k in "Backend" "Model Precision" "Batch size" "Median(FPS)" "Mean(FPS)" \
    "Median-Latency(ms)" "Mean-Latency(ms)" "Latency-StdDev(ms)" "Compile Time(s)" \
    "TTFT(ms)" "Decode-Median(ms)" "Decode-P99(ms)" "Prefill(tokens/s)" "Decode(tokens/s)" \
    "Bytes/Step(MB)" "Achieved(GB/s)" "Copy-BW(GB/s)" "BW-Fraction" "Peak-Memory(MB)"; do
    has "$T/out" "$k"
done
has "$T/out" "llmrt cpu"
has "$T/out" "isl 16, num_tokens 8 (no EOS stop), batch 2"
has "$T/out" "prompt ids drawn from 1..255"
# the hardware named: the CPU's model name from /proc/cpuinfo, where it has one
cpu_name=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
has "$T/out" "| cpu${cpu_name:+ $cpu_name} | isl 16"
grep -q "n/a" "$T/out" && fail "a llmrt number is n/a on the CPU"

# ---- PyTorch: python missing ----
"$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --python "$T/no-such-python" \
    >"$T/out" 2>"$T/err" || fail "missing python must not fail the run (exit $?)"
has "$T/out" "PyTorch: PyTorch not run: $T/no-such-python was not found"
has "$T/out" "Median(FPS)"

# ---- PyTorch: a baseline that reports one disagreeing mode and one failed mode ----
cat >"$T/fake.sh" <<'FAKE'
echo "progress goes to stderr" >&2
echo "not json"
echo '{"ok": true, "torch": "0.fake", "transformers": "0.fake", "device": "cpu", "results": [{"Backend": "PyTorch eager", "Model Precision": "FP32", "Batch size": 2, "Median(FPS)": 1.0, "Mean(FPS)": 1.0, "Median-Latency(ms)": 2000.0, "Mean-Latency(ms)": 2000.0, "Latency-StdDev(ms)": 0.0, "Compile Time(s)": null, "Decode-Median(ms)": 100.0, "uses_cache": true, "tokens": [[-1,-1,-1,-1,-1,-1,-1,-1],[-1,-1,-1,-1,-1,-1,-1,-1]]}, {"Backend": "PyTorch static+compile", "error": "RuntimeError: no compiler"}]}'
FAKE
"$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --python sh \
    --pytorch-script "$T/fake.sh" >"$T/out" 2>"$T/err" || fail "fake baseline run exit $?"
has "$T/out" "PyTorch eager"
has "$T/out" "torch 0.fake, transformers 0.fake; PyTorch static+compile failed: RuntimeError: no compiler"
has "$T/out" "outputs match: false (first difference: sequence 0, position 0)"
has "$T/out" "PyTorch eager: speedup of llmrt"
"$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --python sh --json \
    --pytorch-script "$T/fake.sh" >"$T/out.json" 2>"$T/err" || fail "fake --json exit $?"
has "$T/out.json" '"outputs_match": false'
has "$T/out.json" '"first_difference": {"sequence": 0, "position": 0}'

# ---- PyTorch: torch missing (the script's own answer) and a crashing script ----
echo 'echo "{\"ok\": false, \"error\": \"torch/transformers unavailable: No module named torch\"}"; exit 3' >"$T/notorch.sh"
"$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --python sh \
    --pytorch-script "$T/notorch.sh" >"$T/out" 2>"$T/err" || fail "no-torch run exit $?"
has "$T/out" "PyTorch not run: torch/transformers unavailable: No module named torch"
echo 'exit 1' >"$T/crash.sh"
"$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --python sh \
    --pytorch-script "$T/crash.sh" >"$T/out" 2>"$T/err" || fail "crashing script run exit $?"
has "$T/out" "printed no result (exit status 1)"

# ---- a given prompt instead of the random one ----
"$BIN" run --benchmark --model "$M" --device cpu --prompt-ids 5,6,7 --num_tokens 4 \
    --batch_size 2 --iterations 1 --warmup 0 --json >"$T/out.json" 2>"$T/err" ||
    fail "--prompt-ids benchmark exit $?"
has "$T/out.json" '"isl": 3'
has "$T/out.json" '"prompt": "given", "prompt_ids": [5, 6, 7]'
has "$T/out.json" "\"device_name\": \"$cpu_name\""
"$BIN" run --benchmark --model "$M" --device cpu --prompt-ids 5,600 --num_tokens 4 \
    >"$T/out" 2>"$T/err"
[ $? -eq 2 ] || fail "a prompt id beyond the vocabulary must exit 2"
has "$T/err" "token id 600 is outside the vocabulary (0..255)"

# ---- flag errors ----
"$BIN" run --benchmark --model "$M" --device cpu --isl 200 --num_tokens 8 >"$T/out" 2>"$T/err"
[ $? -eq 2 ] || fail "--isl beyond the context must exit 2"
has "$T/err" "exceeds the model's context of 128 positions"
"$BIN" bench --model "$M" --device cpu --isl 16,0 >"$T/out" 2>"$T/err"
[ $? -eq 2 ] || fail "bench --isl 0 must exit 2"

# ---- the sweep ----
"$BIN" bench --model "$M" --device cpu --precision FP32 --isl 8,16 --num_tokens 4 \
    --batch_size 1,2 --iterations 1 --warmup 0 --no-plot --out "$T/sweep" \
    >"$T/out" 2>"$T/err" || fail "bench exit $?"
[ -s "$T/sweep/bench.json" ] || fail "no bench.json"
[ "$(wc -l <"$T/sweep/bench.csv")" -eq 5 ] || fail "bench.csv: want a header and 4 rows"
head -1 "$T/sweep/bench.csv" | grep -q '^isl,num_tokens,Backend,Model Precision,Batch size,Median(FPS)' ||
    fail "bench.csv header"
grep -q '^16,4,llmrt cpu,FP32,2,' "$T/sweep/bench.csv" || fail "bench.csv lacks the isl 16 batch 2 row"
[ "$(grep -c '"isl":' "$T/sweep/bench.json")" -eq 4 ] || fail "bench.json: want 4 points"

# ---- plain run (fixed with this work): a batch without a tokenizer prints every sequence ----
"$BIN" run --model "$M" --device cpu --precision FP32 --prompt-ids 1,2,3 --num_tokens 4 \
    --batch_size 2 >"$T/out" 2>"$T/err" || fail "run --batch_size 2 exit $?"
[ "$(grep -cE '^\[[01]\]( [0-9]+){4}$' "$T/out")" -eq 2 ] || fail "batch ids not printed"

# ---- the real PyTorch baseline (opt-in) ----
if [ "${LLMRT_TEST_PYTORCH:-0}" = 1 ]; then
    "$BIN" run --benchmark "${COMMON[@]}" --enable_pytorch_run --pytorch-modes eager,no_cache \
        >"$T/out" 2>"$T/err" || fail "PyTorch run exit $?"
    has "$T/out" "PyTorch eager: speedup of llmrt"
    [ "$(grep -c 'outputs match: true' "$T/out")" -eq 2 ] || fail "PyTorch tokens differ"
fi

if [ $fails -ne 0 ]; then
    echo "--- last stdout:"; cat "$T/out"; echo "--- last stderr:"; cat "$T/err"
    exit 1
fi
echo "benchmark.sh: all checks passed"
