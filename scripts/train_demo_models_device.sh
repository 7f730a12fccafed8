#!/bin/bash
# Device-side driver for scripts/train_demo_model.py: trains the three demo models at once on one GPU.
#
# Here:   python3 scripts/train_demo_model.py prepare --data /work/main/.carry/fix/data
#         cp scripts/train_demo_model.py scripts/train_demo_models_device.sh /work/main/.carry/fix/
# Device: bash .carry/fix/train_demo_models_device.sh   (run tool, carry=[".carry/fix"]; writes
#         $OUT/demo-{llama,qwen3,gpt2}.tar and $OUT/train_log.txt)
# Here:   untar into models/, then for each:
#         python3 scripts/train_demo_model.py reference --model models/demo-llama --data DATA
cd "$(dirname "$0")" || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv > /tmp/gpu.txt 2>&1
python3 -c "import torch, transformers, tokenizers; print(torch.__version__, transformers.__version__,
tokenizers.__version__, torch.cuda.get_device_name(0))" >> /tmp/gpu.txt 2>&1
for arch in llama qwen3 gpt2; do
  python3 train_demo_model.py train --data data --arch $arch --out /tmp/o/demo-$arch \
    > /tmp/log_$arch.txt 2>&1 &
done
wait
for d in /tmp/o/*; do n=$(basename "$d"); tar -C /tmp/o -cf "$OUT/$n.tar" "$n"; done
cat /tmp/gpu.txt /tmp/log_*.txt | grep -v -i -E "warn|Writing model" > "$OUT/train_log.txt"
ls -la "$OUT"
