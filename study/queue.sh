#!/usr/bin/env bash
# Queue the KD study as DVC experiments and run them (one at a time: DVC allows one process per workspace, and a
# 2-core machine gains nothing from more). Regenerate the tables and plots afterwards with study/report.py.
#   bash study/queue.sh            # seeds 0 1 2
#   SEEDS="0" bash study/queue.sh  # quicker look
set -euo pipefail
SEEDS=${SEEDS:-"0 1 2"}
for s in $SEEDS; do
  dvc exp run --queue -S seed=$s -n "s${s}-T4-a0.5"                                  # default: teacher, baseline, student
  for t in 1 2 8; do dvc exp run --queue -S seed=$s -S kd.temperature=$t -n "s${s}-T${t}-a0.5"; done
  for a in 0.25 0.75 0.9; do dvc exp run --queue -S seed=$s -S kd.alpha=$a -n "s${s}-T4-a${a}"; done
done
dvc exp run --run-all --jobs 1
