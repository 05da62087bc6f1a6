"""Prefect flow ``retrain``: landed clips → quality gate → dataset (DVC) → pipeline → compare → promote → push.

Thin on purpose: decoding and statistics come from ``dlkdd``, the gate from :mod:`flows.gate`, every git/DVC step
from :mod:`flows.ops` (subprocesses; tasks use ``cache_policy=NO_CACHE`` because their effect is on disk, not in
their return value). The dataset change and the pipeline run happen in a throw-away worktree on branch
``retrain/<run_id>``, so a failed or killed run leaves production exactly as it was.
"""
from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dlkdd.config import Params, load_params
from dlkdd.data.footage import Landed, NewClip, add_clips, file_md5, read_footage_csv, scan_inbox
from dlkdd.data.clipstats import clip_stats
from dlkdd.data.video import VideoDecodeError, read_video
from flows import ops
from flows.gate import BatchVerdict, gate_batch


@dataclass
class Summary:
    """What one retrain did; rendered as the Prefect artifact and ``reports/retrain/<run_id>.md``."""

    run_id: str
    landed: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    gate: str = ""
    metric: str = ""
    production: float | None = None
    candidate: float | None = None
    decision: str = "nothing to do"  # promoted | kept | gate failed | training failed | nothing to do
    reason: str = ""
    branch: str = ""
    tag: str = ""
    push: str = ""

    def markdown(self) -> str:
        fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        rows = [("run", self.run_id), ("landed", f"{len(self.landed)}: " + ", ".join(self.landed)),
                ("accepted", f"{len(self.accepted)}: " + ", ".join(self.accepted)),
                ("quarantined", f"{len(self.quarantined)}: "
                 + "; ".join(f"{k} ({v})" for k, v in self.quarantined.items())),
                ("quality gate", self.gate), (f"{self.metric} production", fmt(self.production)),
                (f"{self.metric} new", fmt(self.candidate)), ("decision", f"**{self.decision}**"),
                ("reason", self.reason), ("branch", self.branch), ("production tag", self.tag),
                ("dvc push", self.push)]
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        return "\n".join([f"# Retrain {self.run_id}", "", "| item | value |", "|---|---|"]
                         + [f"| {k} | {esc(v)} |" for k, v in rows]) + "\n"


def decide(production: float | None, candidate: float | None, tolerance: float, metric: str) -> tuple[bool, str]:
    """Promote iff the candidate is not worse than production beyond ``tolerance`` (< 0: it must beat production)."""
    if candidate is None:
        return False, f"the new run has no {metric}"
    if production is None:
        return True, f"no production {metric} to beat"
    if candidate >= production - tolerance:
        return True, f"{metric} {candidate:.4f} >= production {production:.4f} - tolerance {tolerance}"
    return False, f"{metric} {candidate:.4f} is worse than production {production:.4f} beyond tolerance {tolerance}"


def _classes(repo: Path, params: Params) -> list[str]:
    known = repo / "data/frames/classes.txt"  # the trained class list; params only before the first run
    return [c for c in known.read_text().split("\n") if c] if known.is_file() else list(params.generate.classes)


@task(cache_policy=NO_CACHE)
def inspect_clips(landed: list[Landed], classes: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Decode every landed clip; returns its statistics (one row per decodable clip) and ``{path: reason}`` refusals."""
    rows, refused = [], {}
    for item in landed:
        key = str(item.path)
        if item.class_name is not None and item.class_name not in classes:
            refused[key] = f"unknown class '{item.class_name}' (known: {', '.join(classes)})"
            continue
        try:
            video, fps = read_video(item.path)
        except VideoDecodeError as err:
            refused[key] = f"cannot decode: {err}"
            continue
        label = classes.index(item.class_name) if item.class_name else -1
        split = "train" if item.class_name else "unlabelled"  # unlabelled rows stay out of the class balance
        rows.append({"clip_id": key, "split": split, "label": label, "class_name": item.class_name or "",
                     **clip_stats(video, fps)})
    return pd.DataFrame(rows), refused


@task(cache_policy=NO_CACHE)
def run_gate(stats: pd.DataFrame, params: Params, repo: Path, classes: list[str], run_id: str) -> BatchVerdict:
    """The data-quality gate on the batch; drift is measured against production's training-clip statistics."""
    ref_path = repo / "data/frames/stats.csv"
    reference = None
    if ref_path.is_file():
        ref = pd.read_csv(ref_path)
        reference = ref[ref["split"] == "train"]
    return gate_batch(stats, params, reference, classes, repo / "reports/retrain" / run_id / "gate")


@task(cache_policy=NO_CACHE)
def quarantine_clips(refused: dict[str, str], inbox: Path, quarantine: Path, run_id: str) -> None:
    """Move each refused clip to ``<quarantine>/<run_id>/<its inbox path>`` with a ``<clip>.reason.txt`` beside it."""
    for src, reason in refused.items():
        dest = quarantine / run_id / Path(src).relative_to(inbox)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dest)
        dest.with_name(dest.name + ".reason.txt").write_text(reason + "\n")


@task(cache_policy=NO_CACHE)
def add_to_dataset(ws: Path, clips: list[NewClip], run_id: str) -> list[str]:
    """Copy the accepted clips into the worktree's DVC-tracked footage folder and commit the change on its branch."""
    added = add_clips(ws / "data/footage.csv", clips)
    if added:
        ops.dvc(ws, "add", "-q", "data/footage")
        ops.commit_all(ws, f"retrain {run_id}: land {len(added)} clip(s) in data/footage")
    return added


@task(cache_policy=NO_CACHE)
def run_pipeline(ws: Path, set_params: list[str], run_id: str) -> str:
    """``dvc exp run`` (= ``dvc repro`` + recorded experiment, ``-S`` overrides allowed) in the worktree; commit."""
    args = ["exp", "run", "--name", f"retrain-{run_id}"]
    for kv in set_params:
        args += ["-S", kv]
    ops.dvc(ws, *args)
    return ops.commit_all(ws, f"retrain {run_id}: pipeline results")


@task(cache_policy=NO_CACHE)
def push_remote(ws: Path) -> str:
    if not ops.has_remote(ws):
        return "skipped: no DVC remote configured (see README: DVC remote)"
    ops.dvc(ws, "push")
    return "pushed"


def _finish(summary: Summary, repo: Path) -> Summary:
    md = summary.markdown()
    out = repo / "reports/retrain" / f"{summary.run_id}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    create_markdown_artifact(markdown=md, key="retrain-summary", description=f"retrain {summary.run_id}")
    get_run_logger().info("retrain %s: %s (%s); summary %s", summary.run_id, summary.decision, summary.reason, out)
    return summary


@flow(name="retrain", log_prints=True)
def retrain(repo: str = ".", set_params: list[str] | None = None, push: bool = True,
            tolerance: float | None = None) -> dict:
    """Retrain on whatever has landed in the inbox; promote the new student only if it is not worse.

    set_params: ``dvc exp run -S`` overrides for this run (e.g. ``["kd.alpha=0.7"]``); tolerance: overrides
    ``retrain.tolerance`` for this run (negative: the new student must beat production by that much).
    """
    repo_p = Path(repo).resolve()
    with ops.exclusive(repo_p) as mine:
        if not mine:
            get_run_logger().warning("another retrain is running on %s; the next poll starts a follow-up", repo_p)
            return {"decision": "busy", "reason": "another retrain holds the lock"}
        return _retrain(repo_p, list(set_params or []), push, tolerance)


def _retrain(repo_p: Path, set_params: list[str], push: bool, tolerance: float | None) -> dict:
    params = load_params(repo_p / "params.yaml")
    cfg = params.retrain
    tolerance = cfg.tolerance if tolerance is None else tolerance
    inbox, quarantine = repo_p / cfg.inbox, repo_p / cfg.quarantine
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    summary = Summary(run_id, metric=cfg.metric)
    stale = ops.cleanup_stale(repo_p)
    if stale:
        get_run_logger().warning("removed worktrees of interrupted runs: %s", stale)

    landed = scan_inbox(inbox, cfg.settle_s)
    summary.landed = [str(c.path.relative_to(inbox)) for c in landed]
    if not landed:
        summary.reason = f"no settled clips in {inbox}"
        return vars(_finish(summary, repo_p))

    # 1. decode + quality gate; refused clips are quarantined with their reason
    classes = _classes(repo_p, params)
    stats, refused = inspect_clips(landed, classes)
    gate = run_gate(stats, params, repo_p, classes, run_id) if len(stats) else None
    if gate is not None:
        summary.gate = ("passed" if gate.passed else "FAILED") + (f": {gate.report}" if gate.report else "")
        refused.update(gate.rejected)
        if not gate.passed:  # the whole batch is refused: nothing of it is trained on
            refused.update({k: f"batch failed the quality gate: {gate.report}" for k in stats["clip_id"]
                            if k not in refused})
    quarantine_clips(refused, inbox, quarantine, run_id)
    summary.quarantined = {str(Path(k).relative_to(inbox)): v for k, v in refused.items()}
    accepted = [c for c in landed if str(c.path) not in refused]
    summary.accepted = [str(c.path.relative_to(inbox)) for c in accepted]
    if gate is not None and not gate.passed:
        summary.decision, summary.reason = "gate failed", "the batch failed the quality gate: nothing trained"
        return vars(_finish(summary, repo_p))
    if not accepted:
        summary.decision, summary.reason = "nothing to do", "every landed clip was quarantined"
        return vars(_finish(summary, repo_p))

    known = set(read_footage_csv(repo_p / "data/footage.csv")["md5"])
    clips = [NewClip(c.path, c.class_name, file_md5(c.path)) for c in accepted]
    fresh = [c for c in clips if c.md5 not in known]
    if not fresh:
        for c in clips:
            c.src.unlink(missing_ok=True)
        summary.reason = "every accepted clip is already in the dataset"
        return vars(_finish(summary, repo_p))

    ws, branch, base = ops.open_worktree(repo_p, run_id)
    summary.branch, keep_branch, error = branch, False, None
    try:
        # 2. dataset change + 3. pipeline, both on the branch: production is untouched until promotion
        add_to_dataset(ws, fresh, run_id)
        prod = ops.production_rev(repo_p)
        try:
            run_pipeline(ws, set_params, run_id)
        except ops.CommandFailed as err:
            summary.decision, summary.reason = "training failed", f"nothing promoted: {str(err).splitlines()[0]}"
            error = err
            return vars(_finish(summary, repo_p))
        # 4. compare with the production student
        summary.production, summary.candidate = ops.metric_diff(ws, prod, cfg.metric)
        promote, why = decide(summary.production, summary.candidate, tolerance, cfg.metric)
        keep_branch = True
        # 5. promote (fast-forward + prod-* tag + dvc checkout) or keep production and say why
        if not promote:
            summary.decision, summary.reason = "kept", f"{why}; candidate on {branch}"
        else:
            try:
                summary.tag = ops.promote(repo_p, branch, base, f"retrain {run_id}: {why}")
                summary.decision, summary.reason = "promoted", why
            except ops.CommandFailed as err:
                summary.decision, summary.reason = "kept", f"promotion refused: {str(err).splitlines()[0]}"
        # 6. data and models to the DVC remote, with retries
        if push:
            try:
                summary.push = push_remote.with_options(retries=cfg.push_retries,
                                                        retry_delay_seconds=cfg.push_retry_delay_s)(ws)
            except ops.CommandFailed as err:
                summary.push = f"FAILED after {cfg.push_retries + 1} attempts: {str(err).splitlines()[0]}"
                error = err
        else:
            summary.push = "skipped (push=False)"
        for c in clips:  # landed clips are now in the DVC cache and on a branch
            c.src.unlink(missing_ok=True)
        return vars(_finish(summary, repo_p))
    finally:
        ops.close_worktree(repo_p, ws, branch, keep_branch=keep_branch)
        if error is not None:  # the summary is written; the run itself shows as failed in the UI
            raise error


if __name__ == "__main__":
    print(retrain())
