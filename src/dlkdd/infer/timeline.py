"""What the student saw in a long video, window by window: pure functions from per-window probabilities to top-k rows
and merged action segments, and writers for a person (self-contained HTML, PNG, annotated video) and for machines
(CSV, JSON; schema ``dlkdd.timeline/1`` in the README, "Watch long footage").

Time ownership: windows may overlap (stride < window). Each window speaks for the part of its span nearer its centre
than its neighbours' centres (:func:`owned_spans`), so the spans tile the covered time without overlap and segment
boundaries are exact: windows [0, 2], [1, 3], [2, 4] own [0, 1.5], [1.5, 2.5], [2.5, 4]. Without overlap a window owns
its whole span.

Only numpy and OpenCV: no plotting library (the PNG and the SVG are drawn here), and nothing from the pipeline.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from dlkdd.atomic import atomic_path, write_bytes_atomic, write_text_atomic

SCHEMA = "dlkdd.timeline/1"
GAP_EPS_S = 1e-6  # window times are frame / fps: back-to-back windows may differ in the last bit, not a gap
# tab10 colours (RGB hex), then evenly spaced hues for more classes
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True)
class WindowResult:
    """The model's output on one window of the video: ``probs`` (K,) over the classes, for [start_s, end_s]."""

    start_s: float
    end_s: float
    probs: np.ndarray


@dataclass(frozen=True)
class Segment:
    """A stretch of consecutive windows sharing one top class above ``min_prob``; ``mean_prob`` = their mean top
    probability, ``first``/``last`` = window indices."""

    start_s: float
    end_s: float
    label: str
    mean_prob: float
    first: int
    last: int

    def to_json(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "class": self.label, "mean_prob": self.mean_prob,
                "first_window": self.first, "last_window": self.last}


def owned_spans(windows: Sequence[WindowResult]) -> list[tuple[float, float]]:
    """The part of each window's span it speaks for: cut at the midpoints between neighbouring window centres,
    clipped to the window itself (so gaps between windows stay gaps)."""
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    spans = []
    for i, w in enumerate(windows):
        lo = w.start_s if i == 0 else max(w.start_s, (centres[i - 1] + centres[i]) / 2)
        hi = w.end_s if i == len(windows) - 1 else min(w.end_s, (centres[i] + centres[i + 1]) / 2)
        spans.append((lo, hi))
    return spans


def topk_rows(windows: Sequence[WindowResult], classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """One row per (window, rank): window, start_s, end_s, rank (1 = top), class, prob; ``k`` ranks per window."""
    rows = []
    for i, w in enumerate(windows):
        for rank, c in enumerate(np.argsort(-w.probs, kind="stable")[:k], start=1):
            rows.append({"window": i, "start_s": w.start_s, "end_s": w.end_s, "rank": rank, "class": classes[c],
                         "prob": float(w.probs[c])})
    return rows


def smooth(windows: Sequence[WindowResult], n: int) -> list[WindowResult]:
    """Each window's probabilities averaged with its neighbours', ``n`` windows centred on it (fewer at the ends;
    ``n`` <= 1: unchanged). One window misread in a run (a turn of the head, a car's headlights) then no longer cuts
    a segment in two; a boundary moves by less than ``n // 2`` strides. The list form of :func:`iter_smooth`."""
    if n <= 1 or len(windows) < 2:
        return list(windows)
    return list(iter_smooth(windows, n))


def iter_smooth(windows: Iterable[WindowResult], n: int) -> Iterator[WindowResult]:
    """:func:`smooth` as windows arrive: window ``i`` comes out as soon as window ``i + n // 2`` is in (the same
    numbers as the list form), so a live stream lags by ``n // 2`` strides, not by its whole length."""
    if n <= 1:
        yield from windows
        return
    half = n // 2
    recent: deque[tuple[int, WindowResult]] = deque(maxlen=2 * half + 1)

    def out(i: int, last: int) -> WindowResult:
        rows = [w.probs for j, w in recent if max(0, i - half) <= j <= last]
        w = next(w for j, w in recent if j == i)
        return WindowResult(w.start_s, w.end_s, np.stack(rows).mean(axis=0))

    last = -1
    for last, w in enumerate(windows):
        recent.append((last, w))
        if last - half >= 0:
            yield out(last - half, last)
    for i in range(max(0, last - half + 1), last + 1):
        yield out(i, last)


def merge_segments(windows: Sequence[WindowResult], classes: Sequence[str], min_prob: float) -> list[Segment]:
    """Runs of consecutive windows whose top class is the same with probability >= ``min_prob``, as segments over the
    windows' owned spans. A window below ``min_prob``, another top class or a gap in time ends a run."""
    return list(iter_segments(windows, classes, min_prob))


def iter_segments(windows: Iterable[WindowResult], classes: Sequence[str], min_prob: float) -> Iterator[Segment]:
    """:func:`merge_segments` as windows arrive: a segment is yielded as soon as the window after it ends it (the
    owned span of a window is known once its successor is: :func:`owned_spans`), the open one when the windows end."""
    tops: list[float] = []  # top probabilities of the open run
    first = label = 0
    lo = prev_hi = 0.0
    prev: WindowResult | None = None
    i = -1
    for i, w in enumerate(windows):
        my_lo = w.start_s
        if prev is not None:
            mid = ((prev.start_s + prev.end_s) / 2 + (w.start_s + w.end_s) / 2) / 2
            prev_hi, my_lo = min(prev.end_s, mid), max(w.start_s, mid)
        top = int(np.argmax(w.probs))
        p = float(w.probs[top])
        if tops and (p < min_prob or top != label or my_lo > prev_hi + GAP_EPS_S):
            yield Segment(lo, prev_hi, classes[label], float(np.mean(tops)), first, i - 1)
            tops = []
        if p >= min_prob:
            if not tops:
                lo, first, label = my_lo, i, top
            tops.append(p)
        prev = w
    if tops and prev is not None:
        yield Segment(lo, prev.end_s, classes[label], float(np.mean(tops)), first, i)


UNCERTAIN_BELOW = 0.5  # a top class under this probability is marked uncertain ...
UNCERTAIN_RATIO = 2.0  # ... and so is one less than this many times as likely as the runner-up


def uncertain(probs: np.ndarray) -> bool:
    """Whether the top class of ``probs`` (K,) is in doubt: below :data:`UNCERTAIN_BELOW` (0.5), or less than
    :data:`UNCERTAIN_RATIO` (2) times the second class. ``dlkdd predict`` prints "(uncertain)" then."""
    ranked = np.sort(np.asarray(probs, np.float64))[::-1]
    second = ranked[1] if len(ranked) > 1 else 0.0
    return bool(ranked[0] < UNCERTAIN_BELOW or ranked[0] < UNCERTAIN_RATIO * second)


def label_at(segments: Sequence[Segment], t: float) -> Segment | None:
    """The segment covering time ``t`` (seconds), or None (no confident action there)."""
    return next((s for s in segments if s.start_s <= t <= s.end_s), None)


def timeline_doc(video: str, classes: Sequence[str], windows: Sequence[WindowResult], segments: Sequence[Segment],
                 k: int, min_prob: float, **extra: Any) -> dict[str, Any]:
    """The JSON document (schema ``dlkdd.timeline/1``): windows with their top-k and all probabilities (in
    ``classes`` order), and segments. ``extra`` (e.g. model, fps, window_s) is stored as given."""
    windows_json = []
    for w in windows:
        order = np.argsort(-w.probs, kind="stable")[:k]
        windows_json.append({"start_s": w.start_s, "end_s": w.end_s, "class": classes[order[0]],
                             "prob": float(w.probs[order[0]]), "uncertain": uncertain(w.probs),
                             "top": [{"class": classes[c], "prob": float(w.probs[c])} for c in order],
                             "probs": [round(float(p), 6) for p in w.probs]})
    return {"schema": SCHEMA, "video": video, **extra, "classes": list(classes), "topk": k, "min_prob": min_prob,
            "windows": windows_json, "segments": [s.to_json() for s in segments]}


# ---------------------------------------------------------------------------------------------------- drawing


def class_colour(i: int) -> tuple[int, int, int]:
    """RGB colour of class ``i``: tab10, then evenly spaced hues."""
    if i < len(PALETTE):
        h = PALETTE[i].lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    hsv = np.uint8([[[(i * 47) % 180, 200, 220]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])  # type: ignore[return-value]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def brighten_for_display(frame: np.ndarray) -> np.ndarray:
    """A dark RGB uint8 frame (H, W, 3) made visible for a person: stretch the 99.5th percentile to white, then
    gamma 0.7. Display only: the model never sees this (it runs on the raw dark frames)."""
    f = frame.astype(np.float32)
    hi = max(float(np.percentile(f, 99.5)), 1.0)
    return np.clip(255.0 * (f / hi) ** 0.7, 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode a thumbnail as JPEG")
    return buf.tobytes()


class Thumbnails:
    """At most ``max_count`` evenly spaced thumbnails of a stream of unknown length, in flat memory.

    ``offer`` every window's frame; every ``step``-th offer is kept (brightened, ``height`` px, JPEG), and when more
    than ``max_count`` are kept every other one is dropped and ``step`` doubles.
    """

    def __init__(self, max_count: int = 8, height: int = 96) -> None:
        self.max_count, self.height, self.step, self.offered = max_count, height, 1, 0
        self.kept: list[tuple[int, float, bytes]] = []  # (offer index, time s, jpeg)

    def offer(self, t_s: float, frame: np.ndarray) -> None:
        """Consider RGB uint8 ``frame`` (H, W, 3) shown at ``t_s`` seconds."""
        n, self.offered = self.offered, self.offered + 1
        if n % self.step:
            return
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w * self.height / h)), self.height), interpolation=cv2.INTER_AREA)
        self.kept.append((n, t_s, _jpeg(brighten_for_display(small))))
        while len(self.kept) > self.max_count:
            self.step *= 2
            self.kept = [k for k in self.kept if k[0] % self.step == 0]

    def items(self) -> list[tuple[float, bytes]]:
        return [(t, jpg) for _, t, jpg in self.kept]


def _chart_geometry(duration: float, width: int, height: int) -> tuple[Callable[[float], float],
                                                                     Callable[[float], float]]:
    left, right, top, bottom = 48, 16, 12, 28
    sx = lambda t: left + (width - left - right) * (t / duration if duration > 0 else 0.0)  # noqa: E731
    sy = lambda p: top + (height - top - bottom) * (1.0 - p)  # noqa: E731
    return sx, sy


def timeline_svg(windows: Sequence[WindowResult], classes: Sequence[str], segments: Sequence[Segment],
                 width: int = 960, height: int = 280) -> str:
    """Inline SVG (no xmlns URL, no external reference): probability of each class at each window's centre over time,
    segments as bands in their class colour under the curves."""
    duration = max((w.end_s for w in windows), default=0.0)
    sx, sy = _chart_geometry(duration, width, height)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="class probabilities over time">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    for s in segments:
        c = _hex(class_colour(list(classes).index(s.label)))
        parts.append(f'<rect x="{sx(s.start_s):.1f}" y="{sy(1):.1f}" width="{sx(s.end_s) - sx(s.start_s):.1f}" '
                     f'height="{sy(0) - sy(1):.1f}" fill="{c}" fill-opacity="0.15"><title>{html.escape(s.label)} '
                     f'{s.start_s:.2f}–{s.end_s:.2f} s, mean {s.mean_prob:.2f}</title></rect>')
    for p in (0.0, 0.5, 1.0):
        parts.append(f'<line x1="{sx(0):.1f}" x2="{sx(duration):.1f}" y1="{sy(p):.1f}" y2="{sy(p):.1f}" '
                     'stroke="#cccccc" stroke-width="1"/>'
                     f'<text x="{sx(0) - 6:.1f}" y="{sy(p) + 4:.1f}" font-size="11" text-anchor="end">{p:.1f}</text>')
    for k in range(5):
        t = duration * k / 4
        parts.append(f'<text x="{sx(t):.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{t:.1f} s</text>')
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    for c, name in enumerate(classes):
        pts = " ".join(f"{sx(t):.1f},{sy(float(w.probs[c])):.1f}" for t, w in zip(centres, windows))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_hex(class_colour(c))}" stroke-width="1.5">'
                     f'<title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    return "\n".join(parts)


def timeline_png(windows: Sequence[WindowResult], classes: Sequence[str], segments: Sequence[Segment],
                 width: int = 960, height: int = 280) -> np.ndarray:
    """The same chart as :func:`timeline_svg` as an RGB uint8 image (height + legend rows, width, 3), drawn with
    OpenCV."""
    legend_rows = (len(classes) + 5) // 6
    img = np.full((height + 18 * legend_rows + 6, width, 3), 255, np.uint8)
    duration = max((w.end_s for w in windows), default=0.0)
    sx, sy = _chart_geometry(duration, width, height)
    band = img.copy()
    for s in segments:
        cv2.rectangle(band, (round(sx(s.start_s)), round(sy(1))), (round(sx(s.end_s)), round(sy(0))),
                      class_colour(list(classes).index(s.label)), -1)
    img = cv2.addWeighted(band, 0.15, img, 0.85, 0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p in (0.0, 0.5, 1.0):
        cv2.line(img, (round(sx(0)), round(sy(p))), (round(sx(duration)), round(sy(p))), (204, 204, 204), 1)
        cv2.putText(img, f"{p:.1f}", (8, round(sy(p)) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k in range(5):
        t = duration * k / 4
        cv2.putText(img, f"{t:.1f}s", (round(sx(t)) - 14, height - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    for c in range(len(classes)):
        pts = np.array([[sx(t), sy(float(w.probs[c]))] for t, w in zip(centres, windows)], np.float64)
        if len(pts):
            cv2.polylines(img, [np.round(pts).astype(np.int32)], False, class_colour(c), 1, cv2.LINE_AA)
    for c, name in enumerate(classes):
        x, y = 48 + (c % 6) * 150, height + 14 + 18 * (c // 6)
        cv2.rectangle(img, (x, y - 9), (x + 12, y + 1), class_colour(c), -1)
        cv2.putText(img, name[:18], (x + 16, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the timeline as PNG")
    return buf.tobytes()


def timeline_html(video: str, classes: Sequence[str], windows: Sequence[WindowResult], segments: Sequence[Segment],
                  thumbnails: Sequence[tuple[float, bytes]] = ()) -> str:
    """One self-contained page (no script, no CDN, images inline as data URIs): the chart, a legend, the segments
    table and brightened thumbnails (``(time s, jpeg bytes)``, e.g. from :class:`Thumbnails`)."""
    esc = html.escape
    legend = " ".join(f'<span style="color:{_hex(class_colour(c))}">&#9632;</span> {esc(n)}'
                      for c, n in enumerate(classes))
    rows = "\n".join(f"<tr><td>{s.start_s:.2f}</td><td>{s.end_s:.2f}</td><td>{esc(s.label)}</td>"
                     f"<td>{s.mean_prob:.3f}</td><td>{s.last - s.first + 1}</td></tr>" for s in segments)
    thumbs = "\n".join(f'<figure><img alt="frame at {t:.1f} s" src="data:image/jpeg;base64,'
                       f'{base64.b64encode(jpg).decode()}"><figcaption>{t:.1f} s</figcaption></figure>'
                       for t, jpg in thumbnails)
    duration = max((w.end_s for w in windows), default=0.0)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(video)}: actions over time</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} figure{{display:inline-block;margin:4px}}
figcaption{{text-align:center;font-size:12px}}</style></head><body>
<h1>{esc(video)}</h1>
<p>{len(windows)} windows over {duration:.1f} s; {len(segments)} action segments.</p>
{timeline_svg(windows, classes, segments)}
<p>{legend}</p>
<h2>Segments</h2>
<table><tr><th>start s</th><th>end s</th><th>class</th><th>mean prob</th><th>windows</th></tr>
{rows}
</table>
<h2>Frames (brightened for display; the model sees the dark originals)</h2>
{thumbs}
</body></html>
"""


FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting with one of these


def spreadsheet_cell(value: Any) -> Any:
    """A text cell that a spreadsheet shows as text: OWASP's CSV-injection rule, a cell starting with ``= + - @``,
    TAB or CR gets a leading single quote (``=HYPERLINK(...)`` → ``'=HYPERLINK(...)``). Numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def _csv_text(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    """CSV for a person's spreadsheet: every text cell through :func:`spreadsheet_cell`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    w.writeheader()
    w.writerows({k: spreadsheet_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


WINDOW_FIELDS = ("window", "start_s", "end_s", "rank", "class", "prob")
SEGMENT_FIELDS = ("start_s", "end_s", "class", "mean_prob", "first_window", "last_window")


def write_timeline(folder: str | Path, video: str, classes: Sequence[str], windows: Sequence[WindowResult],
                   k: int = 3, min_prob: float = 0.5, thumbnails: Sequence[tuple[float, bytes]] = (),
                   name: str | None = None, **extra: Any) -> dict[str, Path]:
    """Write ``<name>.windows.csv``, ``<name>.segments.csv``, ``<name>.json``, ``<name>.html`` and ``<name>.png``
    into ``folder`` (each atomically) for one video; ``name`` defaults to the video's stem. Returns the paths by
    kind.

    The outputs carry names from outside (the video's path, the model's class names), each made safe for its
    reader: the CSVs are for spreadsheets, so a cell that would run as a formula is quoted
    (:func:`spreadsheet_cell`); the HTML escapes every name; the JSON is for programs and keeps the exact video path
    and class names (a reader matching them against files or a class list needs them unchanged)."""
    folder = Path(folder)
    stem = name or Path(video).stem
    segments = merge_segments(windows, classes, min_prob)
    paths = {kind: folder / f"{stem}.{suffix}" for kind, suffix in
             (("windows", "windows.csv"), ("segments", "segments.csv"), ("json", "json"), ("html", "html"),
              ("png", "png"))}
    write_text_atomic(paths["windows"], _csv_text(topk_rows(windows, classes, k), WINDOW_FIELDS))
    write_text_atomic(paths["segments"], _csv_text([s.to_json() for s in segments], SEGMENT_FIELDS))
    doc = timeline_doc(video, classes, windows, segments, k, min_prob, **extra)
    write_text_atomic(paths["json"], json.dumps(doc, indent=1))
    write_text_atomic(paths["html"], timeline_html(video, classes, windows, segments, thumbnails))
    write_bytes_atomic(paths["png"], png_bytes(timeline_png(windows, classes, segments)))
    return paths


# ---------------------------------------------------------------------------------------------------- annotation


def annotate_frame(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of RGB uint8 ``frame`` (H, W, 3) with ``text`` (e.g. "Drink 0.91") in white on a dark box, top left."""
    out = frame.copy()
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, frame.shape[0] / 480)
    thick = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    cv2.rectangle(out, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (4, th + 4), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


@contextmanager
def annotated_writer(path: str | Path, fps: float, size: tuple[int, int]) -> Iterator[Callable[[np.ndarray, str],
                                                                                            None]]:
    """Yield ``write(frame_rgb, text)`` appending annotated frames of ``size`` = (width, height) to an mp4v video.

    The file appears at ``path`` only when the block ends without error (temp file + rename: OpenCV needs the real
    extension on the temp name to pick the container, hence the nested name).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        video_tmp = tmp.with_name(tmp.name + path.suffix)
        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps if fps > 0 else 25.0, size)
        try:
            if not writer.isOpened():
                raise ValueError(f"{path}: cannot write an mp4v video there (check the folder and the .mp4 suffix)")

            def write(frame: np.ndarray, text: str) -> None:
                writer.write(cv2.cvtColor(annotate_frame(frame, text), cv2.COLOR_RGB2BGR))

            yield write
            writer.release()
            video_tmp.replace(tmp)
        finally:
            writer.release()
            video_tmp.unlink(missing_ok=True)

