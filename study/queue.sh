#!/usr/bin/env bash
# Queue the KD study as DVC experiments and run them one at a time (DVC allows one process per workspace, and a
# 2-core machine gains nothing from more). Then: python study/report.py  → reports/kd_study.{md,png,csv}
#   bash study/queue.sh                                    # what BENCHMARKS.md reports
#   SEEDS="0 1 2 3 4" TEMPS="1 2 8" ALPHAS="0.25 0.75 0.9" ALPHA_SEEDS="0 1 2" bash study/queue.sh   # the full grid
set -euo pipefail
SEEDS=${SEEDS:-"0 1 2"}           # training seeds (the data seed generate.seed stays fixed)
TEMPS=${TEMPS:-"1 8"}             # temperatures besides the default 4, at alpha 0.5
ALPHAS=${ALPHAS:-"0.9"}           # alphas besides the default 0.5, at T 4
ALPHA_SEEDS=${ALPHA_SEEDS:-"0"}   # seeds for the alpha sweep
for s in $SEEDS; do
  dvc exp run --queue -S seed=$s -n "s${s}-T4-a0.5"        # default: teacher, baseline (no KD), student
  for t in $TEMPS; do dvc exp run --queue -S seed=$s -S kd.temperature=$t -n "s${s}-T${t}-a0.5"; done
done
for s in $ALPHA_SEEDS; do
  for a in $ALPHAS; do dvc exp run --queue -S seed=$s -S kd.alpha=$a -n "s${s}-T4-a${a}"; done
done
dvc exp run --run-all --jobs 1
