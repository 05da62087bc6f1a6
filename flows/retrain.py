"""Prefect flow ``retrain``: landed clips → quality gate → dataset (DVC) → pipeline → compare → promote → push.

Thin on purpose: decoding and statistics come from ``dlkdd``, the gate from :mod:`flows.gate`, every git/DVC step
from :mod:`flows.ops` (subprocesses; tasks use ``cache_policy=NO_CACHE`` because their effect is on disk, not in
their return value). The dataset change and the pipeline run happen in a throw-away worktree on branch
``retrain/<run_id>``, so a failed or killed run leaves production exactly as it was.
"""
from __future__ import annotations

import shlex
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dlkdd.atomic import write_text_atomic
from dlkdd.config import Params, load_params
from dlkdd.data.footage import (Landed, NewClip, add_clips, claim, claim_dir, file_md5, quarantine_file,
                                read_footage_csv, release_claims, survey_inbox)
from dlkdd.data.frame_index import read_classes
from dlkdd.data.untrusted import clip_stats_isolated
from dlkdd.data.video import VideoDecodeError, printable
from dlkdd.regression import PredictionsError, compare_predictions, metric_values, promotion_verdict
from flows import ops
from flows.gate import BatchVerdict, gate_batch
from flows.production import ProductionCheckout, ProductionInconsistent, PromotionFailed


@dataclass
class Summary:
    """What one retrain did; rendered as the Prefect artifact and ``reports/retrain/<run_id>.md``."""

    run_id: str
    reconciled: list[str] = field(default_factory=list)  # what the run repaired before starting
    landed: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    gate: str = ""
    drift: str = ""
    metric: str = ""
    production: float | None = None
    candidate: float | None = None
    paired: str = ""  # the paired test of production's and the candidate's per-clip test predictions
    decision: str = "nothing to do"  # promoted | kept | gate failed | training failed | refused | nothing to do
    reason: str = ""
    branch: str = ""
    tag: str = ""
    push: str = ""
    clips: str = ""  # where accepted clips of a run that was not promoted are, and how to land them again

    def markdown(self) -> str:
        fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        rows = [("run", self.run_id), ("reconciled", "; ".join(self.reconciled) or "consistent"),
                ("landed", f"{len(self.landed)}: " + ", ".join(self.landed)),
                ("accepted", f"{len(self.accepted)}: " + ", ".join(self.accepted)),
                ("quarantined", f"{len(self.quarantined)}: "
                 + "; ".join(f"{k} ({v})" for k, v in self.quarantined.items())),
                ("quality gate", self.gate), ("drift", self.drift), (f"{self.metric} production", fmt(self.production)),
                (f"{self.metric} new", fmt(self.candidate)), ("paired test", self.paired),
                ("decision", f"**{self.decision}**"),
                ("reason", self.reason), ("branch", self.branch), ("production tag", self.tag),
                ("dvc push", self.push), ("accepted clips", self.clips)]
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        return "\n".join([f"# Retrain {self.run_id}", "", "| item | value |", "|---|---|"]
                         + [f"| {k} | {esc(v)} |" for k, v in rows]) + "\n"


def paired_evidence(ws: Path, base: str, model: str, alpha: float) -> tuple[bool | None, str]:
    """The paired test of production's (``base``) and the candidate's (``ws``) per-clip test predictions:
    (ok, one line with lost/gained clips and McNemar's p); ok is None when they cannot be paired."""
    old = ops.git(ws, "show", f"{base}:metrics/predictions.csv", check=False)
    new = ws / "metrics/predictions.csv"
    if not old or not new.is_file():
        return None, "not tested: production or the candidate has no metrics/predictions.csv"
    try:
        ok, why, _ = compare_predictions(old, new.read_text(), alpha, 0.0, model)
    except PredictionsError as err:
        return None, f"not tested: {err}"
    return ok, why


def _classes(repo: Path, params: Params) -> list[str]:
    known = repo / "data/frames/classes.txt"  # the trained class list; params only before the first run
    return read_classes(known.parent) if known.is_file() else list(params.generate.classes)


@task(cache_policy=NO_CACHE)
def inspect_clips(landed: list[Landed], classes: list[str], params: Params) -> tuple[pd.DataFrame, dict[str, str]]:
    """Decode every landed clip in an isolated worker (a codec crash or hang refuses that clip, never the run);
    returns its statistics (one row per decodable clip, as the frame cache computes them) and ``{path: reason}``."""
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
        label = classes.index(item.class_name) if item.class_name else -1
        split = "train" if item.class_name else "unlabelled"  # unlabelled rows stay out of the class balance
        rows.append({"clip_id": key, "split": split, "label": label, "class_name": item.class_name or "", **stats})
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
def quarantine_clips(refused: dict[str, str], roots: list[Path], quarantine: Path, run_id: str) -> dict[str, str]:
    """Move each refused entry to ``<quarantine>/<run_id>/<its inbox path>`` with a ``<clip>.reason.txt`` beside it.

    ``roots``: where the entries may be (the run's claim folder, the inbox); returns ``{inbox path: reason}``.
    """
    out = {}
    for src, reason in refused.items():
        root = next(r for r in roots if Path(src).is_relative_to(r))
        rel = Path(src).relative_to(root)
        quarantine_file(src, quarantine / run_id / rel, reason)
        out[printable(rel)] = reason
    return out


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
    write_text_atomic(out, md)  # a run killed here leaves no half summary
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
    inbox = repo_p / cfg.inbox
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    summary = Summary(run_id, metric=cfg.metric)
    production = ProductionCheckout(repo_p)
    stale = ops.cleanup_stale(repo_p)
    if stale:
        get_run_logger().warning("removed worktrees of interrupted runs: %s", stale)
    # 0. start from a consistent production: finish or roll back an interrupted promotion, or refuse
    try:
        summary.reconciled = production.reconcile()
    except ProductionInconsistent as err:
        summary.decision, summary.reason = "refused", str(err)
        return vars(_finish(summary, repo_p))
    back = release_claims(inbox)  # we hold the retrain lock: any claim left is a dead run's
    if back:
        summary.reconciled.append(f"returned {len(back)} clip(s) claimed by interrupted runs to the inbox")

    scan = survey_inbox(inbox, cfg.settle_s)
    cdir = claim_dir(inbox, run_id)
    taken = claim(inbox, run_id, [c.path for c in scan.landed])  # a poll during this run no longer sees them
    landed = [Landed(taken[c.path], c.class_name) for c in scan.landed]
    try:
        return _retrain_claimed(repo_p, production, landed, {str(k): v for k, v in scan.refused.items()},
                                [cdir, inbox], summary, params, set_params, push, tolerance)
    finally:
        release_claims(inbox, run_id)  # clips this run did not land (e.g. training failed) wait for the next run


def _retrain_claimed(repo_p: Path, production: ProductionCheckout, landed: list[Landed], refused: dict[str, str],
                     roots: list[Path], summary: Summary, params: Params, set_params: list[str], push: bool,
                     tolerance: float) -> dict:
    cfg, run_id = params.retrain, summary.run_id
    inbox, quarantine = roots[1], repo_p / cfg.quarantine
    rel = lambda p: printable(Path(p).relative_to(roots[0]))  # noqa: E731  (claimed path → its inbox path)
    summary.landed = [rel(c.path) for c in landed]
    if not landed and not refused:
        summary.reason = f"no settled clips in {inbox}"
        return vars(_finish(summary, repo_p))

    # 1. fingerprint (before the gate: add_clips re-checks the copy against it), decode + quality gate
    md5s = {c.path: file_md5(c.path) for c in landed}
    classes = _classes(repo_p, params)
    stats, bad = inspect_clips(landed, classes, params)
    refused.update(bad)
    gate = run_gate(stats, params, repo_p, classes, run_id) if len(stats) else None
    if gate is not None:
        summary.gate = ("passed" if gate.passed else "FAILED") + (f": {gate.report}" if gate.report else "")
        summary.drift = gate.drift
        refused.update(gate.rejected)
        if not gate.passed:  # the whole batch is refused: nothing of it is trained on
            refused.update({k: f"batch failed the quality gate: {gate.report}" for k in stats["clip_id"]
                            if k not in refused})
    summary.quarantined = quarantine_clips(refused, roots, quarantine, run_id)
    accepted = [c for c in landed if str(c.path) not in refused]
    summary.accepted = [rel(c.path) for c in accepted]
    if gate is not None and not gate.passed:
        summary.decision, summary.reason = "gate failed", "the batch failed the quality gate: nothing trained"
        return vars(_finish(summary, repo_p))
    if not accepted:
        summary.decision, summary.reason = "nothing to do", "every landed clip was quarantined"
        return vars(_finish(summary, repo_p))

    known = set(read_footage_csv(repo_p / "data/footage.csv")["md5"])
    clips = [NewClip(c.path, c.class_name, md5s[c.path]) for c in accepted]
    fresh = [c for c in clips if c.md5 not in known]
    if not fresh:
        for c in clips:
            c.src.unlink(missing_ok=True)
        summary.reason = "every accepted clip is already in the dataset"
        return vars(_finish(summary, repo_p))

    ws, branch, base = production.open_candidate(run_id)
    summary.branch, keep_branch, error = branch, False, None
    try:
        # 2. dataset change + 3. pipeline, both on the branch: production is untouched until promotion
        added = add_to_dataset(ws, fresh, run_id)
        try:
            run_pipeline(ws, set_params, run_id)
        except ops.CommandFailed as err:
            summary.decision, summary.reason = "training failed", f"nothing promoted: {str(err).splitlines()[0]}"
            error = err
            return vars(_finish(summary, repo_p))
        # 4. compare with the production student (the checked-out production commit: a rollback is respected)
        summary.production, summary.candidate = metric_values(ops.metrics_diff(ws, base), "metrics/evaluate.json",
                                                              cfg.metric)
        paired = paired_evidence(ws, base, cfg.metric.split(".")[0], cfg.alpha)
        summary.paired = paired[1]
        promote, why = promotion_verdict(summary.production, summary.candidate, tolerance, cfg.metric, paired)
        keep_branch = True
        # 5. promote (a transaction: merge → dvc checkout → tag, rolled back on failure) or keep production
        if not promote:
            summary.decision, summary.reason = "kept", f"{why}; candidate on {branch}"
        else:
            try:
                summary.tag = production.promote(branch, base, f"retrain {run_id}: {why}")
                summary.decision, summary.reason = "promoted", why
            except PromotionFailed as err:
                summary.decision, summary.reason = "kept", f"promotion failed: {err}; candidate on {branch}"
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
        if summary.decision != "promoted":
            summary.clips = reland_hint(repo_p, inbox, branch, added, summary.push == "pushed")
        for c in clips:  # landed clips are now in the DVC cache and on a branch
            c.src.unlink(missing_ok=True)
        return vars(_finish(summary, repo_p))
    finally:
        production.close_candidate(ws, branch, keep_branch=keep_branch)
        if error is not None:  # the summary is written; the run itself shows as failed in the UI
            raise error


def reland_hint(repo: Path, inbox: Path, branch: str, added: list[str], pushed: bool) -> str:
    """Where the accepted clips of an unpromoted run are, and the command that puts them back in the inbox.

    ``added``: their paths under ``data/footage`` on ``branch`` (``<Class>/<stem>_<md5[:8]><ext>``).
    """
    where = f"{len(added)} clip(s) on branch {branch} under data/footage, in the DVC cache" + \
        (" and remote" if pushed else "")
    q = shlex.quote
    gets = [f"dvc get {q(str(repo))} {q('data/footage/' + a)} --rev {q(branch)} -o "
            f"{q(str(inbox / (a.split('/', 1)[1] if a.startswith('_unlabelled/') else a)))}" for a in added]
    return f"{where}; land them again: " + " && ".join(gets)


if __name__ == "__main__":
    print(retrain())
