#!/usr/bin/env bash
# The MinAtar study at the pipeline's budget: does pretraining help, do the offline games help, do the task weights
# help? Two targets, each pretrained on the other of the two MinAtar games whose data producers learn at this budget
# (breakout <- space_invaders, space_invaders <- breakout; freeway's data holds no reward at it, asterix's and
# seaquest's producers stay near random play: results/minatar-freeway-data/, results/minatar-history.md).
# Rows: XTRA, EfficientZero-L from scratch (XTRA's network), w/o cross-task, w/o pretraining, w/o task weights, the
# student zero-shot and behaviour cloning; 3 seeds that reach every RNG; 32 evaluation episodes per run.
#
# Each game's dataset and teacher is made once per seed (--pretraining-dir) and serves the other target. Every job
# resumes from its last checkpoint when the script is run again, so it may be stopped and restarted at any time.
# From the README's stage times ("How long the pipeline takes"): about 240 core-minutes per seed and target, two
# jobs at a time on 2 cores, so about 2 hours per seed and target and 12 hours in all.
#
#   bash experiments/minatar_study.sh                  # all of it; then the report:
#   results/minatar/report.md (xtra-report over both targets, baseline EfficientZero-L)
set -euo pipefail
OUT=${OUT:-runs/study}
SEEDS=${SEEDS:-0 1 2}
ROWS=(xtra efficientzero-l no-cross-task no-pretraining no-task-weights zero-shot bc)
# shellcheck disable=SC2086
for pair in breakout:space_invaders space_invaders:breakout; do
  target=${pair%%:*} pretrain=${pair##*:}
  xtra-pipeline --target "minatar/$target" --pretrain "minatar/$pretrain" --seeds $SEEDS --methods "${ROWS[@]}" \
    --pretraining-dir "$OUT/pretraining" --out "$OUT/$target"
done
xtra-report "$OUT/breakout" "$OUT/space_invaders" --methods "${ROWS[@]}" --baseline efficientzero-l \
  --out "${REPORT:-results/minatar}" --overwrite --curve-episodes-from-checkpoints
