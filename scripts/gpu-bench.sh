#!/usr/bin/env bash
# gpu-bench.sh — the benchmark on the GPU machine, in one device call: a random-weight model of
# a real card's shape, `llmrt run --benchmark --enable_pytorch_run` at the seed's defaults, and
# an `llmrt bench` sweep; everything lands in $OUT (default ./out). See docs/BENCHMARK.md.
#
#   build machine:  PATH=$PATH:/usr/local/cuda/bin make BUILD=build-cuda CUDA=1 &&
#                   scripts/gpu-check.sh --stage build-cuda &&
#                   cp -r ../shared/configs/Llama-3.2-1B-Instruct .carry/cuda/
#   device machine: scripts/gpu-bench.sh            (run from the repository root)
# Environment (defaults in brackets):
#   CARRY [.carry/cuda]   the staged llmrt binary and libraries
#   CARD [Llama-3.2-1B-Instruct]  the config folder under $CARRY
#   PRECISION [FP16]  PARTS ["single sweep"]  DEVICE [cuda] (cpu: a dry run of this script)
#   ISL [2048] NUM_TOKENS [128] BATCH [1] ITER [10]          the single point (run_llm.py's)
#   SWEEP_ISL [128,512,2048] SWEEP_BATCH [1,4,16] SWEEP_TOKENS [128] SWEEP_ITER [5]
#   SWEEP_MODES [eager] (the PyTorch runs beside llmrt's; none: llmrt alone)
set -uo pipefail
CARRY=${CARRY:-.carry/cuda}
CARD=${CARD:-Llama-3.2-1B-Instruct}
PRECISION=${PRECISION:-FP16}
PARTS=${PARTS:-single sweep}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-out}
mkdir -p "$OUT"
if [ -f "$CARRY/bin.tar.xz" ] && [ ! -x "$CARRY/llmrt" ]; then # staged by gpu-check.sh --stage
    bin=$(mktemp -d)
    tar -C "$bin" -xJf "$CARRY/bin.tar.xz"
    cp -r "$CARRY"/lib "$CARRY/$CARD" "$bin/" 2>/dev/null
    CARRY=$bin
fi
# the card's config.json: beside the binaries, or where gpu-check.sh --stage puts it
[ -d "$CARRY/$CARD" ] || [ ! -d "$CARRY/configs/$CARD" ] || ln -s "configs/$CARD" "$CARRY/$CARD"
libdirs="$CARRY/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && libdirs="$libdirs:$d"
done
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
M=/tmp/bench-model-$CARD
if [ ! -f "$M/config.json" ]; then
    python3 scripts/make_random_model.py "$CARRY/$CARD" "$M" --dtype bf16 || exit 1
fi
if [[ " $PARTS " == *" single "* ]]; then
    "$CARRY/llmrt" run --benchmark --model "$M" --device "$DEVICE" --precision "$PRECISION" \
        --isl "${ISL:-2048}" --num_tokens "${NUM_TOKENS:-128}" --batch_size "${BATCH:-1}" \
        --iterations "${ITER:-10}" --warmup 2 --enable_pytorch_run \
        --pytorch-modes "${MODES:-eager,static_compile,no_cache}" \
        >"$OUT/benchmark.txt" 2>"$OUT/benchmark.log"
    echo "---- run --benchmark (exit $?)"
    cat "$OUT/benchmark.txt"
fi
if [[ " $PARTS " == *" sweep "* ]]; then
    "$CARRY/llmrt" bench --model "$M" --device "$DEVICE" --precision "$PRECISION" \
        --isl "${SWEEP_ISL:-128,512,2048}" --num_tokens "${SWEEP_TOKENS:-128}" \
        --batch_size "${SWEEP_BATCH:-1,4,16}" --iterations "${SWEEP_ITER:-5}" --warmup 1 \
        $([ "${SWEEP_MODES:-eager}" = none ] ||
            echo --enable_pytorch_run --pytorch-modes "${SWEEP_MODES:-eager}") --no-plot \
        --out "$OUT/sweep" >"$OUT/sweep.txt" 2>"$OUT/sweep.log"
    echo "---- bench sweep (exit $?)"
    grep -E "^(llmrt benchmark|Backend|Generate|Decode-Median|BW-Fraction)|speedup" "$OUT/sweep.txt"
fi
