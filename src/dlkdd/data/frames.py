"""The frame cache: each video decoded, sampled, resized and stored as one packed uint8 ``.npy`` file per clip.

A video is decoded in one pass that converts only the frames it keeps (the sampled ones and the frame after a few of
them, for the statistics); a second pass happens only when the container misreports its frame count.

Layout of a frames directory::

    index.csv        clip_id, path, label, class_name, split, video_id  (clips that are ready)
    classes.txt      one class name per line, in label order
    stats.csv        one row of per-clip statistics per ready clip
    quarantine.csv   path, reason, kind  (inputs that could not be used; the run goes on without them)
    clips/<clip_id>.npy   uint8 (T, H, W, 3) RGB

A video gives one clip (``clip_id`` = its ``video_id``) unless ``clips_per_video`` > 1, in which case its val/test
rows give that many clips ``<video_id>__<k>``, sharing the ``video_id`` that video-level evaluation groups on.
Videos are decoded in parallel worker processes (``workers``); results keep the manifest's order. Readers of a frames
directory (training, evaluation, checks) use :mod:`dlkdd.data.frame_index`, not this module and its decoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from dlkdd import faults
from dlkdd.atomic import write_array_atomic, write_csv_atomic, write_text_atomic
from dlkdd.data.frame_index import EVAL_SPLITS, INDEX_COLUMNS, POOL_SPLIT, QUARANTINE_COLUMNS
from dlkdd.data.untrusted import DECODER, decode_for_cache
from dlkdd.data.video import (VideoDecodeError, check_complete, escape_problem, is_inside, printable, resize_frame,
                              sample_clips)
from dlkdd.isolated import Failure, map_isolated


@dataclass
class FramesResult:
    ready: int
    quarantined: int
    out_dir: Path
    videos: int = 0  # videos that gave clips (== ready when clips_per_video is 1)

    def summary(self) -> str:
        q = f", {self.quarantined} quarantined: see {self.out_dir / 'quarantine.csv'}" if self.quarantined else ""
        v = f" from {self.videos:,} videos" if self.videos and self.videos != self.ready else ""
        return f"{self.ready:,} clips ready{v}{q}"


@dataclass(frozen=True)
class SamplingSpec:
    """How clips are cut from a decoded video (policies documented in :mod:`dlkdd.data.video`)."""

    num_frames: int = 8
    size: int = 64
    clips_per_video: int = 1  # for val/test videos; train videos always give one clip
    train_sampling: str = "uniform"  # uniform | random (seeded per video)
    stride: int = 0  # 0 = segments over the whole clip; > 0 = a window of frames this far apart
    min_decoded_fraction: float = 0.0  # quarantine a file decoding fewer than this share of its reported frames
    seed: int = 0
    decode_timeout_s: float = 120.0  # a file whose decoder makes no progress this long is quarantined (timeout)


@dataclass
class _Outcome:
    rows: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    bad: dict | None = None


def check_row(rec: dict, root: Path, num_classes: int, dataset_root: Path | None = None,
              trusted_roots: tuple[Path, ...] = ()) -> tuple[str, str] | None:
    """Problems visible without decoding: (reason, kind), or None when the row is fine.

    ``root`` is the row's effective root (its own ``root`` column, else the dataset's); the file must stay inside it
    (:func:`dlkdd.data.video.escape_problem`). With ``dataset_root`` given, a row's own ``root`` must itself lie
    inside the dataset root or inside one of ``trusted_roots`` (the folders the caller vouches for: landed footage),
    so a manifest cannot point a row anywhere by giving it a root.
    """
    rel = printable(str(rec["path"]))  # for the messages: a name that is not UTF-8 shown with its bytes escaped
    if "\0" in rel or "\0" in str(rec.get("root", "")):  # no file has such a name (and realpath would raise)
        return f"{rel!r}: a NUL character in the path", "malformed"
    escape = escape_problem(str(rec["path"]), root)
    if escape is not None:
        return escape
    own_root = rec.get("root")
    if dataset_root is not None and isinstance(own_root, str) and not any(
            is_inside(own_root, r) for r in (dataset_root, *trusted_roots)):
        return (f"{rel}: its root column {printable(own_root)} is outside the dataset root {dataset_root}",
                "escapes_root")
    label = rec["label"]
    if rec.get("split") == POOL_SPLIT:  # the pool has no labels (split_pool sets NO_LABEL): nothing to check
        return None
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        label = int(label)  # a column with a blank cell is read as float
    if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < num_classes:
        return f"{rel}: label {label!r} is not in the class list (0..{num_classes - 1})", "bad_label"
    return None


def clip_ids(rec: dict, spec: SamplingSpec) -> list[str]:
    """The clip files a row writes (``clips/<id>.npy``): its ``video_id`` with ``/`` → ``_``, and ``__<k>`` per
    clip when an eval row gives ``clips_per_video`` > 1 (the naming :func:`_process` uses)."""
    vid = str(rec["video_id"]).replace("/", "_")
    k = spec.clips_per_video if rec["split"] in EVAL_SPLITS else 1
    return [vid + (f"__{j}" if k > 1 else "") for j in range(k)]


def _preflight(records: list[dict], root: Path, num_classes: int, spec: SamplingSpec,
               trusted_roots: tuple[Path, ...]) -> dict[int, dict]:
    """The rows refused before any decoding, by manifest position → quarantine row. Raises ValueError (one line)
    when two usable rows would write one clip file: one label would silently train on the other row's clip."""
    refused: dict[int, dict] = {}
    writer: dict[str, dict] = {}  # clip id -> the row writing it
    for i, rec in enumerate(records):
        problem = check_row(rec, row_root(rec, root), num_classes, root, trusted_roots)
        if problem:
            refused[i] = {"path": printable(rec["path"]), "reason": problem[0], "kind": problem[1]}
            continue
        for cid in clip_ids(rec, spec):
            other = writer.setdefault(cid, rec)
            if other is not rec:
                raise ValueError(
                    f"manifest rows {other['path']} (video_id {other['video_id']}) and {rec['path']} (video_id "
                    f"{rec['video_id']}) would both write clips/{cid}.npy: give every row its own video_id "
                    "(or drop the duplicate row)")
    return refused


def row_root(rec: dict, root: Path) -> Path:
    """A row's effective root: its own ``root`` column when it has one (landed footage), else the dataset's."""
    return Path(rec["root"]) if isinstance(rec.get("root"), str) else Path(root)


def _process(job: tuple[dict, Path, Path, SamplingSpec, int, int]) -> _Outcome:
    """Decode one video (see :func:`dlkdd.data.untrusted.decode_for_cache`), cut its clips, write them; runs in an
    isolated decoder worker (:data:`dlkdd.data.untrusted.DECODER`). Never raises on bad input."""
    rec, root, clips_dir, spec, num_classes, position = job  # rows that fail check_row never get here (_preflight)
    vid = str(rec["video_id"])
    ids = clip_ids(rec, spec)
    policy = "uniform" if rec["split"] in EVAL_SPLITS else spec.train_sampling

    def plan(total: int) -> list[np.ndarray]:  # a fresh seeded generator each call: the same plan for the same count
        rng = np.random.default_rng([spec.seed, position]) if policy == "random" else None
        return sample_clips(total, spec.num_frames, len(ids), policy, spec.stride, rng)

    try:
        faults.inject("decode", str(rec["path"]))
        clips, stats, reported = decode_for_cache(root / rec["path"], plan)
        check_complete(root / rec["path"], int(stats["frames"]), reported, spec.min_decoded_fraction)
    except VideoDecodeError as err:
        return _Outcome(bad={"path": printable(rec["path"]), "reason": str(err), "kind": err.kind})
    out = _Outcome()
    for clip_id, frames in zip(ids, clips):
        clip = np.stack([cv2.cvtColor(resize_frame(f, spec.size), cv2.COLOR_BGR2RGB) for f in frames])
        write_array_atomic(clips_dir / f"{clip_id}.npy", clip)
        out.rows.append({"clip_id": clip_id, **{c: rec[c] for c in INDEX_COLUMNS[1:]}})
        out.stats.append({"clip_id": clip_id, "split": rec["split"], "label": rec["label"], **stats,
                          "video_id": vid, "reported_frames": reported})
    return out


def build_frame_cache(manifest: pd.DataFrame, root: Path, out_dir: Path, num_frames: int, size: int,
                      classes: list[str], workers: int = 1, spec: SamplingSpec | None = None,
                      trusted_roots: tuple[str | Path, ...] = ()) -> FramesResult:
    """Decode every clip in ``manifest`` (paths relative to ``root``, or to a row's own ``root`` column) into
    ``out_dir`` (layout in the module doc).

    ``spec`` adds sampling options (``num_frames`` and ``size`` given here win); ``workers`` > 1 decodes in that many
    processes. Bad rows and files go to ``quarantine.csv`` and the rest goes on; a row's own ``root`` must lie inside
    ``root`` or one of ``trusted_roots`` (:func:`check_row`). Raises ValueError before decoding anything when two
    rows would write one clip file (:func:`_preflight`).
    """
    spec = SamplingSpec(**{**(spec.__dict__ if spec else {}), "num_frames": num_frames, "size": size})
    records = manifest.to_dict("records")
    refused = _preflight(records, Path(root), len(classes), spec, tuple(Path(r) for r in trusted_roots))
    clips = out_dir / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    # an optional ``root`` column gives a row its own root (landed footage lives beside the dataset, not inside it)
    jobs = [(rec, row_root(rec, root), clips, spec, len(classes), i)
            for i, rec in enumerate(records) if i not in refused]
    rows, stats, bad = [], [], []
    # every file is decoded in a supervised worker process: a codec that crashes or hangs on one file, or anything
    # else raised while it is handled, quarantines that file (kind crashed / timeout / error) and the rest goes on
    # (dlkdd.data.untrusted); map keeps the manifest's order, so the index does not depend on scheduling
    outcomes = map_isolated(_process, jobs, workers, spec.decode_timeout_s,
                            subject=lambda job: printable(job[0]["path"]), kind=DECODER)
    results = []
    for job, res in zip(jobs, tqdm(outcomes, total=len(jobs), desc="frames", unit="video")):
        if isinstance(res, Failure):
            res = _Outcome(bad={"path": printable(job[0]["path"]), "reason": res.message, "kind": res.kind})
        results.append(res)
    # refused rows take their manifest position again, so the quarantine keeps the manifest's order
    by_position = dict(zip((job[-1] for job in jobs), results)) | {i: _Outcome(bad=b) for i, b in refused.items()}
    results = [by_position[i] for i in sorted(by_position)]
    videos = 0
    for res in results:
        if res.bad:
            bad.append(res.bad)
            continue
        videos += 1
        rows += res.rows
        stats += res.stats
    write_csv_atomic(pd.DataFrame(rows, columns=INDEX_COLUMNS), out_dir / "index.csv")
    write_csv_atomic(pd.DataFrame(stats), out_dir / "stats.csv")
    write_csv_atomic(pd.DataFrame(bad, columns=QUARANTINE_COLUMNS), out_dir / "quarantine.csv")
    write_text_atomic(out_dir / "classes.txt", "\n".join(classes) + "\n")
    return FramesResult(len(rows), len(bad), out_dir, videos)
