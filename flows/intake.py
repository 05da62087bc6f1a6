"""Step 1 of a retrain: what becomes of each clip a run took from the inbox.

Each clip is hashed (regular files only: a FIFO, socket or device is never opened), checked against every clip of
the dataset the pipeline trains and tests on (any split: a copy of a test clip never becomes a training clip),
decoded in an isolated worker and gated as a batch. A clip is then refused (quarantined with its reason), left for
the next run (it vanished, or changed after it was taken: still being written), or accepted. Any error while
handling one clip refuses that clip and the others go on.

Every reason and report names a clip by its path in the inbox (``Jump/x.avi``), never by the hidden claim folder it
sits in during the run (``inbox/.claimed/<run>/…``, gone after it). Good clips refused only with their batch (a failed
gate, a run that failed) are listed in ``Batch.collateral``; :func:`reland_commands` moves them back.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from dlkdd.config import Params
from dlkdd.data.content_index import ContentIndex, build_index, find_duplicates, listed_files
from dlkdd.data.inbox import Landed, quarantine_file
from dlkdd.data.frame_index import read_classes
from dlkdd.data.safe_files import Fingerprint, UnsafeFile, changed_since, fingerprint, safe_name
from dlkdd.data.untrusted import clip_stats_isolated
from dlkdd.data.video import VideoDecodeError, printable
from dlkdd.paths import FOOTAGE_CSV, FOOTAGE_DIR, FRAME_CLASSES, FRAME_STATS, RETRAIN_REPORTS
from dlkdd.quality import BatchVerdict, gate_batch

DATASET_MD5_CACHE = Path(".dvc/tmp/dataset-md5.json")  # md5s of the dataset's clips (dlkdd.data.content_index)


def one_line(err: BaseException) -> str:
    """``<Type>: <first line of the message>``."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def classes_of(repo: Path, params: Params) -> list[str]:
    known = repo / FRAME_CLASSES  # the trained class list; params only before the first run
    return read_classes(known.parent) if known.is_file() else list(params.generate.classes)


@task(cache_policy=NO_CACHE)
def inspect_clips(landed: list[Landed], classes: list[str], params: Params) -> tuple[pd.DataFrame, dict[str, str]]:
    """Decode every landed clip in an isolated worker (a codec crash or hang, or any error, refuses that clip, never
    the run); returns its statistics (one row per decodable clip, as the frame cache computes them) and
    ``{path: reason}``."""
    rows, refused = [], {}
    for item in landed:
        key = str(item.path)
        if item.class_name is not None and item.class_name not in classes:
            refused[key] = f"unknown class '{item.class_name}' (known: {', '.join(classes)})"
            continue
        try:
            stats = clip_stats_isolated(item.path, timeout_s=params.frames.decode_timeout_s,
                                        min_decoded_fraction=params.frames.min_decoded_fraction,
                                        num_frames=params.frames.num_frames)
        except VideoDecodeError as err:  # missing/empty/not_video/unreadable/incomplete/crashed/timeout/bad_name
            refused[key] = f"cannot decode ({err.kind}): {err}"
            continue
        except Exception as err:  # anything else about this one file refuses it, never the run
            refused[key] = f"error: inspecting it failed ({one_line(err)})"
            continue
        label = classes.index(item.class_name) if item.class_name else -1
        split = "train" if item.class_name else "unlabelled"  # unlabelled rows stay out of the class balance
        rows.append({"clip_id": key, "split": split, "label": label, "class_name": item.class_name or "", **stats})
    return pd.DataFrame(rows), refused


@task(cache_policy=NO_CACHE)
def run_gate(stats: pd.DataFrame, params: Params, repo: Path, classes: list[str], run_id: str) -> BatchVerdict:
    """The data-quality gate on the batch; drift is measured against production's training-clip statistics."""
    ref_path = repo / FRAME_STATS
    reference = None
    if ref_path.is_file():
        ref = pd.read_csv(ref_path)
        reference = ref[ref["split"] == "train"]
    return gate_batch(stats, params, reference, classes, repo / RETRAIN_REPORTS / run_id / "gate")


@task(cache_policy=NO_CACHE)
def quarantine_clips(refused: dict[str, str], roots: list[Path], quarantine: Path, run_id: str) -> dict[str, str]:
    """Move each refused entry to ``<quarantine>/<run_id>/<its inbox path>`` with a ``<clip>.reason.txt`` beside it
    (a name too long for that is shortened, the original recorded in the reason file).

    ``roots``: where the entries may be (the run's claim folder, the inbox); returns ``{inbox path: reason}``. An
    entry that cannot be moved (it vanished) is reported with why, and the others are still moved.
    """
    out = {}
    for src, reason in refused.items():
        root = next(r for r in roots if Path(src).is_relative_to(r))
        rel = Path(src).relative_to(root)
        try:
            quarantine_file(src, quarantine / run_id / rel, reason)
        except OSError as err:
            reason += f" (not moved to the quarantine: {err.strerror or err})"
        out[printable(rel)] = reason
    return out


def dataset_index(repo: Path, params: Params) -> tuple[ContentIndex | None, str]:
    """The content index of every clip the pipeline trains and tests on (the manifest's, landed footage's) and one
    line saying what it covers; None (and why) when it cannot be read."""
    data = params.data
    try:
        files = (listed_files(repo / data.manifest, repo / data.root, repo)
                 + listed_files(repo / FOOTAGE_CSV, repo / FOOTAGE_DIR, repo))
        index = build_index(files, repo / DATASET_MD5_CACHE, shown_from=repo)
    except (OSError, ValueError) as err:
        return None, f"FAILED: {one_line(err)}"
    unchecked = f"; {len(index.unchecked)} missing, not checked: {', '.join(index.unchecked[:3])}" \
        if index.unchecked else ""
    return index, (f"{len(files)} clips of {data.manifest} and {FOOTAGE_CSV} ({index.hashed} hashed now, the "
                   f"rest from {DATASET_MD5_CACHE}){unchecked}")


@dataclass
class Batch:
    """The clips one run took (``clips``: claimed paths) and what became of each: ``refused`` (path → reason, to
    quarantine), ``not_landed`` (inbox path → why: left for the next run), ``fps`` (the hashes of the others)."""

    roots: list[Path]  # where its paths are: the run's claim folder, the inbox
    clips: list[Landed]
    refused: dict[str, str] = field(default_factory=dict)
    not_landed: dict[str, str] = field(default_factory=dict)
    fps: dict[Path, Fingerprint] = field(default_factory=dict)
    collateral: list[str] = field(default_factory=list)  # refused with the batch, not for themselves
    _left: set[Path] = field(default_factory=set)

    def shown(self, path: str | Path) -> str:
        """A claimed (or inbox) path as its inbox path."""
        root = next(r for r in self.roots if Path(path).is_relative_to(r))
        return printable(Path(path).relative_to(root))

    def unclaim(self, text: str) -> str:
        """``text`` with each claimed path in it written as its inbox path (the claim folder is gone after the run)."""
        return text.replace(str(self.roots[0]) + os.sep, "") if self.roots else text

    def live(self) -> list[Landed]:
        """The clips neither refused nor left for the next run (yet)."""
        return [c for c in self.clips if str(c.path) not in self.refused and c.path not in self._left]

    def leave(self, path: Path, why: str) -> None:
        self.not_landed[self.shown(path)] = f"{why}; not landed, left for the next run"
        self._left.add(path)

    def hash(self) -> None:
        """md5 + identity of each clip; one that is not a regular file (never opened) or cannot be read is refused,
        one that vanished or is still being written is left for the next run."""
        for c in self.live():
            try:
                self.fps[c.path] = fingerprint(c.path)
            except UnsafeFile as err:
                if err.kind in ("vanished", "changed"):
                    self.leave(c.path, err.why)
                else:
                    self.refused[str(c.path)] = f"{err.kind}: {self.shown(c.path)}: {err.why}"
            except Exception as err:  # anything else about this one file refuses it, never the run
                self.refused[str(c.path)] = f"error: hashing it failed ({one_line(err)})"

    def refuse_duplicates(self, index: ContentIndex) -> None:
        """Refuse each clip whose bytes are a dataset clip's (any split) or an earlier clip's of this batch."""
        live = self.live()
        self.refused.update(find_duplicates({str(c.path): self.fps[c.path].md5 for c in live}, index,
                                            {str(c.path): self.shown(c.path) for c in live}))

    def inspect_and_gate(self, repo: Path, params: Params, run_id: str) -> BatchVerdict | None:
        """Decode each clip (a bad one is refused), then the quality gate on the batch (a failed batch: all
        refused); None when no clip was left to gate."""
        classes = classes_of(repo, params)
        stats, bad = inspect_clips(self.live(), classes, params)
        self.refused.update({k: self.unclaim(v) for k, v in bad.items()})
        if not len(stats):
            return None
        real = {self.shown(k): k for k in stats["clip_id"]}  # the gate and its reports name clips as in the inbox
        gate = run_gate(stats.assign(clip_id=list(real)), params, repo, classes, run_id)
        self.refused.update({real[k]: v for k, v in gate.rejected.items()})
        if not gate.passed:  # the whole batch is refused: nothing of it is trained on
            why = f"offenders: {', '.join(gate.rejected)}" if gate.rejected else _first_line(gate.report)
            self.collateral += [k for k in real.values() if k not in self.refused]
            self.refused.update({k: f"batch failed the quality gate ({why}), not this clip: land it again with the "
                                    "command in the run summary" for k in self.collateral})
        return gate

    def keep_unchanged(self) -> list[Landed]:
        """The live clips still the bytes they were hashed as; the others (grown, rewritten, replaced, vanished
        since) are left for the next run."""
        for c in self.live():
            why = changed_since(c.path, self.fps[c.path])
            if why:
                self.leave(c.path, why)
        return self.live()


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no report"])[0]


def quarantine_left(claimed: Path, roots: list[Path], quarantine: Path, run_id: str,
                    err: BaseException) -> tuple[dict[str, str], list[str]]:
    """Quarantine every clip still in the run's claim folder, after an error no single clip can be blamed for:
    ({inbox path: reason}, the claimed paths moved)."""
    left = [os.path.join(top, n) for top, _dirs, files in os.walk(claimed) for n in files]
    why = (f"the run failed ({one_line(err)}) with this clip in its batch; quarantined so it cannot fail the next "
           "run too: move it back to the inbox to try again").replace(str(claimed) + os.sep, "")
    return quarantine_clips.fn({p: why for p in left}, roots, quarantine, run_id), left


def reland_commands(repo: Path, inbox: Path, quarantine: Path, run_id: str, rels: list[Path]) -> list[str]:
    """Shell commands, run in ``repo``, that move quarantined clips (``rels``: their inbox paths) back to the inbox
    (``mv -n``: never over a newer landing). A name a command line cannot carry (control characters, bytes that
    are not UTF-8) gets a comment saying to move it by hand."""
    q = shlex.quote
    out = []
    for rel in rels:
        src = quarantine / run_id / rel
        src = src.with_name(safe_name(src.name))  # where quarantine_file put a name too long to keep
        if not os.path.lexists(src):
            continue
        text = printable(rel)
        if text != os.fsdecode(rel) or any(ord(c) < 32 or ord(c) == 127 for c in text):
            out.append(f"# move {ascii(text)} back from {_under(src.parent, repo)} by hand (a name not plain text)")
            continue
        dest = inbox / rel
        out.append(f"mkdir -p {q(_under(dest.parent, repo))} && mv -n {q(_under(src, repo))} {q(_under(dest, repo))}")
    return out


def _under(path: Path, repo: Path) -> str:
    """``path`` relative to ``repo`` when inside it (shorter commands), else absolute."""
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
