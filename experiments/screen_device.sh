#!/usr/bin/env bash
# Factor screen of the finetuning defaults on a many-core machine, 3 seeds per row, run side by side:
#   one_hot/: XTRA with the defaults (the student acts from the first step); with a 500-step random warm-up; with every
#             target row reanalysed (the authors' targets) — all from the same pretrained students;
#   plane/:   teachers, student and XTRA retrained with EfficientZero's scalar action plane on the same datasets.
# Inputs (carried): .whl/ (the packages the machine lacks) and carry/screen/one_hot/seed{0,1,2} (or carry/screen.tgz) holding an
# `xtra-pipeline --seeds 0 1 2` run's datasets, teachers, student and pretraining evaluations.
# Everything runs on the CPU cores (CUDA hidden): the MinAtar networks are too small for a GPU to pay.
set -u
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/screen-out}; mkdir -p "$OUT"
[ -f carry/screen.tgz ] && tar xzf carry/screen.tgz -C carry
nproc; python3 -c "import torch, numba, lightning, minatar; print(torch.__version__, numba.__version__, lightning.__version__)"
for s in 0 1 2; do
  mkdir -p carry/screen/plane/seed$s/runs
  cp -r carry/screen/one_hot/seed$s/datasets carry/screen/plane/seed$s/
  cp -r carry/screen/one_hot/seed$s/runs/dataset-* carry/screen/plane/seed$s/runs/
done
LIMIT=${LIMIT:-540}
COMMON=(--seeds 0 1 2 --finetune-env-steps 1600)
timeout "$LIMIT" python3 -m xtra.pipeline --out carry/screen/one_hot "${COMMON[@]}" --jobs 9 \
  --methods xtra xtra-random-warmup xtra-reanalyse > "$OUT/one_hot.log" 2>&1 &
timeout "$LIMIT" python3 -m xtra.pipeline --out carry/screen/plane "${COMMON[@]}" --jobs 6 --action-encoding plane \
  --methods xtra > "$OUT/plane.log" 2>&1 &
wait
cd carry/screen && tar czf "$OUT/screen.tgz" $(find . -path "*eval*" -name "*.json") $(find . -name "results*") \
  $(find . -path "*logs*" -name "*.log")
tail -n 30 "$OUT/one_hot.log" "$OUT/plane.log"
