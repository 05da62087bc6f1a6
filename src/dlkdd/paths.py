"""Where the pipeline's files lie in a dlkdd checkout, named once for the code outside ``dvc.yaml`` that reads them
(the ``dlkdd`` command, the retrain flow, the CI gate).

``dvc.yaml`` owns these paths: the stages get theirs on the command line from it, and
``tests/test_paths.py`` checks that each one here is an out or dep of a stage there (or lies inside one),
except the two the retrain flow owns (:data:`FLOW_OWNED`). Plain strings, relative to the checkout's root.
"""
from __future__ import annotations

# outputs of dvc.yaml's stages
FRAME_STATS = "data/frames/stats.csv"  # frames: per-clip brightness statistics (the gate's drift reference)
FRAME_CLASSES = "data/frames/classes.txt"  # frames: the trained class list, in label order
POOL_INDEX = "data/pool/index.csv"  # frames: the unlabelled pool's clips ready for the student (one row each)
STUDENT = "models/student.pt"  # train_student: the deployable model
STUDENT_ONNX = "models/student.onnx"  # export: its ONNX export
EVALUATE_METRICS = "metrics/evaluate.json"  # evaluate: top-1/top-5 of student, teacher, baseline (the DVC metric)
EVALUATE_DETAILS = "reports/evaluate/details.json"  # evaluate: every model (two-stream too), clip counts, per class
PREDICTIONS = "metrics/predictions.csv"  # evaluate: per-clip predictions, in git (the paired test's input)

# an input of the frames stage: the retrain flow's landed clips (git sidecar with md5s)
FOOTAGE_CSV = "data/footage.csv"

# written by the retrain flow, not by a stage
FOOTAGE_DIR = "data/footage"  # the landed videos, `dvc add`-ed by the flow (data/footage.dvc)
RETRAIN_REPORTS = "reports/retrain"  # one summary per retrain run (<run_id>.md) and its gate report; gitignored
FLOW_OWNED = (FOOTAGE_DIR, RETRAIN_REPORTS)
