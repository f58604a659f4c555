#!/bin/bash
# One device call: the PyTorch reference and our step, same GPU, same command (bench/README.md).
#   bash bench/gpu_suite.sh SUITE.json BUDGET_S [REF=1|fp32|0]   (fp32: the reference without --amp only)
# Needs .devbench/ (a copy of ../shared/bench) and .whl/ (ml_collections) carried; writes $OUT.
set -u
SUITE=${1:-bench/suite_gpu1.json}; BUDGET=${2:-380}; REF=${3:-1}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt 2>&1
date -u >> $OUT/gpu.txt
if [ "$REF" != 0 ]; then
  REF_CASES=("--image-size 224" "--image-size 224 --amp" "--image-size 84" "--image-size 84 --amp")
  [ "$REF" = fp32 ] && REF_CASES=("--image-size 224" "--image-size 84")
  : > $OUT/ref.jsonl
  for args in "${REF_CASES[@]}"; do
    timeout 90 python3 .devbench/ref_torch_meta_align.py $args --meta-iters 10 --warmup 2 --no-flops 2>>$OUT/ref.err >> $OUT/ref.jsonl
  done
  python3 - <<'PY'
import json, os
for l in open(os.environ.get('OUT', '/tmp/out') + '/ref.jsonl'):
    r = json.loads(l); s = r['settings']
    print(f"ref {s['image_size']} amp={s['amp']}: {r['ms_per_meta_iter']:.1f} ms/meta-iter, {r['meta_iters_per_s']:.2f} it/s, {r['device']}")
PY
fi
python3 bench/train_step.py --suite $SUITE --budget_s $BUDGET --repeats 5 --run_s 0.5 \
  --profile_dir /tmp/prof --out $OUT/train_step.json 2>$OUT/train_step.err | grep -v '^{"name"' 
tail -5 $OUT/train_step.err
