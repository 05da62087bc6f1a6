"""Prefect flow ``retrain``: landed clips → quality gate → dataset (DVC) → pipeline → compare → promote → push.

Thin on purpose: decoding, statistics and the batch verdict (:mod:`dlkdd.quality.batch`) come from ``dlkdd``, every
git/DVC step from :mod:`flows.ops` (subprocesses; tasks use ``cache_policy=NO_CACHE`` because their effect is on
disk, not in their return value). The dataset change and the pipeline run happen in a throw-away worktree on branch
``retrain/<run_id>``, so a failed or killed run leaves production exactly as it was.

Unlabelled clips (loose files no ``labels.csv`` row names) train the student through the pool (KD only). A landing of
unlabelled clips only retrains once ``retrain.min_unlabeled`` of them wait untrained (:mod:`flows.pool`: landed since
the production model was trained, over nights); fewer are landed straight into production's dataset (a commit, no
pipeline run, no tag: :meth:`ProductionCheckout.land`) and the run ends ``NothingToDo`` saying how many wait. A
retrain they start is judged like any other: the same labelled test clips, the same paired test.

No inbox content stops the loop: the inbox is surveyed by ``lstat`` (FIFOs, sockets, devices and symlinks are refused
unopened), each clip is hashed, checked against every clip of the dataset (any split) and decoded on its own, and
any error while handling one clip quarantines that clip and the run goes on. An error the run cannot pin on one clip
quarantines the clips it had taken (so they cannot fail the next run too), except a git/DVC command's failure
(training, dataset commit: the clips wait in the inbox). The summary is written on every path.

Each run ends in a named Prefect state (:data:`STATES`), so the runs list tells an eventful night from a quiet one:
``Promoted``, ``Kept``, ``NothingToDo`` and ``Busy`` are ``Completed`` (the loop did its job, nobody has to act);
``GateFailed``, ``Refused`` and ``TrainingFailed`` are ``Failed`` (a person has to look: clips were refused with a
bad batch, production is not consistent, or the pipeline broke). Failed is what makes them red in the runs list and
counted by ``prefect flow-run ls --state FAILED``; for automations, Prefect emits ``prefect.flow-run.<state name>``
events (e.g. ``prefect.flow-run.GateFailed``) with the resource label ``prefect.state-type: FAILED``, so a trigger can
expect one outcome by name or match every failed one by type. An error nobody expected stays Prefect's own
``Failed`` with its exception. A Failed run's data is :class:`RetrainStopped`, which carries the summary dict:
:func:`outcome` gives that dict back from any finished run (``retrain(..., return_state=True)``); a direct call of a
Completed run returns the dict, of a Failed one raises RetrainStopped.
"""
from __future__ import annotations

import shlex
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from dlkdd.atomic import write_text_atomic
from dlkdd.config import Params, load_params
from dlkdd.data.footage import ClipChanged, NewClip, add_clips
from dlkdd.data.inbox import Landed, claim, claim_dir, release_claims, survey_inbox
from dlkdd.paths import EVALUATE_METRICS, FOOTAGE_CSV, FOOTAGE_DIR, PREDICTIONS, RETRAIN_REPORTS
from dlkdd.regression import (MissingPredictions, PredictionsError, compare_with_rev, metric_values,
                              promotion_verdict)
from flows import ops, pool
from flows.intake import Batch, dataset_index, one_line, quarantine_clips, quarantine_left, reland_commands
from flows.production import ProductionCheckout, ProductionInconsistent, PromotionFailed
from flows.summary import Summary, cell  # noqa: F401  (cell: the escaping the tests check, re-exported)

# decision -> (state name, state type); see the module docstring for why each type
STATES = {"promoted": ("Promoted", Completed), "kept": ("Kept", Completed), "nothing to do": ("NothingToDo", Completed),
          "busy": ("Busy", Completed), "gate failed": ("GateFailed", Failed), "refused": ("Refused", Failed),
          "training failed": ("TrainingFailed", Failed)}


class RetrainStopped(Exception):
    """The data of a retrain that ended in a named Failed state (GateFailed, Refused, TrainingFailed): the message
    is the headline, ``summary`` the run's summary dict."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


def final_state(summary: dict, cause: BaseException | None = None) -> State:
    """The named final state of a run whose summary is ``summary`` (its decision picks the name and the type)."""
    name, kind = STATES[summary["decision"]]
    message = f"{summary['decision']}: {summary.get('reason') or 'see the retrain-summary artifact'}"
    if kind is Completed:
        return Completed(name=name, message=message, data=summary)
    stopped = RetrainStopped(message, summary)
    stopped.__cause__ = cause
    return Failed(name=name, message=message, data=stopped)


def outcome(state: State) -> dict:
    """The summary dict of a finished retrain run (``retrain(..., return_state=True)``), whatever its named state;
    re-raises the error of a run that failed unexpectedly."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, RetrainStopped):
        return value.summary
    if isinstance(value, BaseException):
        raise value
    return value


def paired_evidence(ws: Path, base: str, model: str, alpha: float) -> tuple[bool | None, str]:
    """The paired test of production's (``base``) and the candidate's (``ws``) per-clip test predictions:
    (ok, one line with lost/gained clips and McNemar's p); ok is None when they cannot be paired."""
    old = ops.git(ws, "show", f"{base}:{PREDICTIONS}", check=False)
    try:
        ok, why, _ = compare_with_rev(old or None, ws / PREDICTIONS, base, alpha, 0.0, model)
    except MissingPredictions:
        return None, f"not tested: production or the candidate has no {PREDICTIONS}"
    except PredictionsError as err:
        return None, f"not tested: {err}"
    return ok, why


@task(cache_policy=NO_CACHE)
def add_to_dataset(ws: Path, clips: list[NewClip], run_id: str) -> list[str]:
    """Copy the accepted clips into the worktree's DVC-tracked footage folder and commit the change on its branch."""
    added = add_clips(ws / FOOTAGE_CSV, clips)
    if added:
        ops.dvc(ws, "add", "-q", FOOTAGE_DIR)
        ops.commit_all(ws, f"retrain {run_id}: land {len(added)} clip(s) in {FOOTAGE_DIR}")
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


def _finish(summary: Summary, repo: Path) -> None:
    md = summary.markdown()
    out = repo / RETRAIN_REPORTS / f"{summary.run_id}.md"
    write_text_atomic(out, md)  # a run killed here leaves no half summary
    create_markdown_artifact(markdown=md, key="retrain-summary", description=f"retrain {summary.run_id}")
    get_run_logger().info("retrain %s: %s (%s); summary %s", summary.run_id, summary.decision, summary.reason, out)


@flow(name="retrain", log_prints=True)
def retrain(repo: str = ".", set_params: list[str] | None = None, push: bool = True,
            tolerance: float | None = None) -> State:
    """Retrain on whatever has landed in the inbox; promote the new student only if it is not worse.

    set_params: ``dvc exp run -S`` overrides for this run (e.g. ``["kd.alpha=0.7"]``); tolerance: overrides
    ``retrain.tolerance`` for this run (negative: the new student must beat production by that much). Ends in a
    named state (:data:`STATES`); :func:`outcome` reads the summary dict from it.
    """
    repo_p = Path(repo).resolve()
    with ops.exclusive(repo_p) as mine:
        if not mine:
            get_run_logger().warning("another retrain is running on %s; the next poll starts a follow-up", repo_p)
            return final_state({"decision": "busy", "reason": "another retrain holds the lock"})
        return _retrain(repo_p, list(set_params or []), push, tolerance)


@dataclass
class _Run:
    """What the steps of one run share."""

    repo: Path
    params: Params
    summary: Summary
    set_params: list[str]
    push: bool
    tolerance: float
    batch: Batch = field(default_factory=lambda: Batch([], []))  # the clips it took

    @property
    def cfg(self):
        return self.params.retrain

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def inbox(self) -> Path:
        return self.repo / self.cfg.inbox

    def quarantine(self, refused: dict[str, str]) -> dict[str, str]:
        return quarantine_clips(refused, self.batch.roots, self.repo / self.cfg.quarantine, self.run_id)

    def reland(self, claimed: list[str]) -> list[str]:
        """The commands that move these quarantined (claimed) clips back to the inbox."""
        rels = [Path(p).relative_to(self.batch.roots[0]) for p in claimed]
        return reland_commands(self.repo, self.inbox, self.repo / self.cfg.quarantine, self.run_id, rels)


def _retrain(repo_p: Path, set_params: list[str], push: bool, tolerance: float | None) -> State:
    summary = Summary(time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6])
    try:
        _run(repo_p, summary, set_params, push, tolerance)
    except BaseException as err:
        if summary.decision == "training failed" and not summary.push.startswith("FAILED"):
            return final_state(dict(vars(summary)), err)  # named TrainingFailed; the summary is written (finally)
        if not summary.push.startswith("FAILED"):
            summary.decision, summary.reason = "failed", f"unexpected error: {one_line(err)}"
        raise  # Prefect's own Failed, with the exception
    finally:
        _finish(summary, repo_p)  # on every path: a failed run still says what it did with each clip
    return final_state(dict(vars(summary)))


def _run(repo_p: Path, summary: Summary, set_params: list[str], push: bool, tolerance: float | None) -> None:
    params = load_params(repo_p / "params.yaml")
    cfg = params.retrain
    summary.metric = cfg.metric
    run = _Run(repo_p, params, summary, set_params, push, cfg.tolerance if tolerance is None else tolerance)
    production = ProductionCheckout(repo_p)
    stale = ops.cleanup_stale(repo_p)
    if stale:
        get_run_logger().warning("removed worktrees of interrupted runs: %s", stale)
    # 0. start from a consistent production: finish or roll back an interrupted promotion, or refuse
    try:
        summary.reconciled = production.reconcile()
    except ProductionInconsistent as err:
        summary.decision, summary.reason = "refused", str(err)
        return
    back = release_claims(run.inbox)  # we hold the retrain lock: any claim left is a dead run's
    if back:
        summary.reconciled.append(f"returned {len(back)} clip(s) claimed by interrupted runs to the inbox")
    scan = survey_inbox(run.inbox, cfg.settle_s)
    taken = claim(run.inbox, run.run_id, [c.path for c in scan.landed])  # a poll during this run no longer sees them
    claimed = claim_dir(run.inbox, run.run_id)
    run.batch = Batch([claimed, run.inbox], [Landed(taken[c.path], c.class_name) for c in scan.landed
                                             if c.path in taken], {str(k): v for k, v in scan.refused.items()})
    summary.not_landed = run.batch.not_landed
    try:
        _retrain_claimed(run, production)
    except ops.CommandFailed:
        raise  # git/DVC or the pipeline failed, not a clip: the clips wait in the inbox for the next run
    except Exception as err:  # nothing pins it on one clip: none of the batch may fail the next run too
        moved, left = quarantine_left(claimed, run.batch.roots, repo_p / cfg.quarantine, run.run_id, err)
        summary.quarantined.update(moved)
        summary.reland += run.reland(left)
        raise
    finally:
        release_claims(run.inbox, run.run_id)  # clips this run did not land (e.g. training failed) wait for the next


def _retrain_claimed(run: _Run, production: ProductionCheckout) -> None:
    summary, batch = run.summary, run.batch
    summary.landed = [batch.shown(c.path) for c in batch.clips]
    if not batch.clips and not batch.refused:
        summary.reason = f"no settled clips in {run.inbox}"
        return
    # 1. against every clip of the dataset, any split (a copy of a test clip must not become a training clip)
    index, summary.dedupe = dataset_index(run.repo, run.params)
    if index is None:
        summary.quarantined = run.quarantine(batch.refused)
        summary.decision, summary.reason = "refused", "cannot check the landings against the dataset: " \
                                                      f"{summary.dedupe}; the clips wait in the inbox"
        return
    batch.hash()  # regular files only; add_clips re-checks each copy against its md5
    batch.refuse_duplicates(index)
    gate = batch.inspect_and_gate(run.repo, run.params, run.run_id)  # decode + quality gate
    if gate is not None:
        summary.gate = ("passed" if gate.passed else "FAILED") + (f": {gate.report}" if gate.report else "")
        summary.drift = gate.drift
    summary.quarantined = run.quarantine(batch.refused)
    summary.reland = run.reland(batch.collateral)
    if gate is not None and not gate.passed:
        summary.decision, summary.reason = "gate failed", "the batch failed the quality gate: nothing trained"
        return
    accepted = batch.keep_unchanged()  # not grown, rewritten, replaced or gone since it was hashed
    summary.accepted = [batch.shown(c.path) for c in accepted]
    if not accepted:
        summary.reason = "every landed clip was quarantined" + (" or left for the next run" if batch.not_landed
                                                                else "")
        return
    clips = [NewClip(c.path, c.class_name, batch.fps[c.path].md5, batch.shown(c.path)) for c in accepted]
    if not any(c.class_name for c in clips):  # unlabelled only: retrain once enough wait (retrain.min_unlabeled)
        waiting = len(pool.waiting_unlabelled(run.repo) | {c.md5 for c in clips})
        if waiting < run.cfg.min_unlabeled:
            _land_only(run, production, clips)
            return
    _train_and_promote(run, production, clips)


def _land_only(run: _Run, production: ProductionCheckout, clips: list[NewClip]) -> None:
    """Too few unlabelled clips to retrain on: land them in production's dataset (a commit, no pipeline run, no tag)
    so the next retrain trains on them, push their data, train nothing."""
    summary = run.summary
    ws, branch, base = production.open_candidate(run.run_id)
    error = None
    try:
        added, clips = _land(run, ws, clips)
        summary.accepted = [c.source for c in clips]
        if not added:
            summary.reason = "every accepted clip changed after it was taken: nothing landed"
            return
        try:
            production.land(branch, base)
        except PromotionFailed as err:  # production is at base again: the clips wait in the inbox
            summary.decision, summary.reason = "refused", f"landing the unlabelled clips failed: {err}"
            return
        waiting = len(pool.waiting_unlabelled(run.repo))  # this landing's included: it is production's now
        summary.reason = (f"{len(added)} unlabelled clip(s) landed, {waiting} wait untrained (landed since the "
                          f"production model was trained); a retrain needs {run.cfg.min_unlabeled} "
                          "(retrain.min_unlabeled): nothing trained")
        error = _push(run, ws)
        for c in clips:  # landed: in production's dataset and the DVC cache
            c.src.unlink(missing_ok=True)
    finally:
        production.close_candidate(ws, branch, keep_branch=False)
        if error is not None:
            raise error


def _train_and_promote(run: _Run, production: ProductionCheckout, clips: list[NewClip]) -> None:
    """2. dataset change + 3. pipeline, both on the branch (production is untouched until promotion), 4. compare,
    5. promote or keep, 6. push."""
    summary = run.summary
    ws, branch, base = production.open_candidate(run.run_id)
    summary.branch, keep_branch, error = branch, False, None
    try:
        added, clips = _land(run, ws, clips)
        summary.accepted = [c.source for c in clips]
        if not added:
            summary.branch, summary.reason = "", "every accepted clip changed after it was taken: nothing trained"
            return
        try:
            run_pipeline(ws, run.set_params, run.run_id)
        except ops.CommandFailed as err:
            summary.decision, summary.reason = "training failed", f"nothing promoted: {ops.failure_line(err)}"
            error = err
            return
        summary.pool_clips = pool.pool_clips(ws)
        promote, why = _verdict(run, ws, base)
        keep_branch = True
        _promote_or_keep(run, production, promote, why, branch, base)
        error = _push(run, ws)
        if summary.decision != "promoted":
            summary.clips = reland_hint(run.repo, run.inbox, branch, added, summary.push == "pushed")
        for c in clips:  # landed clips are now in the DVC cache and on a branch
            c.src.unlink(missing_ok=True)
    finally:
        production.close_candidate(ws, branch, keep_branch=keep_branch)
        if error is not None:  # the summary is written; the run itself shows as failed in the UI
            raise error


def _land(run: _Run, ws: Path, clips: list[NewClip]) -> tuple[list[str], list[NewClip]]:
    """Add the clips to the candidate's dataset; one that changed since it was hashed is left out (for the next
    run) and the others added: (paths added, clips added)."""
    while clips:
        try:
            return add_to_dataset(ws, clips, run.run_id), clips
        except ClipChanged as err:  # add_clips added nothing: try again without it
            run.batch.leave(err.src, err.why)
            clips = [c for c in clips if c.src != err.src]
    return [], []


def _verdict(run: _Run, ws: Path, base: str) -> tuple[bool, str]:
    """Compare with the production student (the checked-out production commit: a rollback is respected)."""
    summary, cfg = run.summary, run.cfg
    summary.production, summary.candidate = metric_values(ops.metrics_diff(ws, base), EVALUATE_METRICS,
                                                          cfg.metric)
    paired = paired_evidence(ws, base, cfg.metric.split(".")[0], cfg.alpha)
    summary.paired = paired[1]
    return promotion_verdict(summary.production, summary.candidate, run.tolerance, cfg.metric, paired)


def _promote_or_keep(run: _Run, production: ProductionCheckout, promote: bool, why: str, branch: str,
                     base: str) -> None:
    """Promote (a transaction: merge → dvc checkout → tag, rolled back on failure) or keep production."""
    summary = run.summary
    if not promote:
        summary.decision, summary.reason = "kept", f"{why}; candidate on {branch}"
        return
    try:
        summary.tag = production.promote(branch, base, f"retrain {run.run_id}: {why}")
        summary.decision, summary.reason = "promoted", why
    except PromotionFailed as err:
        summary.decision, summary.reason = "kept", f"promotion failed: {err}; candidate on {branch}"


def _push(run: _Run, ws: Path) -> Exception | None:
    """Data and models to the DVC remote, with retries; returns the error of a push that failed every attempt."""
    cfg, summary = run.cfg, run.summary
    if not run.push:
        summary.push = "skipped (push=False)"
        return None
    try:
        pushing = push_remote.with_options(retries=cfg.push_retries, retry_delay_seconds=cfg.push_retry_delay_s)
        summary.push = pushing(ws)
    except ops.CommandFailed as err:
        summary.push = f"FAILED after {cfg.push_retries + 1} attempts: {str(err).splitlines()[0]}"
        return err
    return None


def reland_hint(repo: Path, inbox: Path, branch: str, added: list[str], pushed: bool) -> str:
    """Where the accepted clips of an unpromoted run are, and the command that puts them back in the inbox.

    ``added``: their paths under ``data/footage`` on ``branch`` (``<Class>/<stem>_<md5[:8]><ext>``).
    """
    where = f"{len(added)} clip(s) on branch {branch} under {FOOTAGE_DIR}, in the DVC cache" + \
        (" and remote" if pushed else "")
    q = shlex.quote
    gets = [f"dvc get {q(str(repo))} {q(f'{FOOTAGE_DIR}/{a}')} --rev {q(branch)} -o "
            f"{q(str(inbox / (a.split('/', 1)[1] if a.startswith('_unlabelled/') else a)))}" for a in added]
    return f"{where}; land them again: " + " && ".join(gets)


if __name__ == "__main__":
    print(outcome(retrain(return_state=True)))
