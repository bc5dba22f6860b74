#!/usr/bin/env bash
# Every figure the README's GPU table needs, in one run (about 5 minutes on one H100-class GPU): learner and acting
# throughput at the Atari preset in fp32 and bf16 autocast, the per-task passes of the task-weight measurement, and
# the search alone. One JSON line per measurement, on stdout and in $OUT/gpu.jsonl when OUT is set.
#
#   bash benchmarks/gpu.sh              # DEVICE=cuda by default
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu.sh   # the same script, a few repeats, on the CPU (checks it runs)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
REPEAT=$([ -n "${QUICK:-}" ] && echo 1 || echo 10)
STEPS=$([ -n "${QUICK:-}" ] && echo 64 || echo 2000)
BATCHES=$([ -n "${QUICK:-}" ] && echo 8 || echo "32 256")
ROWS=$([ -n "${QUICK:-}" ] && echo 64 || echo 512)
LOG=${OUT:-$(mktemp -d)}/gpu.jsonl
PY=${PYTHON:-python}
run() { echo "+ $*" >&2; "$PY" "$@" | tee -a "$LOG"; }

"$PY" -c "import torch; print({'torch': torch.__version__, 'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'})" | tee -a "$LOG"
for precision in 32 bf16-mixed; do
  for batch in $BATCHES; do
    run benchmarks/learner.py --preset efficientzero --batch "$batch" --device "$DEVICE" --precision "$precision" --repeat "$REPEAT"
  done
  run benchmarks/collector.py --task atari/Pong --envs 64 --simulations 50 \
    --steps "$STEPS" --device "$DEVICE" --precision "$precision"
done
for games in 2 4 8; do
  run benchmarks/task_weights.py --network efficientzero-l --offline-games "$games" --batch-size "$ROWS" \
    --device "$DEVICE" --repeats "$REPEAT"
done
run benchmarks/mcts.py --batch 1,8,64,256,1518 --repeat "$REPEAT"
echo "wrote $LOG" >&2
