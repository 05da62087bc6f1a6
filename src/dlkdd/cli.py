"""The ``dlkdd`` command: ``summary`` after a run, ``predict`` on raw dark clips, ``export`` the student,
``import-*`` real datasets."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dlkdd.paths import EVALUATE_DETAILS, EVALUATE_METRICS, STUDENT, STUDENT_ONNX

MODELS = ("teacher", "baseline", "student", "two_stream")
INPUTS = ("enhanced", "dark", "dark", "both")


def summary(details_path: Path) -> int:
    """Print the teacher / baseline / student / two-stream table and where the artifacts are."""
    if not details_path.is_file():
        print(f"error: {details_path} not found: run `make run` (or `dvc repro`) first", file=sys.stderr)
        return 1
    m = json.loads(details_path.read_text())
    print(f"\n{'model':10s} {'input':9s} {'top-1':>6s} {'top-5':>6s}   "
          f"(dark test split, {m['student']['clips']} clips)")
    for name, view in zip(MODELS, INPUTS):
        if name in m:
            print(f"{name:10s} {view:9s} {m[name]['top1']:6.3f} {m[name]['top5']:6.3f}")
    print(f"\nmetrics: {EVALUATE_METRICS} (dvc metrics show); every number: dvc metrics show metrics/*.json")
    print("plots:   plots/train/*.csv, plots/confusion_student.csv  (dvc plots show → dvc_plots/index.html)")
    print("models:  models/teacher.pt, models/baseline.pt, models/student.pt  (student = the deployable one)")
    return 0


MAX_WINDOW_S = 3600.0  # --window/--stride: a longer window is one label for many actions (and 1e20 s overflows)
MAX_OPEN_WINDOWS = 256  # --window / --stride: windows open at once, each holding num_frames small frames in memory


def seconds(text: str) -> float:
    """argparse type for a duration: ``2``, ``2s``, ``500ms``, ``1.5m``; must be finite and > 0."""
    t = text.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration (e.g. 2s, 500ms, 1.5m)") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"'{text}': a duration must be finite and > 0")
    return value


def window_seconds(text: str) -> float:
    """argparse type for ``--window``/``--stride``: a :func:`seconds` duration of at most :data:`MAX_WINDOW_S`."""
    value = seconds(text)
    if value > MAX_WINDOW_S:
        raise argparse.ArgumentTypeError(f"'{text}': at most {MAX_WINDOW_S:g} s (actions last seconds)")
    return value


def number_in(low: float, high: float, high_open: bool = False):
    """argparse type factory: a finite float in [low, high] (``high_open``: [low, high)); NaN and inf refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value and (value < high if high_open else value <= high)):
            end = ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"'{text}' is not a number in [{low:g}, {high:g}{end}")
        return value
    return parse


def _fmt_t(t: float) -> str:
    return f"{int(t // 3600)}:{int(t % 3600 // 60):02d}:{t % 60:04.1f}"


def _shown(text: str) -> str:
    """``text`` (a path, a URL) safe to print on a terminal: bytes that are not UTF-8 and control characters (an
    escape sequence, a newline in a file name) written as ``\\xNN``; ``--json`` prints the exact string instead."""
    from dlkdd.data.video import printable

    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in printable(text))


class Refused(Exception):
    """Bad input found before any video is read: one line, exit 2."""


DEFAULT_MODEL = Path(STUDENT)  # where `make run` / `dvc pull` put the student in the checkout


def missing_model(path: Path) -> str:
    """The one line for a model file that is not there: where it was looked for and how to get one."""
    where = path if path.is_absolute() else Path.cwd() / path
    hint = "pass --model PATH (a .pt checkpoint or an .onnx export)"
    if path == DEFAULT_MODEL:
        hint += (f", or run predict in the dlkdd checkout after `dvc pull {STUDENT}` (or `make run`, which "
                 "trains it)")
    return f"no model at {_shown(str(where))}: {hint}"


def _plan(args: argparse.Namespace) -> tuple:
    """(runner, inputs, several, windowed, window_s, stride_s) for ``predict``; :class:`Refused` with one line."""
    from dlkdd.data.stream import is_stream
    from dlkdd.infer import watch as w
    from dlkdd.infer.runner import load_runner

    if not Path(args.model).is_file():
        raise Refused(missing_model(Path(args.model)))
    try:
        runner = load_runner(args.model)
        inputs = w.expand_inputs([str(c) for c in args.clips])
    except (FileNotFoundError, ValueError, OSError) as err:
        raise Refused(str(err)) from None
    if not inputs:
        raise Refused(f"no video files in {', '.join(map(str, args.clips))}")
    several = len(inputs) > 1 or any(Path(str(c)).is_dir() for c in args.clips)
    if args.annotate and several:
        raise Refused("--annotate takes one input video")
    windowed = bool(args.window or args.timeline or args.annotate or args.max_seconds
                    or any(is_stream(s) for s, _ in inputs))
    window = args.window or 2.0
    stride = args.stride or window / 2
    if window / stride > MAX_OPEN_WINDOWS:
        raise Refused(f"--stride {stride:g}s is under 1/{MAX_OPEN_WINDOWS} of the {window:g}s window: that many "
                      "windows open at once would hold too many frames; use a longer --stride")
    return runner, inputs, several, windowed, window, stride


class LiveLines:
    """Window mode's text output for one input, printed as it happens (flushed, above any progress bar): a segment
    line as each segment closes, then a summary ("no action reached 0.5" when no segment), the timeline and the
    annotated video's paths."""

    def __init__(self, source: str, min_prob: float) -> None:
        self.source, self.min_prob, self.printed = source, min_prob, 0

    @staticmethod
    def say(line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def segment(self, seg) -> None:
        if not self.printed:
            self.say(f"{_shown(self.source)}:")
        self.printed += 1
        self.say(f"  {_fmt_t(seg.start_s)}-{_fmt_t(seg.end_s)}  {seg.label:12s} {seg.mean_prob:.2f}")

    def end(self, tl) -> None:
        stop = " (stopped by Ctrl-C: what was seen is written)" if tl.interrupted else ""
        if not self.printed:
            self.say(f"{_shown(self.source)}:")
        found = f"{len(tl.segments)} segments" if tl.segments else f"no action reached {self.min_prob:g}"
        self.say(f"  {len(tl.windows)} windows, {found}{stop}")
        if tl.files:
            self.say(f"  timeline: {_shown(str(tl.files['html']))} (+ .json, .windows.csv, .segments.csv, .png)")
        if tl.annotated is not None:
            self.say(f"  annotated video: {_shown(str(tl.annotated))} (brightened for display; the model saw the "
                     "dark frames)")


def _predict_one(runner, source: str, name: str, args: argparse.Namespace, windowed: bool, window: float,
                 stride: float, live: LiveLines | None = None):
    """One input's result: the timeline document (``--json``) or the :class:`Timeline` in window mode (its lines
    printed by ``live`` as they happen), else the clip's top-k dict. Raises what the decoder or the runner raise
    (one line each)."""
    from dlkdd.infer import watch as w
    from dlkdd.infer.timeline import timeline_doc, uncertain

    if windowed:
        tl = w.watch(runner, source, window, stride, args.timeline, args.topk, args.min_prob,
                     args.max_seconds, annotate=args.annotate, name=name, smoothing=args.smooth,
                     on_segment=live.segment if live else None)
        if args.json:
            return timeline_doc(source, runner.classes, tl.windows, tl.segments, args.topk, args.min_prob,
                                window_s=window, stride_s=stride, smoothing=args.smooth, interrupted=tl.interrupted)
        if live:
            live.end(tl)
        return tl
    probs = w.predict_clip(runner, source)
    order = probs.argsort()[::-1][: args.topk]
    return {"clip": source, "top": [{"class": runner.classes[i], "prob": float(probs[i])} for i in order],
            "uncertain": uncertain(probs), "probs": {c: float(p) for c, p in zip(runner.classes, probs)}}


def _print_results(results: list, args: argparse.Namespace, windowed: bool, several: bool) -> None:
    """``--json`` and single-clip lines, once every input is done (window mode's lines are printed live)."""
    if args.json:
        print(json.dumps(results if several else results[0]))
    elif not windowed:
        for r in results:
            doubt = "  (uncertain)" if r["uncertain"] else ""
            print(_shown(r["clip"]) + ": " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]) + doubt)


def predict(args: argparse.Namespace) -> int:
    """Run the student alone on raw dark footage (a checkpoint on PyTorch or an ``.onnx`` on ONNX Runtime): one label
    per short clip, or with ``--window``/``--timeline`` (and always for streams) a timeline of windows per video.
    Bad input is one ``error:`` line and exit 2 (a folder: the failed files listed at the end, exit 1)."""
    import cv2
    from tqdm import tqdm

    from dlkdd.data.video import VideoDecodeError

    try:
        runner, inputs, several, windowed, window, stride = _plan(args)
    except Refused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results, failed = [], []
    for source, name in tqdm(inputs, desc="predict", unit="video", disable=not several, file=sys.stderr):
        live = LiveLines(source, args.min_prob) if windowed and not args.json else None
        try:
            results.append(_predict_one(runner, source, name, args, windowed, window, stride, live))
        except (VideoDecodeError, ValueError, OSError, cv2.error) as err:
            line = _shown(str(err).splitlines()[0]) if str(err).strip() else type(err).__name__
            if live and live.printed:
                line += f" (the {live.printed} segment line(s) printed above cover only what was read before it)"
            if not several:
                print(f"error: {line}", file=sys.stderr)
                return 2
            failed.append((source, line))
    _print_results(results, args, windowed, several)
    if failed:
        print(f"{len(failed)} of {len(inputs)} inputs failed:", file=sys.stderr)
        for source, line in failed:
            print(f"  {line}" if _shown(source) in line else f"  {_shown(source)}: {line}", file=sys.stderr)
        return 1 if results else 2
    return 0


def import_dataset(args: argparse.Namespace) -> int:
    """Read a dataset in its own format and write the pipeline's manifest (see dlkdd.data.importers)."""
    from dlkdd.data import importers as imp

    if args.cmd == "import-folder":
        if args.unlabeled and args.root is None:
            print("error: --unlabeled needs --root: the dataset root the labelled manifest in --out was imported "
                  "with (the pool folder must lie inside it)", file=sys.stderr)
            return 2
        args.root = args.root or args.folder
        if args.unlabeled:
            return _import_pool(args)
    try:
        if args.cmd == "import-arid":
            found = imp.read_arid_v1(args.lists, args.split)
        elif args.cmd == "import-arid15":
            found = imp.read_arid_v15(args.lists, args.split)
        elif args.cmd == "import-ug2":
            found = imp.read_ug2(args.train, args.test, args.mapping, args.val)
        elif args.cmd == "import-folder":
            found = imp.rebased(imp.read_folder(args.folder), args.folder, args.root)
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


def _import_pool(args: argparse.Namespace) -> int:
    """``import-folder DIR --unlabeled``: DIR's clips appended as pool rows to --out's manifest
    (:mod:`dlkdd.data.pool_import`)."""
    from dlkdd.data import pool_import as pool
    from dlkdd.data.importers import DatasetImportError

    try:
        result = pool.add_pool(pool.read_pool(args.folder, args.root), args.root, args.out)
    except (DatasetImportError, OSError) as err:
        print(f"error: {_shown(str(err))}", file=sys.stderr)
        return 2
    print(result.summary())
    print(f"next: keep data.manifest: {result.manifest} and data.root: {args.root} in params.yaml, then `dvc repro` "
          "(the frames stage caches the pool in data/pool)")
    return 0


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, root_optional: bool = False) -> None:
        if root_optional:
            p.add_argument("--root", type=Path, help="folder the manifest's paths are relative to, FOLDER or one "
                           "above it (default: FOLDER; required with --unlabeled: the labelled import's --root)")
        else:
            p.add_argument("--root", type=Path, required=True, help="folder the listed paths are relative to")
        p.add_argument("--out", type=Path, required=True, help="folder for manifest.csv (outside the dataset)")
        p.add_argument("--val-fraction", type=number_in(0, 1, high_open=True), default=0.1,
                       help="share of train carved out as val if none, in [0, 1)")
        p.add_argument("--test-fraction", type=number_in(0, 1, high_open=True), default=0.2,
                       help="share held out as test if no split given, in [0, 1)")
        p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the split carving (>= 0)")

    a = sub.add_parser("import-arid", help="ARID v1.0: list_cvt/ARID_split{1,2,3}_{train,test}.txt")
    common(a)
    a.add_argument("--lists", type=Path, required=True, help="ARID's list_cvt folder")
    a.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="ARID's split 1, 2 or 3 (default: 1)")
    a15 = sub.add_parser("import-arid15", help="ARID V1.5: list_cvt/split_{0,1}/")
    common(a15)
    a15.add_argument("--lists", type=Path, required=True, help="ARID V1.5's list_cvt folder")
    a15.add_argument("--split", type=int, default=0, choices=(0, 1), help="ARID V1.5's split 0 or 1 (default: 0)")
    u = sub.add_parser("import-ug2", help="UG2+ 2021 ARID1.1: VideoID,Video,ClassID CSVs")
    common(u)
    u.add_argument("--train", type=Path, required=True, help="e.g. ARID1.1_t1_train_pub.csv")
    u.add_argument("--test", type=Path, required=True, help="e.g. ARID1.1_t1_validation_gt_pub.csv")
    u.add_argument("--val", type=Path, help="optional; else carved out of train")
    u.add_argument("--mapping", type=Path, required=True, help="mapping_table_t1.txt")
    f = sub.add_parser("import-folder", help="folder per class: <root>/<Class>/* or <root>/{train,val,test}/<Class>/*; "
                       "with --unlabeled, every clip under a folder as unlabelled pool rows")
    f.add_argument("folder", type=Path, help="the dataset folder (class folders inside); with --unlabeled, any folder "
                   "of clips, at any depth")
    common(f, root_optional=True)
    f.add_argument("--unlabeled", action="store_true",
                   help="add every video under FOLDER (any layout) as unlabelled pool rows (split 'unlabeled', no "
                   "label) to the manifest an earlier import-* wrote into --out; needs that manifest and its --root "
                   "(FOLDER inside it); re-running adds nothing twice; duplicates of labelled clips are quarantined; "
                   "--val-fraction/--test-fraction/--seed are not used")
    c = sub.add_parser("import-csv", help="plain CSV manifest: path,label[,split][,group]")
    c.add_argument("csv", type=Path, help="CSV with columns path,label[,split][,group]")
    common(c)
    c.add_argument("--classes", type=Path, help="class names, one per line (default: the sorted labels)")


def export(model_path: Path, out: Path, fmt: str) -> int:
    """Write the student as ONNX (metadata inside); ``predict --model`` runs the result on ONNX Runtime."""
    from dlkdd.distill.export import export_onnx

    try:
        info = export_onnx(model_path, out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {info.arch} ({len(info.classes)} classes, {info.num_frames}x{info.size}²) as {fmt} → {out}")
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into one usage line and exit 2)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its message: "invalid positive integer value"


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0 (a seed: numpy refuses negative ones)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


nonneg_int.__name__ = "non-negative integer"


def package_version() -> str:
    """The installed distribution's version (importlib.metadata), or the source tree's when run uninstalled."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dlkdd")
    except PackageNotFoundError:
        from dlkdd import __version__

        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``dlkdd`` argument parser (every option carries a help line)."""
    ap = argparse.ArgumentParser(prog="dlkdd", description="Dark-video action recognition by dual-light KD")
    ap.add_argument("--version", action="version", version=f"dlkdd {package_version()}",
                    help="print the installed dlkdd version and exit")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="print the accuracy table of the last run")
    s.add_argument("--details", type=Path, default=Path(EVALUATE_DETAILS),
                   help="the evaluate stage's details file (default: %(default)s)")
    p = sub.add_parser("predict", help="classify raw dark footage with the student alone: clips, long videos, "
                                       "folders, streams")
    p.add_argument("clips", nargs="+", metavar="INPUT",
                   help="video files (any container OpenCV reads), folders of them, or stream URLs (rtsp://, http://, "
                        "a device number)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="a dlkdd checkpoint (.pt, runs on PyTorch) or an ONNX export (.onnx, runs on ONNX Runtime); "
                        "default: %(default)s (in the dlkdd checkout, after `make run` or `dvc pull`)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes to print per clip (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {clip, top: [{class, prob}], uncertain, probs: {class: prob}} per clip, or the "
                        "timeline document (README: Watch long footage) in window mode; a list for several inputs. "
                        "A top class is uncertain (printed '(uncertain)') when below 0.5 or less than twice as "
                        "likely as the second")
    p.add_argument("--window", type=window_seconds,
                   help="window mode: classify windows this long, up to 1 h (e.g. 2s; default 2s when --timeline is "
                        "given or the input is a stream)")
    p.add_argument("--stride", type=window_seconds, help="one window every this long (default: half the window)")
    p.add_argument("--timeline", type=Path, metavar="DIR",
                   help="write per-window CSV/JSON, merged segments and an HTML/PNG view per video into DIR")
    p.add_argument("--min-prob", type=number_in(0, 1), default=0.5,
                   help="a segment is consecutive windows with one top class at least this likely (default: "
                        "%(default)s); 'no action reached' it is said when none is")
    p.add_argument("--smooth", type=positive_int, default=3, metavar="N",
                   help="average each window's probabilities with its neighbours', N windows (1 = raw; default "
                        "%(default)s): one misread window does not split a segment")
    p.add_argument("--max-seconds", type=seconds, help="stop reading after this much video (streams run until they "
                                                       "end, this, or Ctrl-C)")
    p.add_argument("--annotate", type=Path, metavar="OUT.mp4",
                   help="also write the video, brightened for display (the model sees the dark frames), with the "
                        "current action drawn on it (one input file); its path is printed")
    _import_parsers(sub)
    e = sub.add_parser("export", help="export the student to ONNX (predict --model runs it on ONNX Runtime)")
    e.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="the dlkdd checkpoint to export (default: %(default)s)")
    e.add_argument("--format", choices=("onnx",), default="onnx",
                   help="deployment format: onnx (classes, input size and mean/std in its metadata)")
    e.add_argument("--out", type=Path, default=Path(STUDENT_ONNX), help="file to write (default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "summary":
        return summary(args.details)
    if args.cmd == "export":
        return export(args.model, args.out, args.format)
    if args.cmd.startswith("import-"):
        return import_dataset(args)
    return predict(args)


if __name__ == "__main__":
    sys.exit(main())
