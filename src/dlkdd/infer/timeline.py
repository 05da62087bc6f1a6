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
from dlkdd.data.video import printable

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


MAX_CLASSES_DRAWN = 5  # the chart's curves: more than this many lines is unreadable


def top_classes(windows: Sequence[WindowResult], n_classes: int, min_prob: float,
                limit: int = MAX_CLASSES_DRAWN) -> list[int]:
    """The classes worth a curve: those reaching ``min_prob`` in some window, most likely first, at most ``limit``;
    when none does, the 3 with the highest peaks (the chart then shows what came closest)."""
    if not windows:
        return []
    peaks = np.stack([w.probs for w in windows]).max(axis=0)
    order = [int(c) for c in np.argsort(-peaks, kind="stable")[:n_classes]]
    reached = [c for c in order if peaks[c] >= min_prob]
    return (reached or order[:3])[:limit]


@dataclass(frozen=True)
class Chart:
    """Where things go on the timeline chart (PNG and SVG alike): plot area, title and axis-label positions."""

    width: int
    height: int
    duration: float
    left: int = 64
    right: int = 16
    top: int = 34
    bottom: int = 50

    def x(self, t: float) -> float:
        return self.left + (self.width - self.left - self.right) * (t / self.duration if self.duration > 0 else 0.0)

    def y(self, p: float) -> float:
        return self.top + (self.height - self.top - self.bottom) * (1.0 - p)

    @property
    def tick_y(self) -> int:  # baseline of the time tick labels
        return self.height - self.bottom + 16

    @property
    def xlabel_y(self) -> int:  # baseline of "time (s)", inside the image
        return self.height - self.bottom + 36


def _chart(windows: Sequence[WindowResult], width: int, height: int) -> Chart:
    return Chart(width, height, max((w.end_s for w in windows), default=0.0))


def timeline_svg(windows: Sequence[WindowResult], classes: Sequence[str], segments: Sequence[Segment],
                 width: int = 960, height: int = 300, title: str = "", min_prob: float = 0.5) -> str:
    """Inline SVG (no xmlns URL, no external reference): the probability of the :func:`top_classes` at each window's
    centre over time, with a title, axis labels, the ``min_prob`` line and the segments as labelled bands in their
    class colour under the curves."""
    g, esc = _chart(windows, width, height), html.escape
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="class probabilities over time">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{width / 2:.0f}" y="20" font-size="14" font-weight="bold" text-anchor="middle">'
             f'{esc(title)}</text>']
    for s in segments:
        c, x0, x1 = _hex(class_colour(list(classes).index(s.label))), g.x(s.start_s), g.x(s.end_s)
        parts.append(f'<rect x="{x0:.1f}" y="{g.y(1):.1f}" width="{x1 - x0:.1f}" height="{g.y(0) - g.y(1):.1f}" '
                     f'fill="{c}" fill-opacity="0.22"><title>{esc(s.label)} {s.start_s:.2f}–{s.end_s:.2f} s, mean '
                     f'{s.mean_prob:.2f}</title></rect>'
                     f'<text x="{x0 + 3:.1f}" y="{g.y(1) + 12:.1f}" font-size="11" fill="{c}">'
                     f'{esc(_fit(s.label, x1 - x0, 6.5))}</text>')
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{g.x(0):.1f}" x2="{g.x(g.duration):.1f}" y1="{g.y(p):.1f}" y2="{g.y(p):.1f}" '
                     'stroke="#dddddd" stroke-width="1"/>'
                     f'<text x="{g.x(0) - 6:.1f}" y="{g.y(p) + 4:.1f}" font-size="11" text-anchor="end">{p:.2f}</text>')
    parts.append(f'<line x1="{g.x(0):.1f}" x2="{g.x(g.duration):.1f}" y1="{g.y(min_prob):.1f}" '
                 f'y2="{g.y(min_prob):.1f}" stroke="#555555" stroke-dasharray="4 3"/>')
    for t in _time_ticks(g.duration):
        parts.append(f'<text x="{g.x(t):.1f}" y="{g.tick_y}" font-size="11" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{(g.x(0) + g.x(g.duration)) / 2:.0f}" y="{g.xlabel_y}" font-size="12" '
                 'text-anchor="middle">time (s)</text>'
                 f'<text x="14" y="{(g.y(0) + g.y(1)) / 2:.0f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(g.y(0) + g.y(1)) / 2:.0f})">probability</text>')
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    for c in top_classes(windows, len(classes), min_prob):
        pts = " ".join(f"{g.x(t):.1f},{g.y(float(w.probs[c])):.1f}" for t, w in zip(centres, windows))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_hex(class_colour(c))}" stroke-width="2">'
                     f'<title>{esc(classes[c])}</title></polyline>')
    parts.append("</svg>")
    return "\n".join(parts)


def _fit(label: str, room_px: float, char_px: float) -> str:
    """``label`` cut to what fits in ``room_px`` (``…`` when cut, nothing when not even 2 characters fit)."""
    n = int(room_px // char_px) - 1
    return label if len(label) <= n else (label[: n - 1] + "…" if n >= 3 else "")


def _time_ticks(duration: float) -> list[float]:
    """About 6 round tick times (1, 2, 5 × 10^k seconds) from 0 to ``duration``."""
    if duration <= 0:
        return [0.0]
    raw = duration / 6
    mag = 10 ** np.floor(np.log10(raw))
    step = float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))
    return [round(k * step, 6) for k in range(int(duration / step + 1e-9) + 1)]


FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[float, float], scale: float = 0.4, colour=(0, 0, 0),
          anchor: str = "left", thick: int = 1) -> None:
    """``text`` drawn on ``img`` at ``org`` (baseline), anchored left, middle or right."""
    (tw, _), _ = cv2.getTextSize(text, FONT, scale, thick)
    x = org[0] - {"left": 0, "middle": tw / 2, "right": tw}[anchor]
    cv2.putText(img, text, (round(x), round(org[1])), FONT, scale, colour, thick, cv2.LINE_AA)


def _vertical_text(img: np.ndarray, text: str, centre: tuple[int, int], scale: float = 0.45) -> None:
    """``text`` drawn bottom-to-top, centred on ``centre`` (OpenCV has no rotated text: drawn flat, then turned)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    flat = np.full((th + base + 4, tw + 4, 3), 255, np.uint8)
    cv2.putText(flat, text, (2, th + 2), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    turned = np.ascontiguousarray(np.rot90(flat))
    h, w = turned.shape[:2]
    y0, x0 = max(0, centre[1] - h // 2), max(0, centre[0] - w // 2)
    region = img[y0:y0 + h, x0:x0 + w]
    region[...] = np.minimum(region, turned[: region.shape[0], : region.shape[1]])


def _png_axes(img: np.ndarray, g: Chart, min_prob: float, title: str) -> None:
    """Title, grid, the ``min_prob`` line, tick labels and axis labels of the PNG chart."""
    _text(img, title[:110], (g.width / 2, 22), 0.55, anchor="middle", thick=1)
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        cv2.line(img, (round(g.x(0)), round(g.y(p))), (round(g.x(g.duration)), round(g.y(p))), (221, 221, 221), 1)
        _text(img, f"{p:.2f}", (g.left - 6, g.y(p) + 4), anchor="right")
    for x in range(round(g.x(0)), round(g.x(g.duration)), 8):  # dashed threshold line
        cv2.line(img, (x, round(g.y(min_prob))), (min(x + 4, round(g.x(g.duration))), round(g.y(min_prob))),
                 (85, 85, 85), 1)
    for t in _time_ticks(g.duration):
        cv2.line(img, (round(g.x(t)), round(g.y(0))), (round(g.x(t)), round(g.y(0)) + 4), (0, 0, 0), 1)
        _text(img, f"{t:g}", (g.x(t), g.tick_y), anchor="middle")
    _text(img, "time (s)", ((g.x(0) + g.x(g.duration)) / 2, g.xlabel_y), 0.45, anchor="middle")
    _vertical_text(img, "probability", (14, round((g.y(0) + g.y(1)) / 2)))


def timeline_png(windows: Sequence[WindowResult], classes: Sequence[str], segments: Sequence[Segment],
                 width: int = 960, height: int = 300, title: str = "", min_prob: float = 0.5) -> np.ndarray:
    """The chart of :func:`timeline_svg` as an RGB uint8 image (height + a legend row, width, 3), drawn with
    OpenCV: title, axis labels, the top classes' curves, labelled segment bands and a legend of what is drawn."""
    shown = top_classes(windows, len(classes), min_prob)
    img = np.full((height + 24, width, 3), 255, np.uint8)
    g = _chart(windows, width, height)
    band = img.copy()
    for s in segments:
        cv2.rectangle(band, (round(g.x(s.start_s)), round(g.y(1))), (round(g.x(s.end_s)), round(g.y(0))),
                      class_colour(list(classes).index(s.label)), -1)
    img = cv2.addWeighted(band, 0.22, img, 0.78, 0)
    for s in segments:
        dark = tuple(int(v * 0.6) for v in class_colour(list(classes).index(s.label)))
        _text(img, _fit(s.label, g.x(s.end_s) - g.x(s.start_s), 8.0), (g.x(s.start_s) + 3, g.y(1) + 13), colour=dark)
    _png_axes(img, g, min_prob, title)
    centres = [(w.start_s + w.end_s) / 2 for w in windows]
    for c in shown:
        pts = np.array([[g.x(t), g.y(float(w.probs[c]))] for t, w in zip(centres, windows)], np.float64)
        cv2.polylines(img, [np.round(pts).astype(np.int32)], False, class_colour(c), 2, cv2.LINE_AA)
    x = g.left
    for c in shown:  # legend: only the classes drawn
        y = height + 12
        cv2.rectangle(img, (x, y - 9), (x + 14, y + 1), class_colour(c), -1)
        _text(img, classes[c][:24], (x + 19, y))
        x += 40 + cv2.getTextSize(classes[c][:24], FONT, 0.4, 1)[0][0]
    _text(img, f"- - threshold {min_prob:g}", (x + 10, height + 12), colour=(85, 85, 85))
    return img


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the timeline as PNG")
    return buf.tobytes()


def _segments_table(segments: Sequence[Segment], min_prob: float) -> str:
    """The segments as an HTML table, or the sentence that no action reached ``min_prob``."""
    if not segments:
        return f'<p class="none">No action reached {min_prob:g}: no window\'s top class was that likely.</p>'
    rows = "\n".join(f"<tr><td>{s.start_s:.2f}</td><td>{s.end_s:.2f}</td><td>{html.escape(s.label)}</td>"
                     f"<td>{s.mean_prob:.3f}</td><td>{s.last - s.first + 1}</td></tr>" for s in segments)
    return ("<table><tr><th>start s</th><th>end s</th><th>class</th><th>mean prob</th><th>windows</th></tr>\n"
            f"{rows}\n</table>")


def timeline_html(video: str, classes: Sequence[str], windows: Sequence[WindowResult], segments: Sequence[Segment],
                  thumbnails: Sequence[tuple[float, bytes]] = (), min_prob: float = 0.5) -> str:
    """One self-contained page (no script, no CDN, images inline as data URIs): the chart, a legend of the classes
    drawn, the segments table (or "No action reached ...") and brightened thumbnails (``(time s, jpeg bytes)``, e.g.
    from :class:`Thumbnails`)."""
    esc = html.escape
    legend = " ".join(f'<span style="color:{_hex(class_colour(c))}">&#9632;</span> {esc(classes[c])}'
                      for c in top_classes(windows, len(classes), min_prob))
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
{timeline_svg(windows, classes, segments, title=video, min_prob=min_prob)}
<p>{legend} &nbsp; (dashed line: threshold {min_prob:g})</p>
<h2>Segments</h2>
{_segments_table(segments, min_prob)}
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
    write_text_atomic(paths["html"], timeline_html(video, classes, windows, segments, thumbnails, min_prob))
    title = printable(Path(video).name if "://" not in video else video)
    write_bytes_atomic(paths["png"], png_bytes(timeline_png(windows, classes, segments, title=title,
                                                            min_prob=min_prob)))
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

