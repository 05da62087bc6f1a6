#!/usr/bin/env bash
# Queue the KD study as DVC experiments and run them one at a time (DVC allows one process per workspace, and a
# 2-core machine gains nothing from more). Then: python study/report.py  → reports/kd_study.{md,png,csv}
# Each sweep moves one knob off its params.yaml default; the run-cache reuses every stage a run shares with an
# earlier one (e.g. the baseline across methods/T/α, the teacher across T/α).
#   bash study/queue.sh                                     # the whole study (39 runs, ≈ 3 h on an idle 2-core box)
#   SEEDS="0 1 2 3 4" bash study/queue.sh                   # more seeds
#   SWEEPS="methods" bash study/queue.sh                    # one sweep only (methods | temps | alphas | sizes | data)
#   BASE="-S student.width=24" bash study/queue.sh          # sweep around another base than params.yaml
#                                                            # (then: python study/report.py --base sizes=24/24)
set -euo pipefail
SEEDS=${SEEDS:-"0 1 2"}                          # training seeds (generate.seed, the data seed, is sweep "data")
SWEEPS=${SWEEPS:-"methods sizes temps alphas data"}
METHODS=${METHODS:-"gamma clahe hist_eq lime zerodce"}
TEMPS=${TEMPS:-"1 2 8"}                          # besides the default
ALPHAS=${ALPHAS:-"0.25 0.9"}                     # besides the default
SIZES=${SIZES:-"48/24 24/12"}                    # teacher/student tiny3d width, besides the default (same size)
DATA_SEEDS=${DATA_SEEDS:-"1"}                    # synthetic datasets besides the default generate.seed
BASE=${BASE:-""}                                 # -S overrides every run starts from (a sweep's own -S win)
# shellcheck disable=SC2086  # BASE is a list of words
q() { dvc exp run --queue $BASE "$@"; }
for sweep in $SWEEPS; do
  for s in $SEEDS; do
    case $sweep in
      methods) for m in $METHODS; do q -S seed=$s -S enhance.method=$m -n "s$s-$m"; done ;;
      temps)   for t in $TEMPS; do q -S seed=$s -S kd.temperature=$t -n "s$s-T$t"; done ;;
      alphas)  for a in $ALPHAS; do q -S seed=$s -S kd.alpha=$a -n "s$s-a$a"; done ;;
      sizes)   for wh in $SIZES; do
                 q -S seed=$s -S teacher.width=${wh%/*} -S student.width=${wh#*/} -n "s$s-w${wh%/*}x${wh#*/}"; done ;;
      data)    for d in $DATA_SEEDS; do q -S seed=$s -S generate.seed=$d -n "s$s-d$d"; done ;;
      *) echo "unknown sweep '$sweep' (methods | temps | alphas | sizes | data)" >&2; exit 1 ;;
    esac
  done
done
dvc exp run --run-all --jobs 1
