"""The ``dlkdd`` command: ``summary`` after a run, ``predict`` on raw dark clips, ``export`` the student,
``import-*`` real datasets."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODELS = ("teacher", "baseline", "student", "two_stream")
INPUTS = ("enhanced", "dark", "dark", "both")


def summary(metrics_path: Path) -> int:
    """Print the teacher / baseline / student table and where the artifacts are."""
    if not metrics_path.is_file():
        print(f"error: {metrics_path} not found: run `make run` (or `dvc repro`) first", file=sys.stderr)
        return 1
    m = json.loads(metrics_path.read_text())
    print(f"\n{'model':10s} {'input':9s} {'top-1':>6s} {'top-5':>6s}   (dark test split, {m['student']['clips']} clips)")
    for name, view in zip(MODELS, INPUTS):
        if name not in m:  # metrics written before the two-stream row existed
            continue
        print(f"{name:10s} {view:9s} {m[name]['top1']:6.3f} {m[name]['top5']:6.3f}")
    print(f"\nmetrics: {metrics_path}, metrics/cost.json  (dvc metrics show)")
    print("plots:   plots/train/*.csv, plots/confusion_student.csv  (dvc plots show → dvc_plots/index.html)")
    print("models:  models/teacher.pt, models/baseline.pt, models/student.pt  (student = the deployable one)")
    return 0


def predict(clips: list[Path], model_path: Path, topk: int, as_json: bool) -> int:
    """Run the student alone on raw dark clips; print top classes with probabilities."""
    import torch

    from dlkdd.data.dataset import to_float
    from dlkdd.data.video import VideoDecodeError, read_video, resize_frames, uniform_indices
    from dlkdd.distill.export import load_any

    try:
        model, ckpt = load_any(model_path)  # a dlkdd checkpoint or the exported TorchScript file
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = []
    for clip in clips:
        try:
            video, _ = read_video(clip)
        except VideoDecodeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except Exception as err:  # anything else OpenCV may throw on a damaged file: still one line
            print(f"error: {clip}: cannot decode ({type(err).__name__})", file=sys.stderr)
            return 2
        frames = resize_frames(video[uniform_indices(len(video), ckpt["num_frames"])], ckpt["size"])
        x = to_float(torch.from_numpy(frames).permute(3, 0, 1, 2)[None])  # (1, 3, T, H, W)
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        top = probs.topk(min(topk, len(probs)))
        results.append({"clip": str(clip), "top": [{"class": ckpt["classes"][i], "prob": float(p)}
                                                   for p, i in zip(top.values, top.indices)],
                        "probs": {c: float(p) for c, p in zip(ckpt["classes"], probs)}})
    if as_json:
        print(json.dumps(results if len(results) > 1 else results[0]))
    else:
        for r in results:
            print(r["clip"] + ": " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]))
    return 0


def import_dataset(args: argparse.Namespace) -> int:
    """Read a dataset in its own format and write the pipeline's manifest (see dlkdd.data.importers)."""
    from dlkdd.data import importers as imp

    try:
        if args.cmd == "import-arid":
            found = imp.read_arid_v1(args.lists, args.split)
        elif args.cmd == "import-arid15":
            found = imp.read_arid_v15(args.lists, args.split)
        elif args.cmd == "import-ug2":
            found = imp.read_ug2(args.train, args.test, args.mapping, args.val)
        elif args.cmd == "import-folder":
            found = imp.read_folder(args.root)
        else:
            found = imp.read_csv_manifest(args.csv, args.classes)
        result = imp.write_import(found, args.root, args.out, args.val_fraction, args.test_fraction, args.seed)
    except (imp.DatasetImportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except UnicodeError as err:  # the readers turn bad bytes into a DatasetImportError; never a traceback anyway
        print(f"error: text that is not UTF-8 ({err}); save lists as UTF-8 and rename files with such names",
              file=sys.stderr)
        return 2
    print(result.summary())
    print(f"next: set data.manifest: {result.manifest} and data.root: {args.root} in params.yaml, then `dvc repro`")
    return 0


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, root_positional: bool = False) -> None:
        if root_positional:
            p.add_argument("root", type=Path, help="the dataset folder (class folders inside)")
        else:
            p.add_argument("--root", type=Path, required=True, help="folder the listed paths are relative to")
        p.add_argument("--out", type=Path, required=True, help="folder for manifest.csv (outside the dataset)")
        p.add_argument("--val-fraction", type=float, default=0.1, help="share of train carved out as val if none")
        p.add_argument("--test-fraction", type=float, default=0.2, help="share held out as test if no split given")
        p.add_argument("--seed", type=int, default=0, help="seed of the split carving")

    a = sub.add_parser("import-arid", help="ARID v1.0: list_cvt/ARID_split{1,2,3}_{train,test}.txt")
    common(a)
    a.add_argument("--lists", type=Path, required=True, help="ARID's list_cvt folder")
    a.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    a15 = sub.add_parser("import-arid15", help="ARID V1.5: list_cvt/split_{0,1}/")
    common(a15)
    a15.add_argument("--lists", type=Path, required=True, help="ARID V1.5's list_cvt folder")
    a15.add_argument("--split", type=int, default=0, choices=(0, 1))
    u = sub.add_parser("import-ug2", help="UG2+ 2021 ARID1.1: VideoID,Video,ClassID CSVs")
    common(u)
    u.add_argument("--train", type=Path, required=True)
    u.add_argument("--test", type=Path, required=True, help="e.g. ARID1.1_t1_validation_gt_pub.csv")
    u.add_argument("--val", type=Path, help="optional; else carved out of train")
    u.add_argument("--mapping", type=Path, required=True, help="mapping_table_t1.txt")
    f = sub.add_parser("import-folder", help="folder per class: <root>/<Class>/* or <root>/{train,val,test}/<Class>/*")
    common(f, root_positional=True)
    c = sub.add_parser("import-csv", help="plain CSV manifest: path,label[,split][,group]")
    c.add_argument("csv", type=Path)
    common(c)
    c.add_argument("--classes", type=Path, help="class names, one per line (default: the sorted labels)")


def export(model_path: Path, out: Path) -> int:
    """Write the student as TorchScript; ``predict --model`` accepts the result."""
    from dlkdd.distill.export import export_torchscript

    try:
        meta = export_torchscript(model_path, out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {meta['arch']} → {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dlkdd", description="Dark-video action recognition by dual-light KD")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="print the metrics table of the last run")
    s.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    p = sub.add_parser("predict", help="classify raw dark clips with the student alone")
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--model", type=Path, default=Path("models/student.pt"))
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    _import_parsers(sub)
    e = sub.add_parser("export", help="export the student to TorchScript (predict --model accepts the file)")
    e.add_argument("--model", type=Path, default=Path("models/student.pt"))
    e.add_argument("--out", type=Path, default=Path("models/student.torchscript.pt"))
    args = ap.parse_args(argv)
    if args.cmd == "summary":
        return summary(args.metrics)
    if args.cmd == "export":
        return export(args.model, args.out)
    if args.cmd.startswith("import-"):
        return import_dataset(args)
    return predict(args.clips, args.model, args.topk, args.json)


if __name__ == "__main__":
    sys.exit(main())
