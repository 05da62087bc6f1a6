#!/usr/bin/env bash
# Run the KD study as DVC experiments, one at a time, each in a temp copy of HEAD (`dvc exp run --temp`; a 2-core
# machine gains nothing from parallel runs). Then: python study/report.py  → reports/kd_study.{md,png,csv}
# Not DVC's queue (`--queue` + `--run-all`): its celery worker died on a kombu JSONDecodeError 20 min into our levers
# study and the remaining 57 runs sat "Queued" with nothing running; a plain loop cannot end that way.
# Resumable: an experiment name that already finished (on HEAD or an ancestor commit) is not run again, so after a
# kill the same command continues where it stopped (a run killed mid-way runs anew).
# Sweeps move one knob off its params.yaml default. DVC's run-cache restores every stage whose deps and params were
# run before (the training curves are stage `plots`, which keep it on): a student-only knob reuses that seed's teacher
# and baseline, so a run costs the student's training (≈ 1-2 min at 30 epochs on this 2-core machine).
#   bash study/queue.sh                                     # the sweeps (39 runs, ≈ 3 h on an idle 2-core box)
#   SEEDS="0 1 2 3 4" bash study/queue.sh                   # more seeds
#   SWEEPS="methods" bash study/queue.sh                    # one sweep only (methods | temps | alphas | sizes | data)
#   BASE="-S student.width=24" bash study/queue.sh          # sweep around another base than params.yaml
#                                                            # (then: python study/report.py --base sizes=24/24)
#   SWEEPS=levers bash study/queue.sh                       # the levers of issue 15 (study/levers.yaml), 5 seeds (65 runs, ≈ 3-4 h)
#   SWEEPS=levers VARIANTS="base dual" bash study/queue.sh  # some variants only (names in study/levers.yaml)
#   DRY_RUN=1 ...                                           # print the dvc commands instead of running them
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SWEEPS=${SWEEPS:-"methods sizes temps alphas data"}
LEVER_SEEDS=${SEEDS:-"0 1 2 3 4"}                # the levers: 5 training seeds unless SEEDS says otherwise
SEEDS=${SEEDS:-"0 1 2"}                          # training seeds (generate.seed, the data seed, is sweep "data")
METHODS=${METHODS:-"gamma clahe hist_eq lime zerodce"}
TEMPS=${TEMPS:-"1 2 8"}                          # besides the default
ALPHAS=${ALPHAS:-"0.25 0.9"}                     # besides the default
SIZES=${SIZES:-"48/24 24/12"}                    # teacher/student tiny3d width, besides the default (same size)
DATA_SEEDS=${DATA_SEEDS:-"1"}                    # synthetic datasets besides the default generate.seed
VARIANTS=${VARIANTS:-""}                         # lever variants; "" = all of study/levers.yaml, in its order
BASE=${BASE:-""}                                 # -S overrides every run starts from (a sweep's own -S win)
DRY_RUN=${DRY_RUN:-0}
run() { if [ "$DRY_RUN" = 1 ]; then echo "$*"; else "$@"; fi; }
# names finished or queued (one per line); the same reading of `dvc exp show` as the report's
TAKEN=$(python "$HERE/report.py" --taken)
# shellcheck disable=SC2086  # BASE and the overrides are lists of words
q() {  # q NAME -S ... : run one experiment unless its name is taken
  local name=$1; shift
  if grep -qxF -- "$name" <<<"$TAKEN"; then echo "skip $name (finished or queued)"; return; fi
  run dvc exp run --temp $BASE "$@" -n "$name"
}
for sweep in $SWEEPS; do
  if [ "$sweep" = levers ]; then
    # each line: a variant's name and its -S overrides; variant-major, so a study cut short has whole variants
    PLAN=$(python "$HERE/report.py" --plan "$VARIANTS")
    while read -r v overrides; do
      for s in $LEVER_SEEDS; do q "s$s-$v" -S seed=$s $overrides; done
    done <<<"$PLAN"
    continue
  fi
  for s in $SEEDS; do
    case $sweep in
      methods) for m in $METHODS; do q "s$s-$m" -S seed=$s -S enhance.method=$m; done ;;
      temps)   for t in $TEMPS; do q "s$s-T$t" -S seed=$s -S kd.temperature=$t; done ;;
      alphas)  for a in $ALPHAS; do q "s$s-a$a" -S seed=$s -S kd.alpha=$a; done ;;
      sizes)   for wh in $SIZES; do
                 q "s$s-w${wh%/*}x${wh#*/}" -S seed=$s -S teacher.width=${wh%/*} -S student.width=${wh#*/}; done ;;
      data)    for d in $DATA_SEEDS; do q "s$s-d$d" -S seed=$s -S generate.seed=$d; done ;;
      *) echo "unknown sweep '$sweep' (methods | temps | alphas | sizes | data | levers)" >&2; exit 2 ;;
    esac
  done
done
