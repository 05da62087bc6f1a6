"""Synthetic dark footage: an articulated figure performing ARID's 11 actions, filmed by a low-light sensor.

Every clip draws figure size, position, colour, speed, phase, background and camera jitter at random, independently of
the class, so a single frame says little: the actions differ in how the joints move over time (Sit and Stand are each
other's time reversal). The clean render is then exposed like a dark scene on a real sensor: a low mean level
(``luma_min``..``luma_max`` of 255), Poisson shot noise, Gaussian read noise and 8-bit quantisation.
Everything is a pure function of the seed.
"""
from __future__ import annotations

import csv
import hashlib
import math
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dlkdd.atomic import atomic_path
from dlkdd.config import GenerateConfig
from dlkdd.data.frame_index import POOL_SPLIT, TRUTH_FILE

SPLITS = ("train", "val", "test")
POOL_FOLDER = "unlabeled"  # where the generator writes pool clips: a name that does not say the class
MANIFEST_FIELDS = ("path", "label", "class_name", "split", "video_id")
CLIPS_PER_WORKER = 16  # by default, a process per this many clips at most: starting one costs ~0.5 s of CPU


@dataclass
class Pose:
    """Joint angles in radians (0 = limb hanging down; positive swings toward the facing direction)."""

    x: float = 0.0  # root shift, in figure heights
    y: float = 0.0  # root lift, in figure heights
    lean: float = 0.0  # torso lean forward
    hip_drop: float = 0.0  # hip lowered (crouch / sit), in figure heights
    sh_l: float = 0.0
    el_l: float = 0.0
    sh_r: float = 0.0
    el_r: float = 0.0
    hp_l: float = 0.0
    kn_l: float = 0.0
    hp_r: float = 0.0
    kn_r: float = 0.0
    facing: float = 1.0  # cos of the body's turn about the vertical axis: 1 right, -1 left


def _bump(s: float) -> float:
    """0 → 1 → 0 over s in [0, 1], smooth."""
    return math.sin(math.pi * min(max(s, 0.0), 1.0)) ** 2


def _ramp(s: float) -> float:
    """0 → 1 over s in [0, 1], smooth (smoothstep)."""
    s = min(max(s, 0.0), 1.0)
    return s * s * (3 - 2 * s)


def _gait(p: float, swing: float, knee: float, arm: float, elbow: float) -> dict[str, float]:
    c = math.sin(2 * math.pi * p)
    return dict(
        hp_l=swing * c, hp_r=-swing * c,
        kn_l=knee * max(0.0, -c), kn_r=knee * max(0.0, c),
        sh_l=-arm * c, sh_r=arm * c, el_l=elbow, el_r=elbow,
    )


def action_pose(action: str, s: float, p: float) -> Pose:
    """Pose of ``action`` at one-shot progress ``s`` in [0, 1] and cyclic phase ``p`` (cycles, unbounded)."""
    if action == "Walk":
        return Pose(x=0.5 * s, **_gait(p, 0.35, 0.5, 0.3, 0.2))
    if action == "Run":
        bounce = 0.04 * abs(math.sin(2 * math.pi * p))
        return Pose(x=1.4 * s, y=bounce, lean=0.3, **_gait(p, 0.75, 1.4, 0.9, 1.5))
    if action == "Jump":
        h = max(0.0, math.sin(2 * math.pi * p))  # in the air half the cycle
        crouch = max(0.0, -math.sin(2 * math.pi * p))
        k = 1.2 * crouch
        return Pose(y=0.25 * h, hip_drop=0.08 * crouch, lean=0.2 * crouch, sh_l=0.4 + 2.0 * h, sh_r=0.4 + 2.0 * h,
                    hp_l=0.6 * crouch, hp_r=0.6 * crouch, kn_l=k, kn_r=k)
    if action == "Wave":
        return Pose(sh_r=2.7, el_r=0.6 + 0.6 * math.sin(2 * math.pi * p), sh_l=0.1)
    if action == "Drink":
        b = _bump(s)
        return Pose(sh_r=0.9 * b, el_r=2.5 * b, lean=-0.1 * b)
    if action == "Pour":
        b = _bump(s)
        up = _ramp(s * 4) * _ramp((1 - s) * 4)  # arm held forward for most of the clip
        return Pose(sh_r=1.4 * up - 0.5 * b, el_r=0.2, sh_l=1.2 * up, el_l=0.6 * up)
    if action == "Push":
        b = _bump(s)
        ext = 0.5 + 0.5 * math.cos(2 * math.pi * s)  # bent → straight → bent
        return Pose(x=0.2 * b, lean=0.35 * b, sh_l=1.45, sh_r=1.45, el_l=1.8 * ext, el_r=1.8 * ext,
                    hp_l=-0.3 * b, hp_r=0.2 * b)
    if action == "Pick":
        b = _bump(s)
        return Pose(lean=1.3 * b, hip_drop=0.06 * b, sh_r=0.3 * b, sh_l=0.2 * b, kn_l=0.5 * b, kn_r=0.5 * b,
                    hp_l=-0.3 * b, hp_r=-0.3 * b)
    if action in ("Sit", "Stand"):
        r = _ramp(s) if action == "Sit" else 1 - _ramp(s)
        return Pose(hip_drop=0.22 * r, lean=0.3 * r, hp_l=1.5 * r, hp_r=1.5 * r, kn_l=1.5 * r, kn_r=1.5 * r,
                    sh_l=0.5 * r, sh_r=0.5 * r, el_l=0.8 * r, el_r=0.8 * r)
    if action == "Turn":
        g = _gait(p, 0.12, 0.2, 0.1, 0.1)
        return Pose(facing=math.cos(math.pi * _ramp(s)), **g)
    raise ValueError(f"unknown action '{action}'")


def _limb(x0: float, y0: float, length: float, angle: float, facing: float) -> tuple[float, float]:
    # y grows downward in image coordinates; angle 0 hangs down
    return x0 + facing * length * math.sin(angle), y0 + length * math.cos(angle)


def draw_figure(img: np.ndarray, pose: Pose, cx: float, ground: float, height: float, color: tuple, thick: int) -> None:
    """Draw a stick figure of ``height`` pixels standing on ``ground`` at ``cx`` onto ``img`` (H, W, 3), in place."""
    H, f = height, pose.facing
    hip = (cx + pose.x * H, ground - 0.5 * H - pose.y * H + pose.hip_drop * H)
    neck = (hip[0] + f * 0.35 * H * math.sin(pose.lean), hip[1] - 0.35 * H * math.cos(pose.lean))
    head = (neck[0] + f * 0.1 * H * math.sin(pose.lean), neck[1] - 0.1 * H * math.cos(pose.lean))
    segs = [(hip, neck)]
    for sh, el in ((pose.sh_l, pose.el_l), (pose.sh_r, pose.el_r)):
        elbow = _limb(*neck, 0.17 * H, sh, f)
        segs += [(neck, elbow), (elbow, _limb(*elbow, 0.15 * H, sh + el, f))]
    for hp, kn in ((pose.hp_l, pose.kn_l), (pose.hp_r, pose.kn_r)):
        knee = _limb(*hip, 0.25 * H, hp, f)
        segs += [(hip, knee), (knee, _limb(*knee, 0.25 * H, hp - kn, f))]
    s = 16  # fixed-point sub-pixel precision for cv2 drawing
    for a, b in segs:
        cv2.line(img, (int(a[0] * s), int(a[1] * s)), (int(b[0] * s), int(b[1] * s)), color, thick, cv2.LINE_AA, 4)
    cv2.circle(img, (int(head[0] * s), int(head[1] * s)), int(0.07 * H * s), color, -1, cv2.LINE_AA, 4)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A static room: a vertical gradient, a floor, a few boxes (furniture) and texture, float32 (H, W, 3) in [0, 1]."""
    top, bottom = rng.uniform(0.15, 0.6, 3), rng.uniform(0.15, 0.6, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.float32).copy()
    floor = int(h * rng.uniform(0.75, 0.9))
    img[floor:] = rng.uniform(0.1, 0.5, 3)
    for _ in range(rng.integers(0, 3)):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, floor - 10))
        x1, y1 = x0 + int(rng.integers(8, w // 3)), y0 + int(rng.integers(8, h // 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(0.1, 0.7, 3)), -1)
    img += rng.normal(0, 0.03, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 1)


def render_clip(action: str, rng: np.random.Generator, cfg: GenerateConfig) -> np.ndarray:
    """Render one clean (bright) clip of ``action``: float32 (T, H, W, 3) RGB in [0, 1]."""
    h, w, T = cfg.height, cfg.width, cfg.num_frames
    bg = _background(rng, h, w)
    height = rng.uniform(0.6, 0.9) * h
    ground = rng.uniform(0.85, 0.97) * h
    facing = float(rng.choice([-1.0, 1.0]))
    travel = {"Walk": 0.5, "Run": 1.4, "Push": 0.2}.get(action, 0.0) * height
    # keep the travelling figure in frame: start far enough from the edge it walks toward
    margin = 0.25 * height
    lo, hi = margin + max(0.0, -facing * travel), w - margin - max(0.0, facing * travel)
    cx = rng.uniform(lo, hi) if hi > lo else w / 2
    color = tuple(float(v) for v in rng.uniform(0.55, 1.0, 3))
    thick = int(max(2, round(height / 10)))
    cycles = rng.uniform(1.2, 2.2)  # gait / wave cycles in the clip
    phase0 = rng.uniform(0, 1)
    start, dur = rng.uniform(0.0, 0.2), rng.uniform(0.6, 0.8)  # one-shot actions: when they happen
    jitter = np.cumsum(rng.normal(0, 0.6, (T, 2)), axis=0)  # hand-held camera drift, pixels
    frames = np.empty((T, h, w, 3), np.float32)
    for t in range(T):
        u = t / max(T - 1, 1)
        pose = action_pose(action, (u - start) / dur, phase0 + cycles * u)
        pose.facing *= facing
        pose.x *= facing
        img = bg.copy()
        draw_figure(img, pose, cx, ground, height, color, thick)
        m = np.float32([[1, 0, jitter[t, 0]], [0, 1, jitter[t, 1]]])
        frames[t] = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return frames


def darken(clean: np.ndarray, rng: np.random.Generator, cfg: GenerateConfig) -> np.ndarray:
    """Film a clean clip (T, H, W, 3) float [0, 1] with a low-light sensor: uint8 (T, H, W, 3)."""
    target = rng.uniform(cfg.luma_min, cfg.luma_max)  # mean level, digital numbers
    signal = clean * (target / max(float(clean.mean()), 1e-6))  # expected DN per pixel
    electrons = rng.poisson(signal / cfg.gain)  # shot noise: most of a clip's time (see bench)
    dn = electrons * cfg.gain
    del electrons
    dn += rng.normal(0, cfg.read_noise, clean.shape)  # in place: the same sums as ``a + b``, without two temporaries
    np.rint(dn, out=dn)
    np.clip(dn, 0, 255, out=dn)
    return dn.astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write RGB uint8 (T, H, W, 3) as a real video file: .avi as MJPG, .mp4 as MPEG-4 part 2 (mp4v)."""
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    h, w = frames.shape[1:3]
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} video here")
    for f in np.ascontiguousarray(frames[..., ::-1]):  # RGB → BGR for the whole clip at once (a pure channel swap)
        writer.write(f)
    writer.release()
    tmp.replace(path)


def default_workers() -> int:
    """The cores this process may use (the generator's output does not depend on how many render it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _clip_jobs(cfg: GenerateConfig) -> list[tuple[int, str, str, int]]:
    counts = {"train": cfg.train_per_class, "val": cfg.val_per_class, "test": cfg.test_per_class,
              POOL_SPLIT: cfg.unlabeled_per_class}
    return [(ci, c, sp, n) for ci, c in enumerate(cfg.classes) for sp in (*SPLITS, POOL_SPLIT)
            for n in range(counts[sp])]


def pool_name(seed: int, ci: int, n: int) -> str:
    """A pool clip's stem: a digest of its stream, so neither the name nor the manifest's order says its class."""
    return "u_" + hashlib.sha1(f"{seed}/{ci}/{n}".encode()).hexdigest()[:12]


def _make_clip(job: tuple[int, str, str, int], out: Path, cfg: GenerateConfig, seed: int) -> dict:
    """Render, darken and write one clip from its own random stream; return its manifest row (a pool clip's row
    carries its true class under ``truth_*`` keys, which go to the truth file, never to the manifest)."""
    ci, cls, split, n = job
    rng = np.random.default_rng([seed, ci, (*SPLITS, POOL_SPLIT).index(split), n])
    if split == POOL_SPLIT:
        rel = f"{POOL_FOLDER}/{pool_name(seed, ci, n)}.{cfg.container}"
    else:
        rel = f"{cls}/{cls}_{split}_{n:03d}.{cfg.container}"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    write_video(out / rel, darken(render_clip(cls, rng, cfg), rng, cfg), cfg.fps)
    if split == POOL_SPLIT:
        return {"path": rel, "label": "", "class_name": "", "split": split, "video_id": Path(rel).stem,
                "truth_label": ci, "truth_class": cls}
    return {"path": rel, "label": ci, "class_name": cls, "split": split, "video_id": Path(rel).stem}


def _make_clips(jobs: list, out: Path, cfg: GenerateConfig, seed: int, workers: int) -> list[dict]:
    """Every clip's manifest row, in ``jobs`` order; ``workers`` > 1 renders them in that many processes."""
    bar = dict(total=len(jobs), desc="generate", unit="clip")
    if workers <= 1 or len(jobs) <= 1:  # the serial path: one process, one clip after another
        return [_make_clip(job, out, cfg, seed) for job in tqdm(jobs, **bar)]
    n = min(workers, len(jobs))
    # spawn, not fork: a fresh interpreter inherits no threads (tqdm's monitor, OpenCV's pool) from the caller
    with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
        rows = ex.map(partial(_make_clip, out=out, cfg=cfg, seed=seed), jobs, chunksize=max(1, len(jobs) // (8 * n)))
        return list(tqdm(rows, **bar))  # map yields in jobs order, whichever process finished first


def generate_dataset(out_dir: str | Path, cfg: GenerateConfig, seed: int, workers: int | None = None) -> Path:
    """Write ``<out>/<Class>/<Class>_<split>_<n>.<ext>`` and ``<out>/manifest.csv``; return the manifest path.

    With ``cfg.unlabeled_per_class`` > 0 also the unlabelled pool: ``<out>/unlabeled/u_<digest>.<ext>``, listed last in
    the manifest (split ``unlabeled``, no label, sorted by name) and with their true classes in
    ``<out>/unlabeled_truth.csv`` only.

    Each clip's random stream is derived from (seed, class, split, n), so a clip does not change when the number of
    clips per class changes, nor with ``workers`` (processes rendering clips; default: every core this process may
    use, one per ``CLIPS_PER_WORKER`` clips at most; 1 = serial, in this process). Worker processes are spawned: a
    calling script needs the ``if __name__ == "__main__":`` guard.
    """
    out, jobs = Path(out_dir), _clip_jobs(cfg)
    if workers is None:
        workers = min(default_workers(), len(jobs) // CLIPS_PER_WORKER)
    rows = _make_clips(jobs, out, cfg, seed, workers)
    pool = sorted((r for r in rows if r["split"] == POOL_SPLIT), key=lambda r: r["path"])  # sorted: no class order
    rows = [r for r in rows if r["split"] != POOL_SPLIT] + pool
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="") as fh:  # csv's own dialect: the bytes it always had
        wr = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    if pool:  # only with a pool: without one, the folder holds exactly what it held before pools existed
        with atomic_path(out / TRUTH_FILE) as tmp, open(tmp, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["path", "label", "class_name"])
            wr.writerows([r["path"], r["truth_label"], r["truth_class"]] for r in pool)
    return manifest
