#!/usr/bin/env bash
# gpu-check.sh — one device call: the CUDA op tests, the end-to-end tests on CUDA and the
# CUDA microbenchmark, from binaries built elsewhere and carried in $CARRY (default .carry/cuda,
# filled by `scripts/gpu-check.sh --stage BUILD_DIR` on the build machine). Logs go to $OUT
# (default ./out); a short table is printed last.
#
#   build machine:  cmake -S . -B build-cuda -DLLMRT_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
#                     -DLLMRT_SHARED=ON -DLLMRT_CUDA_ARCHS=90a-real -DCMAKE_BUILD_RPATH='$ORIGIN/lib' \
#                     -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags \
#                     -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags
#                   (RPATH, not RUNPATH: the binaries' path also finds their libraries' libraries)
#                   cmake --build build-cuda && scripts/gpu-check.sh --stage build-cuda
#                   (a shared libllmrt for the one Hopper architecture: every staged binary in
#                   ~21 MB; static binaries for three architectures are ~17 MB each, and what
#                   travels to the device is at most 64 MB with the repository)
#   device machine: scripts/gpu-check.sh            (run from the repository root)
#   a variant:      scripts/gpu-check.sh --stage-variant build-cuda NAME -DDK_CONSUMER_WARPS=12
#                   (the build's binaries with cuda_decode.cu compiled with the flags added, in
#                   .carry/NAME: parts ab and vops take it as OLD_CARRY=.carry/NAME)
# Environment: GPU_CHECK_ONLY="ops e2e cli bench" selects the parts (default ops e2e demo hf cli
# bench; the others: sched, sample, caps, long, ab, vops, qckpt, quant, serve, batch, ppl, opprof,
# kvfp8, targets, ncu, sweep, probe); GPU_CHECK_TAR=1 leaves only $OUT/logs.tgz (a device call brings
# back few files: the others would be left out); part ab compares `llmrt run --benchmark` of this
# build with the builds staged in $OLD_CARRY (default .carry/old: a bin.tar.xz with its llmrt) on
# random-weight models of the real cards in $AB_CARDS (layer matrices quantized on load as each
# of $AB_QUANT), same card, same call; part vops runs those builds' test_cuda_ops and test_e2e.
set -uo pipefail
CARRY=${CARRY:-.carry/cuda}

if [ "${1:-}" = "--stage-variant" ]; then
    # --stage-variant BUILD_DIR NAME NVCC_FLAGS...: BUILD_DIR's llmrt (and test_cuda_ops,
    # test_e2e) with a libllmrt.so whose
    # cuda_decode.cu is compiled with NVCC_FLAGS added (e.g. -DDK_CONSUMER_WARPS=12), in
    # .carry/NAME/bin.tar.xz for part ab (OLD_CARRY=.carry/NAME; VARIANT_SRC=src/backend/cuda/
    # cuda_flash.cu compiles that file with the flags instead); the binary's RPATH
    # ($ORIGIN/lib) finds that library before $CARRY/lib. BUILD_DIR: the shared build above.
    build=$(cd "${2:?usage: gpu-check.sh --stage-variant BUILD_DIR NAME FLAGS...}" && pwd)
    name=${3:?usage: gpu-check.sh --stage-variant BUILD_DIR NAME FLAGS...}
    shift 3
    d=$(mktemp -d) && mkdir -p "$d/lib" || exit 1
    root=$PWD dir=CMakeFiles/llmrt.dir src=${VARIANT_SRC:-src/backend/cuda/cuda_decode.cu}
    fm="$build/$dir/flags.make"
    (cd "$build" &&
        eval /usr/local/cuda/bin/nvcc -forward-unknown-to-host-compiler \
            "$(sed -n 's/^CUDA_DEFINES = //p' "$fm")" "$(sed -n 's/^CUDA_INCLUDES = //p' "$fm")" \
            "$(sed -n 's/^CUDA_FLAGS = //p' "$fm")" '"$@"' -x cu \
            -c "$root/$src" -o "$d/variant.cu.o" &&
        sed "s#$dir/$src.o#$d/variant.cu.o#" "$dir/objects1" \
            >"$d/objects1" &&
        eval "$(sed -e "s#-o libllmrt.so#-o $d/lib/libllmrt.so#" -e "s#@$dir/objects1#@$d/objects1#" \
            "$dir/link.txt")") || exit 1
    bins=$(cd "$build" && ls llmrt test_cuda_ops test_e2e 2>/dev/null) # part vops runs the tests
    for b in $bins; do cp "$build/$b" "$d/"; done
    strip --strip-unneeded "$d/lib/libllmrt.so" # what travels is at most 64 MB
    mkdir -p ".carry/$name"
    tar -C "$d" -cJf ".carry/$name/bin.tar.xz" $bins lib/libllmrt.so
    echo "$* -> .carry/$name/bin.tar.xz"
    du -sh ".carry/$name"
    rm -rf "$d"
    exit 0
fi
if [ "${1:-}" = "--stage" ]; then
    build=${2:?usage: gpu-check.sh --stage BUILD_DIR}
    rm -rf "$CARRY" && mkdir -p "$CARRY"
    cp scripts/gpu-check.sh "$CARRY/"
    stage=$(mktemp -d)
    mkdir -p "$stage/lib" "$stage/configs"
    files=()
    # STAGE_BINS="llmrt test_cuda_ops" stages only those (each binary holds every kernel: all
    # of them may not fit what travels)
    bins=${STAGE_BINS:-test_cuda_ops test_cuda_sample test_e2e test_demo_models test_argmax bench_cuda test_scheduler llmrt}
    for f in $(for b in $bins; do echo "$build/$b"; done); do
        [ -x "$f" ] && [ -f "$f" ] && { files+=("$(basename "$f")"); cp "$f" "$stage/"; }
    done
    # shared libraries the device image may lack (it has no network to install them): every
    # library the binaries link but the C runtime and CUDA's own (cuBLASLt is there)
    for f in "${files[@]}"; do ldd "$build/$f"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
        sort -u | grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libcuda|libcublas[^/]*|libcudart|libstdc\+\+|libgcc_s)\.so' |
        while read -r p; do cp -L "$p" "$stage/lib/"; done
    [ -f "$stage/lib/libllmrt.so" ] && strip --strip-unneeded "$stage/lib/libllmrt.so"
    # every real card's config.json (random-weight models, the transformers comparison;
    # ../shared does not travel)
    for d in ../shared/configs/*/; do
        [ -f "$d/config.json" ] && cp -r "$d" "$stage/configs/"
    done
    # STAGE_LEAN=1: no tokenizer and no quantized checkpoints (parts serve and qckpt need them),
    # for room beside variant builds in what travels
    # a tokenizer for the served model (part serve)
    [ -z "${STAGE_LEAN:-}" ] && cp ../shared/tokenizers/llama3_1/tokenizer.json \
        ../shared/tokenizers/llama3_1/tokenizer_config.json \
        "$stage/configs/Llama-3.2-1B-Instruct/" 2>/dev/null
    # block-wise FP8 checkpoints of a demo model (part qckpt; the device may lack ml_dtypes)
    for f in $([ -z "${STAGE_LEAN:-}" ] && echo fp8-block ct-group); do
        python3 scripts/make_fp8_checkpoint.py --model models/demo-llama --format $f \
            --out "$stage/qckpt/demo-llama-$f" --ref "$stage/qckpt/ref" >/dev/null &&
            rm -rf "$stage/qckpt/ref"
    done
    # all of it compressed (the tree that travels is <= 64 MiB); the device call unpacks it
    tar -C "$stage" -cJf "$CARRY/bin.tar.xz" .
    rm -rf "$stage"
    du -sh "$CARRY"
    exit 0
fi

OUT=${OUT:-out}
mkdir -p "$OUT"
if [ -f "$CARRY/bin.tar.xz" ]; then # unpack the staged binaries next to this script
    bin=$(mktemp -d)
    tar -C "$bin" -xJf "$CARRY/bin.tar.xz"
    CARRY=$bin
fi
ONLY=${GPU_CHECK_ONLY:-ops e2e demo hf cli bench}
# the staged binaries find $CARRY/lib by their RUNPATH ($ORIGIN/lib: build with
# -DCMAKE_BUILD_RPATH='$ORIGIN/lib'); only CUDA's libraries go on the path, so that Python keeps
# the image's own libraries
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && libdirs="$libdirs:$d"
done
if ! ls /usr/local/cuda/lib64/libcublasLt.so.13 >/dev/null 2>&1; then
    p=$(find / -name 'libcublasLt.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
    [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
fi
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv \
    | tee "$OUT/gpu.txt"

declare -a rows
run_part() { # name, log, command...
    local name=$1 log=$2
    shift 2
    local t0=$(date +%s%N)
    "$@" >"$OUT/$log" 2>&1
    local rc=$?
    local t=$(( ($(date +%s%N) - t0) / 1000000 ))
    local summary=$(grep -E "passed, .* failed|^SKIP" "$OUT/$log" | tail -1)
    rows+=("$(printf '%-28s rc=%-3d %7d ms  %s' "$name" "$rc" "$t" "$summary")")
    if [ $rc -ne 0 ]; then
        echo "---- $name failed; last lines of $log:"
        grep -E "FAIL|CHECK failed|mismatch|error" "$OUT/$log" | head -40
        tail -5 "$OUT/$log"
    fi
}

# random_model CARD PART: the path of a random-weight BF16 model of the card's config.json
# (made once per machine, in /tmp; its log in $OUT/PART-make-CARD.log)
random_model() {
    local M=/tmp/ab-model-$1
    [ -f "$M/config.json" ] ||
        python3 scripts/make_random_model.py "$CARRY/configs/$1" "$M" --dtype bf16 \
            >"$OUT/$2-make-$1.log" 2>&1
    echo "$M"
}

if [[ " $ONLY " == *" ops "* ]]; then
    run_part test_cuda_ops test_cuda_ops.log "$CARRY/test_cuda_ops"
    grep -E "max \|x - cpu\|" "$OUT/test_cuda_ops.log" | head -24
    [ -x "$CARRY/test_argmax" ] && run_part test_argmax test_argmax.log "$CARRY/test_argmax"
    [ -x "$CARRY/test_cuda_sample" ] &&
        run_part test_cuda_sample test_cuda_sample.log "$CARRY/test_cuda_sample"
fi
if [[ " $ONLY " == *" e2e "* ]]; then
    for t in "$CARRY"/test_e2e*; do
        [ -x "$t" ] || continue
        run_part "$(basename "$t") (cuda)" "$(basename "$t").log" env LLMRT_TEST_DEVICE=cuda "$t"
    done
fi
if [[ " $ONLY " == *" sched "* ]] && [ -x "$CARRY/test_scheduler" ]; then
    run_part "test_scheduler (cuda)" test_scheduler.log env LLMRT_TEST_DEVICE=cuda \
        "$CARRY/test_scheduler"
fi
if [[ " $ONLY " == *" demo "* ]] && [ -x "$CARRY/test_demo_models" ]; then
    run_part "test_demo_models (cuda)" test_demo_models.log env LLMRT_TEST_DEVICE=cuda \
        "$CARRY/test_demo_models"
    grep perplexity "$OUT/test_demo_models.log"
fi
if [[ " $ONLY " == *" hf "* ]] && [ -x "$CARRY/llmrt" ]; then
    # llmrt vs transformers on random-weight models of the real cards' full shapes; Gemma's
    # prompt (600) is longer than its 512-token window
    run_part "compare_hf (cuda)" compare_hf.log python3 scripts/compare_hf.py \
        --llmrt "$CARRY/llmrt" --device cuda --prompt-len 200 \
        --cards "$CARRY/configs/Llama-3.2-1B-Instruct" "$CARRY/configs/Qwen3-0.6B" \
        "$CARRY/configs/gpt2"
    run_part "compare_hf gemma (cuda)" compare_hf_gemma.log python3 scripts/compare_hf.py \
        --llmrt "$CARRY/llmrt" --device cuda --prompt-len 600 --cards "$CARRY/configs/gemma-3-1b-it"
    grep -h "^|" "$OUT/compare_hf.log" "$OUT/compare_hf_gemma.log"
fi
if [[ " $ONLY " == *" cli "* ]] && [ -x "$CARRY/llmrt" ]; then
    # the command end to end on the demo model (models/demo-gpt2): generation and --benchmark
    run_part "llmrt run (cuda, BF16)" cli_run.log "$CARRY/llmrt" run --device cuda --precision BF16 \
        --num_tokens 32
    run_part "llmrt run --benchmark (cuda)" cli_bench.log "$CARRY/llmrt" run --benchmark \
        --device cuda --precision BF16 --isl 128 --num_tokens 128 --iterations 3 --warmup 1
    echo "---- llmrt run (demo model, cuda)"
    tail -3 "$OUT/cli_run.log"
    tail -15 "$OUT/cli_bench.log"
fi
if [[ " $ONLY " == *" kvfp8 "* ]] && [ -x "$CARRY/llmrt" ]; then
    # the FP8 KV cache on CUDA (--kv-cache-dtype fp8) against the precision's (auto), BF16: each
    # demo model's perplexity on its held-out text (prompt chunks: the flash kernel) must rise by
    # at most 1% and not be the same number (the FP8 path ran), as tests/cli/kv_fp8.sh checks on
    # the CPU (whose FP8 number is printed beside); then generation at batch 1 (the decode
    # kernel: no "op by op" note naming the cache may appear) and batch 4 (the op path,
    # graphs), and the
    # benchmark's decode time with either cache
    for m in demo-llama demo-qwen3 demo-gpt2; do
        for run in cuda:auto cuda:fp8 cpu:fp8; do
            "$CARRY/llmrt" perplexity --model models/$m --file models/$m/heldout.txt \
                --device "${run%:*}" --precision BF16 --kv-cache-dtype "${run#*:}" --json \
                >"$OUT/kvfp8-ppl-$m-${run/:/-}.json" 2>"$OUT/kvfp8-ppl-$m-${run/:/-}.err"
        done
        out=$(python3 - "$OUT/kvfp8-ppl-$m-cuda-auto.json" "$OUT/kvfp8-ppl-$m-cuda-fp8.json" \
            "$OUT/kvfp8-ppl-$m-cpu-fp8.json" <<'PY' 2>&1
import json, sys
def ppl(p):
    try:
        return json.load(open(p))["perplexity"]
    except Exception as e:
        return None
a, f, c = (ppl(p) for p in sys.argv[1:])
if a is None or f is None:
    print("no perplexity (see the .err files): auto %s, fp8 %s" % (a, f))
    sys.exit(1)
print("BF16 cache %.4f, FP8 cache %.4f (%+.2f%%); CPU FP8 cache %s" %
      (a, f, 100 * (f / a - 1), "%.4f" % c if c else "-"))
sys.exit(0 if f != a and f <= 1.01 * a else 1)
PY
        )
        rc=$?
        rows+=("$(printf 'kvfp8 ppl %-10s rc=%d: %s' "$m" $rc "$out")")
        echo "kvfp8 ppl $m: $out"
    done
    for m in demo-llama demo-qwen3 demo-gpt2; do
        for b in 1 4; do
            log="kvfp8-run-$m-b$b.log"
            run_part "llmrt run fp8 cache $m b$b" "$log" "$CARRY/llmrt" run --model models/$m \
                --device cuda --precision BF16 --kv-cache-dtype fp8 --batch_size $b \
                --num_tokens 96 --ignore-eos --prompt "Once upon a time"
            # batches always decode op by op; the FP8 cache must not be the reason
            if grep "op by op" "$OUT/$log" | grep -qi "fp8\|kv cache"; then
                rows+=("kvfp8 run $m b$b: FAIL: $(grep -m1 'op by op' "$OUT/$log")")
            fi
            echo "---- $log"
            tail -3 "$OUT/$log"
        done
    done
    for kv in auto fp8; do
        run_part "llmrt run --benchmark $kv cache" "kvfp8-bench-$kv.log" "$CARRY/llmrt" run \
            --benchmark --model models/demo-llama --device cuda --precision BF16 \
            --kv-cache-dtype $kv --isl 256 --num_tokens 200 --iterations 3 --warmup 1
        echo "---- llmrt run --benchmark, demo-llama, $kv cache"
        tail -12 "$OUT/kvfp8-bench-$kv.log"
    done
fi
if [[ " $ONLY " == *" bench "* ]] && [ -x "$CARRY/bench_cuda" ]; then
    run_part bench_cuda bench_cuda.log "$CARRY/bench_cuda"
    # the decode step again (run-to-run spread), then A/B of its features, same card, same call
    run_part "bench_cuda (decode again)" bench_again.log "$CARRY/bench_cuda" --prefill 0
    run_part "bench_cuda LLMRT_NO_DECODE_HEAD=1" bench_nohead.log env LLMRT_NO_DECODE_HEAD=1 \
        "$CARRY/bench_cuda" --prefill 0
    run_part "bench_cuda LLMRT_NO_FUSE=1" bench_nofuse.log env LLMRT_NO_FUSE=1 "$CARRY/bench_cuda" --prefill 0
    run_part "bench_cuda LLMRT_NO_PDL=1" bench_nopdl.log env LLMRT_NO_PDL=1 "$CARRY/bench_cuda" --prefill 0
    run_part "bench_cuda --model 8b" bench_8b.log "$CARRY/bench_cuda" --model 8b
    echo "---- bench_cuda (Llama-3.2-1B shape)"
    grep -E "^\|" "$OUT/bench_cuda.log"
    for ab in again nohead nofuse nopdl; do
        echo "---- A/B: $ab"
        grep -E "^\| decode, graph|^\| decode achieved" "$OUT/bench_$ab.log"
    done
    echo "---- bench_cuda --model 8b"
    grep -E "^\| (model|decode|prefill [0-9])" "$OUT/bench_8b.log"
fi
if [[ " $ONLY " == *" vops "* ]]; then
    # the CUDA op tests and the end-to-end tests of each build in $OLD_CARRY (--stage-variant)
    for o in ${OLD_CARRY:-.carry/old}; do
        v=$(mktemp -d)
        tar -C "$v" -xJf "$o/bin.tar.xz"
        # the variant's libllmrt by RPATH; the libraries it links from $CARRY/lib
        [ -x "$v/test_cuda_ops" ] &&
            run_part "test_cuda_ops ($(basename "$o"))" "vops-$(basename "$o").log" \
                env LD_LIBRARY_PATH="$CARRY/lib:$LD_LIBRARY_PATH" "$v/test_cuda_ops"
        [ -x "$v/test_e2e" ] &&
            run_part "test_e2e ($(basename "$o"))" "ve2e-$(basename "$o").log" \
                env LD_LIBRARY_PATH="$CARRY/lib:$LD_LIBRARY_PATH" LLMRT_TEST_DEVICE=cuda \
                "$v/test_e2e"
    done
fi
if [[ " $ONLY " == *" ab "* ]]; then
    # OLD_CARRY: one or more staged builds (each a folder with its bin.tar.xz), named by their
    # folder in the table
    declare -A oldbin
    for o in ${OLD_CARRY:-.carry/old}; do
        oldbin[$(basename "$o")]=$(mktemp -d)
        tar -C "${oldbin[$(basename "$o")]}" -xJf "$o/bin.tar.xz"
    done
    # AB_ISL: prompt lengths (a list); AB_CHUNK: --prefill-chunk (a number, or "prompt": the
    # whole prompt in one forward step, for prefill A/Bs); AB_ENV: switch settings this build
    # runs with besides its defaults, each a row (LLMRT_DECODE_TILING=0 LLMRT_CUDA_I4_MMA=0)
    for card in ${AB_CARDS:-Llama-3.2-1B-Instruct Qwen3-0.6B}; do
        M=$(random_model "$card" ab)
        for q in ${AB_QUANT:-none}; do # layer matrices quantized on load: none fp8 int8
            for isl in ${AB_ISL:-128}; do
                chunk=()
                [ -n "${AB_CHUNK:-}" ] && chunk=(--prefill-chunk "$([ "$AB_CHUNK" = prompt ] &&
                    echo "$isl" || echo "$AB_CHUNK")")
                for round in 1 2; do
                    for which in new ${AB_ENV:-} "${!oldbin[@]}"; do
                        bin=$CARRY/llmrt sw=LLMRT_AB=
                        [[ $which == *=* ]] && sw=$which
                        [ $which != new ] && [[ $which != *=* ]] && bin=${oldbin[$which]}/llmrt
                        f="$OUT/ab-$card-$q-$isl-${which//=/_}-$round"
                        env "$sw" LD_LIBRARY_PATH="$CARRY/lib:$LD_LIBRARY_PATH" "$bin" run --benchmark \
                            --model "$M" --device cuda --precision BF16 --quant_format $q \
                            --weight_only --isl "$isl" "${chunk[@]}" --num_tokens 128 \
                            --iterations 5 --warmup 2 >"$f.txt" 2>"$f.log"
                        [ $round = 2 ] && [ -n "${AB_PROFILE:-}" ] &&
                            env "$sw" LLMRT_DECODE_PROFILE=1 \
                                LD_LIBRARY_PATH="$CARRY/lib:$LD_LIBRARY_PATH" "$bin" run \
                                --benchmark --model "$M" --device cuda --precision BF16 \
                                --quant_format $q --weight_only --isl "$isl" "${chunk[@]}" \
                                --num_tokens 128 --iterations 2 --warmup 1 2>&1 >/dev/null |
                            grep -A40 "decode kernel profile" | sed "s/^/[$card $q $isl $which] /"
                        rows+=("$(printf 'ab %-22s %-4s %5s %-8s round %d: %s' "$card" "$q" "$isl" \
                            "$which" "$round" "$(grep -E '^(Decode-Median|BW-Fraction|TTFT)' "$f.txt" |
                                awk '{printf "%s %s  ", $1, $3}')")")
                    done
                done
            done
        done
    done
fi
if [[ " $ONLY " == *" probe "* ]]; then
    # a build of the decode kernel with -DDK_PROBE (the code is on branch dk-probe2, not main:
    # --stage-variant ... probe2 -DDK_PROBE from that branch, in $PROBE_CARRY): one profiled run a
    # value of LLMRT_DECODE_PROBE (parts of the attention tile loop left out: 1 q.k, 2 p.V, 4 the
    # later tiles' loads, 8 the warp-wide max and sum, 16 the loop's barriers; the tokens are
    # wrong, the times tell where a tile's time goes; 64: the general loop instead of the
    # fixed-head_dim tile, right tokens) on $PROBE_CARD after a prompt of $PROBE_ISL tokens
    pv=$(mktemp -d)
    tar -C "$pv" -xJf "${PROBE_CARRY:-.carry/probe2}/bin.tar.xz"
    M=$(random_model "${PROBE_CARD:-Llama-3.2-1B-Instruct}" probe)
    for p in ${PROBE_VALUES:-0 64 1 2 4 8 16 0}; do
        f="$OUT/probe-$p"
        LLMRT_DECODE_PROBE=$p LLMRT_DECODE_PROFILE=1 LD_LIBRARY_PATH="$CARRY/lib:$LD_LIBRARY_PATH" \
            "$pv/llmrt" run --benchmark --model "$M" --device cuda --precision BF16 \
            --isl "${PROBE_ISL:-8192}" --num_tokens 128 --iterations 3 --warmup 1 >"$f.txt" \
            2>"$f.log"
        rows+=("$(printf 'probe %-3s %s  %s' "$p" \
            "$(grep -E '^Decode-Median' "$f.txt" | awk '{printf "%s %s", $1, $3}')" \
            "$(grep -E 'attention: tiles|attention: loads|waiting for tiles' "$f.log" |
                tr -s ' ' | tr '\n' ';')")")
    done
fi
if [[ " $ONLY " == *" qckpt "* ]] && [ -x "$CARRY/llmrt" ]; then
    # pre-quantized checkpoints staged with the binaries (block-wise FP8 of demo-llama): logits
    # on CUDA against the CPU's at 1, 5 and 40 tokens, the CUDA kernels taken with
    # (passed on an H200, 2026-12-05)
    for Q in "$CARRY"/qckpt/*; do
        [ -d "$Q" ] || continue
        run_part "qckpt $(basename "$Q") cuda vs cpu" "qckpt-$(basename "$Q").log" \
            python3 scripts/cuda_vs_cpu_logits.py "$CARRY/llmrt" "$Q" \
            --quant none --unquantized models/demo-llama
        cat "$OUT/qckpt-$(basename "$Q").log"
    done
fi
if [[ " $ONLY " == *" quant "* ]] && [ -x "$CARRY/llmrt" ]; then
    # `llmrt run --benchmark` with the layer matrices quantized on load (QUANT_FORMATS), two
    # rounds each, on random-weight models of the real cards in $QUANT_CARDS, same call; then
    # the prefill of QUANT_PREFILL_ISL tokens (decode of 8; 0: none) for the same formats
    for card in ${QUANT_CARDS:-Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct}; do
        M=$(random_model "$card" quant)
        for round in 1 2; do
            for q in ${QUANT_FORMATS:-none fp8 int8}; do
                f="$OUT/quant-$card-$q-$round.txt"
                "$CARRY/llmrt" run --benchmark --model "$M" --device cuda --precision BF16 \
                    --quant_format "$q" --weight_only --isl 128 --num_tokens 128 --iterations 5 \
                    --warmup 2 >"$f" 2>"${f%.txt}.log"
                rows+=("$(printf 'quant %-22s %-4s round %d: %s' "$card" "$q" "$round" \
                    "$(grep -E '^(Decode-Median|BW-Fraction|Bytes/Step)' "$f" |
                        awk '{printf "%s %s  ", $1, $3}')")")
            done
        done
        # fp8+wide: FP8 with the matrices widened to 16 bits for prompts (LLMRT_CUDA_FP8_GEMM=0;
        # plain fp8 takes the FP8 tensor-core product, the default);
        # QUANT_PREFILL_CHUNKS: --prefill-chunk values (prompt tokens per forward step);
        # QUANT_PREFILL_ENV: switches for these runs (LLMRT_CUDA_GEMM_TUNE=8)
        for chunk in ${QUANT_PREFILL_CHUNKS:-512}; do
            for q in ${QUANT_FORMATS:-none fp8 int8} ${QUANT_FP8_WIDE:-fp8+wide}; do
                [ "${QUANT_PREFILL_ISL:-2048}" = 0 ] && break # 0: no prefill runs
                f="$OUT/quant-prefill-$card-$q-$chunk.txt"
                env ${QUANT_PREFILL_ENV:-} $([ "$q" = fp8+wide ] && echo LLMRT_CUDA_FP8_GEMM=0) \
                    "$CARRY/llmrt" run --benchmark --model "$M" --device cuda --precision BF16 \
                    --quant_format "${q%+wide}" --weight_only --isl ${QUANT_PREFILL_ISL:-2048} \
                    --num_tokens 8 --iterations 3 --warmup 1 --prefill-chunk "$chunk" \
                    >"$f" 2>"${f%.txt}.log"
                rows+=("$(printf 'quant prefill %-14s %-8s chunk %-5s: %s' "$card" "$q" "$chunk" \
                    "$(grep -E '^(TTFT|Prefill)' "$f" | awk '{printf "%s %s  ", $1, $3}')")")
            done
        done
        # in-flight tile caps (LLMRT_DECODE_CAPS) tried on the fp8 stack, one run each
        for caps in ${QUANT_CAPS:-}; do
            f="$OUT/quant-caps-$card-$caps.txt"
            LLMRT_DECODE_CAPS=$caps "$CARRY/llmrt" run --benchmark --model "$M" --device cuda \
                --precision BF16 --quant_format fp8 --weight_only --isl 128 --num_tokens 128 \
                --iterations 5 --warmup 2 >"$f" 2>"${f%.txt}.log"
            rows+=("$(printf 'quant caps %s %-22s fp8: %s' "$caps" "$card" \
                "$(grep -E '^(Decode-Median|BW-Fraction)' "$f" | awk '{printf "%s %s  ", $1, $3}')")")
        done
        [ -n "${QUANT_PROFILE:-}" ] &&
            LLMRT_DECODE_PROFILE=1 "$CARRY/llmrt" run --benchmark --model "$M" --device cuda \
                --precision BF16 --quant_format fp8 --weight_only --isl 128 --num_tokens 128 \
                --iterations 2 --warmup 1 2>&1 >/dev/null | grep -A40 "decode kernel profile" |
                sed "s/^/[$card fp8] /"
        [ -n "${QUANT_KEEP:-}" ] || rm -rf "$M" # the next card's checkpoint needs the disk
    done
fi
if [[ " $ONLY " == *" ppl "* ]] && [ -x "$CARRY/llmrt" ]; then
    # perplexity of the demo models on their held-out text, BF16 on CUDA, with the layer
    # matrices quantized on load (PPL_FORMATS; fp8: prompts as FP8 products, activations
    # quantized per token, the default; fp8+wide: the matrices widened to 16 bits for prompts,
    # LLMRT_CUDA_FP8_GEMM=0)
    for m in demo-llama demo-qwen3 demo-gpt2; do
        for q in ${PPL_FORMATS:-none fp8 fp8+wide int8 int4}; do
            f="$OUT/ppl-$m-$q.txt"
            env $([ "$q" = fp8+wide ] && echo LLMRT_CUDA_FP8_GEMM=0) "$CARRY/llmrt" perplexity \
                --model models/$m --file models/$m/heldout.txt --device cuda --precision BF16 \
                --quant_format "${q%+wide}" --weight_only >"$f" 2>&1
            rows+=("$(printf 'ppl %-10s %-8s rc=%d: %s' "$m" "$q" $? "$(tail -1 "$f")")")
        done
    done
fi
if [[ " $ONLY " == *" opprof "* ]] && [ -x "$CARRY/llmrt" ]; then
    # LLMRT_OP_PROFILE=1: each op's device time alone (unfused, no graphs), for a batch of
    # PROF_BATCH decoding sequences (llmrt bench) and a prompt of PROF_ISL tokens (run)
    for card in ${PROF_CARDS:-Llama-3.2-1B-Instruct}; do
        M=$(random_model "$card" prof)
        LLMRT_OP_PROFILE=1 "$CARRY/llmrt" bench --model "$M" --device cuda --precision BF16 \
            --isl 128 --num_tokens 8 --batch_size ${PROF_BATCH:-256} --iterations 1 --warmup 0 \
            --no-plot --out "$OUT/prof-out" >"$OUT/prof-batch-$card.txt" 2>&1
        LLMRT_OP_PROFILE=1 "$CARRY/llmrt" run --benchmark --model "$M" --device cuda \
            --precision BF16 --isl ${PROF_ISL:-2048} --num_tokens 2 --iterations 1 --warmup 0 \
            >"$OUT/prof-prefill-$card.txt" 2>&1
        for f in batch prefill; do
            echo "---- op profile $card $f"
            grep -m1 -A1 "cuda op profile" "$OUT/prof-$f-$card.txt"
            awk '/cuda op profile/ {on = 1} on && NF == 9 && $NF ~ /%$/' "$OUT/prof-$f-$card.txt" |
                sort -k7 -g -r | head -24
        done
    done
fi
if [[ " $ONLY " == *" ncu "* ]] && [ -x "$CARRY/llmrt" ] && command -v ncu >/dev/null; then
    # Nsight Compute on one launch (the NCU_SKIP + 1st) of the kernels matching NCU_KERNEL
    # (default the decode kernel) in `llmrt run` on NCU_CARDS with the layer matrices as each of
    # NCU_QUANT, a prompt of NCU_ISL tokens (default 128) in chunks of NCU_CHUNK (default 512):
    # where the issue slots and the warps' cycles go. The full report is in $OUT/ncu-CARD-Q.txt.
    # (The prefill attention: NCU_KERNEL=kernel_flash NCU_ISL=2048 NCU_CHUNK=2048 NCU_SKIP=8.)
    for card in ${NCU_CARDS:-Llama-3.1-8B-Instruct}; do
        M=$(random_model "$card" ncu)
        for q in ${NCU_QUANT:-none fp8}; do
            f="$OUT/ncu-$card-$q.txt"
            env ${NCU_ENV:-} ncu --kernel-name "regex:${NCU_KERNEL:-kernel_decode}" \
                --launch-skip "${NCU_SKIP:-6}" \
                --launch-count 1 --section SpeedOfLight --section WarpStateStats \
                --section SchedulerStats --section InstructionStats \
                --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
                --section Occupancy --print-details all "$CARRY/llmrt" run --benchmark \
                --model "$M" --device cuda --precision BF16 --quant_format "$q" --weight_only \
                --isl "${NCU_ISL:-128}" --prefill-chunk "${NCU_CHUNK:-512}" --num_tokens 16 \
                --iterations 1 --warmup 0 >"$f" 2>&1
            echo "---- ncu $card $q"
            grep -E "Duration|DRAM Throughput|Memory Throughput|Issue Slots Busy|Issued Ipc|Warp Cycles Per Issued|Active Warps Per Scheduler|Eligible Warps|No Eligible|Stall|stall|Executed Ipc|Pipe|pipe" "$f" |
                head -60
        done
    done
fi
if [[ " $ONLY " == *" targets "* ]] && [ -x "$CARRY/llmrt" ]; then
    # the decode issue's batch-1 targets, card by card (TARGET_CARDS, default every staged card):
    # `llmrt run --benchmark` in BF16 on random weights of the real config, 128-token prompt,
    # and for TARGET_LONG_CARDS prompts of TARGET_LONG_ISL; BW-Fraction against the target
    # (>= 0.90 for the 7-8B cards, 0.85 from 1B, 0.60 below; long prompts 0.80 at 2048, 0.70
    # beyond). Each model is removed after its runs (the disk holds one 8B at a time).
    for card in ${TARGET_CARDS:-$(ls "$CARRY/configs")}; do
        [ -f "$CARRY/configs/$card/config.json" ] || continue
        M=$(random_model "$card" targets)
        # parameters: the checkpoint's BF16 bytes / 2
        params=$(du -cb "$M"/*.safetensors | tail -1 | awk '{print int($1 / 2)}')
        want=$(awk -v n="$params" 'BEGIN {print (n >= 6e9 ? 0.90 : (n >= 0.95e9 ? 0.85 : 0.60))}')
        isls="128"
        [[ " ${TARGET_LONG_CARDS:-Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct} " == *" $card "* ]] &&
            isls="128 ${TARGET_LONG_ISL:-2048 8192}"
        # TARGET_AB: switch settings, each run in turn (LLMRT_DECODE_ATT_BUFS=2 LLMRT_AB=new)
        for isl in $isls; do
            for ab in ${TARGET_AB:-LLMRT_AB=}; do
                f="$OUT/targets-$card-$isl${TARGET_AB:+-$ab}.txt"
                env "$ab" "$CARRY/llmrt" run --benchmark --model "$M" --device cuda --precision BF16 \
                    --isl "$isl" --num_tokens 128 --iterations 5 --warmup 2 >"$f" 2>"${f%.txt}.log"
                w=$want
                [ "$isl" -gt 128 ] && w=$([ "$isl" -le 2048 ] && echo 0.80 || echo 0.70)
                rows+=("$(printf 'targets %-22s isl %-5s (%.2fB params)%s: %s target %s' "$card" \
                    "$isl" "$(awk -v n="$params" 'BEGIN {print n / 1e9}')" "${TARGET_AB:+ $ab}" \
                    "$(grep -E '^(Decode-Median|BW-Fraction)' "$f" | awk '{printf "%s %s  ", $1, $3}')" \
                    "$w")")
            done
        done
        grep -h "ran op by op" "$OUT"/targets-"$card"-128*.log | head -2 |
            sed "s/^/[$card] /"
        rm -rf "$M"
    done
fi
if [[ " $ONLY " == *" batch "* ]] && [ -x "$CARRY/llmrt" ]; then
    # decode steps of batches (llmrt bench, static cache) with each switch setting in
    # $BATCH_AB (default: the tensor-core kernel of up to 64 rows off, then on), same call
    for card in ${BATCH_CARDS:-Llama-3.2-1B-Instruct}; do
        M=$(random_model "$card" batch)
        for ab in ${BATCH_AB:-LLMRT_SKINNY_MAX_ROWS=0 LLMRT_SKINNY_MAX_ROWS=64}; do
            for q in ${BATCH_QUANT:-none}; do
                f="$OUT/batch-$card-$q-$ab.txt"
                env "$ab" "$CARRY/llmrt" bench --model "$M" --device cuda --precision BF16 \
                    --quant_format "$q" --weight_only --isl 128 --num_tokens 64 \
                    --batch_size ${BATCH_SIZES:-1,4,16,64,256} --iterations 3 --warmup 1 \
                    --no-plot --out "$OUT/batch-out" >"$f" 2>"${f%.txt}.log"
                rows+=("$(printf 'batch %-22s %-4s %s: %s' "$card" "$q" "$ab" \
                    "$(grep -E '^(Batch size|Decode-Median|BW-Fraction)' "$f" |
                        awk '{printf "%s ", $NF} NR % 3 == 0 {printf "| "}')")")
            done
        done
    done
fi
if [[ " $ONLY " == *" long "* ]] && [ -x "$CARRY/llmrt" ]; then
    # batch-1 decode after long prompts (LONG_ISL) on LONG_CARDS with each setting in LONG_AB
    # (default: the decode kernel's KV prefetch off, then a layer ahead), the kernel's profile on
    # (its attention "loads" and "tiles", us per step, beside each time), same call
    for card in ${LONG_CARDS:-Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct}; do
        M=$(random_model "$card" long)
        for isl in ${LONG_ISL:-128 2048 8192}; do
            for ab in ${LONG_AB:-LLMRT_DECODE_ATT_PREFETCH=0 LLMRT_DECODE_ATT_PREFETCH=2}; do
                f="$OUT/long-$card-$isl-$ab.txt"
                env "$ab" LLMRT_DECODE_PROFILE=1 "$CARRY/llmrt" run --benchmark --model "$M" \
                    --device cuda --precision BF16 --isl "$isl" --num_tokens 128 --iterations 5 \
                    --warmup 2 >"$f" 2>&1
                rows+=("$(printf 'long %-22s %5s %-30s: %s| %s' "$card" "$isl" "$ab" \
                    "$(grep -E '^(Decode-Median|BW-Fraction)' "$f" | awk '{printf "%s %s  ", $1, $3}')" \
                    "$(grep -E 'attention: (loads|tiles)' "$f" | awk '{printf "%s %s  ", $2, $3}')")")
            done
        done
    done
fi
if [[ " $ONLY " == *" sweep "* ]] && [ -x "$CARRY/llmrt" ]; then
    # the decode issue's sweep: llmrt bench over prompt lengths x batch sizes on random weights
    # of SWEEP_CARDS, BF16; bench.json / .csv (and bench.png where matplotlib is) in
    # $OUT/sweep-CARD, for docs/results
    for card in ${SWEEP_CARDS:-Llama-3.2-1B-Instruct Llama-3.1-8B-Instruct}; do
        M=$(random_model "$card" sweep)
        plot=--no-plot
        python3 -c "import matplotlib" 2>/dev/null && plot=
        f="$OUT/sweep-$card.txt"
        "$CARRY/llmrt" bench --model "$M" --device cuda --precision BF16 \
            --isl ${SWEEP_ISL:-128,2048} --num_tokens 128 --batch_size ${SWEEP_BATCH:-1,4,16,64} \
            --iterations 3 --warmup 1 $plot --out "$OUT/sweep-$card" >"$f" 2>"${f%.txt}.log"
        rc=$?
        rows+=("$(printf 'sweep %-22s rc=%d: %s' "$card" $rc \
            "$(grep -E '^(Decode-Median|BW-Fraction)' "$f" | awk '{printf "%s ", $3}')")")
    done
fi
if [[ " $ONLY " == *" serve "* ]] && [ -x "$CARRY/llmrt" ]; then
    # llmrt serve on random-weight models of the real cards, loaded by llmrt bench-serve with
    # random prompts, other prompts in each run (a run must not find the last one's in the
    # prefix cache): SERVE_RUNS entries are CONCURRENCY:ISL:OSL
    for card in ${SERVE_CARDS:-Llama-3.2-1B-Instruct}; do
        M=$(random_model "$card" serve)
        cp "$CARRY/configs/Llama-3.2-1B-Instruct/tokenizer.json" "$M/" 2>/dev/null
        # SERVE_ENV: switches for the server (LLMRT_CUDA_RAGGED=0: iterations split by length);
        # SERVE_ARGS: more of its flags (--kv-block 32, --max-num-batched-tokens 512);
        # BENCH_SERVE_ARGS: more of bench-serve's (--temperature 0.7 --top-p 0.9: sampled load)
        env ${SERVE_ENV:-} "$CARRY/llmrt" serve --model "$M" --port 8011 --device cuda \
            --precision BF16 --max-batch ${SERVE_MAX_BATCH:-256} ${SERVE_ARGS:-} \
            >"$OUT/serve-$card.log" 2>&1 &
        spid=$!
        for _ in $(seq 1200); do
            curl -sf http://127.0.0.1:8011/health >/dev/null 2>&1 && break
            sleep 0.1
        done
        for r in ${SERVE_RUNS:-1:128:128 16:128:128 64:128:128 256:128:128}; do
            IFS=: read -r c isl osl <<<"$r"
            log="bench-serve-$card-$c-$isl.log"
            run_part "bench-serve $card c=$c $isl/$osl" "$log" "$CARRY/llmrt" bench-serve \
                --url http://127.0.0.1:8011 --concurrency "$c" --num-prompts $((c < 8 ? 16 : 4 * c)) \
                --isl "$isl" --osl "$osl" --seed $((c * 7919 + isl)) --no-plot ${BENCH_SERVE_ARGS:-}
            # the server's own histograms (cumulative over the runs): its inter-token latency
            # against the client's says whether a tail is the steps' or the delivery's
            curl -s http://127.0.0.1:8011/metrics >"$OUT/metrics-$card-$c-$isl.txt" 2>&1
            rows+=("$(printf 'serve %s c=%d %d/%d: %s' "$card" "$c" "$isl" "$osl" \
                "$(grep -E '^(requests/s|output tokens/s|time to first|inter-token)' "$OUT/$log" |
                    awk '{printf "%s ", $0}' | tr -s ' ')")")
        done
        kill -INT $spid
        wait $spid
        rows+=("serve $card: exit status $? on SIGINT; $(grep -m1 'KV cache' "$OUT/serve-$card.log")")
        # LLMRT_SCHED_PROFILE=1: the scheduler's time per iteration, printed at shutdown
        grep -A20 'scheduler profile' "$OUT/serve-$card.log" | sed "s/^/[serve $card] /"
    done
fi
if [[ " $ONLY " == *" sample "* ]] && [ -x "$CARRY/bench_cuda_sample" ]; then
    # sampled tokens chosen on the device: the kernel against the host's sampler (part ops runs
    # test_cuda_sample too), then bench_cuda_sample with clusters chosen by rows and with one
    # block a row (LLMRT_CUDA_SAMPLE_CLUSTER=1), same call
    for ab in LLMRT_AB= LLMRT_CUDA_SAMPLE_CLUSTER=1; do
        for flat in "" --flat; do
            f="$OUT/bench-sample-${ab#*=}${flat}.txt"
            (cd "$CARRY" && env "$ab" ./bench_cuda_sample --rounds 5 $flat) >"$f" 2>&1
            echo "---- bench_cuda_sample ($ab $flat)"
            grep "^|" "$f"
        done
    done
fi
if [[ " $ONLY " == *" caps "* ]] && [ -x "$CARRY/llmrt" ]; then
    # the decode kernel's in-flight tile caps (LLMRT_DECODE_CAPS, CAPS_SETS: "" is the default)
    # and its stage profile (LLMRT_DECODE_PROFILE=1) on CAPS_CARDS, batch 1, BF16
    for card in ${CAPS_CARDS:-Llama-3.1-8B-Instruct}; do
        M=$(random_model "$card" caps)
        for caps in "" ${CAPS_SETS:-2,2,2,2,2,2 2,2,2,3,2,3}; do
            f="$OUT/caps-$card-${caps:-default}.txt"
            LLMRT_DECODE_CAPS=$caps "$CARRY/llmrt" run --benchmark --model "$M" --device cuda \
                --precision BF16 --isl 128 --num_tokens 128 --iterations 5 --warmup 2 >"$f" 2>&1
            rows+=("$(printf 'caps %-22s %-12s: %s' "$card" "${caps:-default}" \
                "$(grep -E '^(Decode-Median|BW-Fraction)' "$f" | awk '{printf "%s %s  ", $1, $3}')")")
        done
        LLMRT_DECODE_PROFILE=1 "$CARRY/llmrt" run --benchmark --model "$M" --device cuda \
            --precision BF16 --isl 128 --num_tokens 128 --iterations 2 --warmup 1 2>&1 >/dev/null |
            grep -A30 "decode kernel profile" | sed "s/^/[$card] /"
    done
fi
echo "---- gpu-check summary ($(head -2 "$OUT/gpu.txt" | tail -1))"
printf '%s\n' "${rows[@]}"
if [ -n "${GPU_CHECK_TAR:-}" ]; then
    t=$(mktemp)
    tar -C "$OUT" -czf "$t" . && rm -rf "${OUT:?}"/* && mv "$t" "$OUT/logs.tgz"
fi
