#!/usr/bin/env bash
# Issue 6 result through the public CLI: the quick-start recipe (configs/quickstart_inflated.yaml: 6 motion classes,
# 32x32 crops, 8x2 frames, 32 epochs, AdamW) on bit_i3d_r50x1 (width 8, GN 4 groups, WS eps 1e-8), fine-tuned
# from an inflated 2D checkpoint trained on single images of a static-shape task vs from scratch, 2 seeds.
# Resumable: finished arms (a `done` file with their wall seconds) are skipped, an interrupted one resumes from its last.ckpt. ~8 min per arm on one CPU thread.
#   bash benchmarks/inflation_finetune.sh [OUT=runs/inflation]
#   python benchmarks/curves.py OUT/ft_scratch_s0 OUT/ft_inflated_s0 OUT/ft_scratch_s1 OUT/ft_inflated_s1
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
cd "$(dirname "$0")/.."
out=${1:-runs/inflation}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
ckpt=$out/bit2d_shapes.pth
if [ ! -f "$ckpt" ]; then  # 2D pre-training on 32x32 images (the video crop size), 20 epochs, ~4 min
  python benchmarks/inflation.py --pretrain-only --out "$out" --size 32 --pretrain-epochs 20 | tee "$out/pretrain.log"
fi
for seed in 0 1; do
  for arm in inflated scratch; do
    run=$out/ft_${arm}_s${seed}
    [ -f "$run/done" ] && continue
    pre=$ckpt; [ "$arm" = scratch ] && pre=null
    start=$(date +%s)
    video-gn fit -c configs/quickstart_inflated.yaml --model.pretrained "$pre" --seed_everything "$seed" \
      --data.seed "$seed" --trainer.default_root_dir "$run" --trainer.enable_progress_bar false --ckpt_path last \
      > "$out/ft_${arm}_s${seed}.log" 2>&1
    echo $(( $(date +%s) - start )) > "$run/done"
  done
done
