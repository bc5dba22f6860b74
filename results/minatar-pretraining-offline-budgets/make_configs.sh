#!/usr/bin/env bash
# The stage configs of the "2 000 updates, cosine" rows: the shipped MinAtar configs with the teacher (and through
# distill.yaml the student) ending on a cosine-annealed learning rate.
#   bash results/minatar-pretraining-offline-budgets/make_configs.sh runs/cos-configs
set -euo pipefail
out=${1:?usage: make_configs.sh OUT_DIR}
mkdir -p "$out"
cp configs/minatar/*.yaml "$out"/
sed -i 's/^    lr_warmup_steps: 100$/    lr_warmup_steps: 100\n    lr_schedule: cosine/' "$out/teacher.yaml"
grep -q "lr_schedule: cosine" "$out/teacher.yaml"
