"""Prefect flow ``watch`` (deployment ``watch/watch``; the names stay those of the old ``flows/watch.py``, so
deployments keep working): look at the inbox (Prefect 3 has no file sensor, so this runs on a schedule) and, when
settled clips are there, start ``retrain``.

Served (``flows/serve.py``), it starts the ``retrain/retrain`` deployment, whose concurrency limit is 1 with the
ENQUEUE strategy, and only when no run of it is already waiting: landings during a run therefore cause exactly one
follow-up run (which takes everything in the inbox when it starts), never a pile-up. Clips a running retrain has
claimed (renamed into the hidden ``<inbox>/.claimed/<run_id>/``) are not landings, so a poll during a run does not
queue a second retrain for them. Without a deployment name (tests,
one-off use) it runs ``retrain`` in-process as a subflow: its result is the retrain's summary dict whatever named state
the retrain ended in (a GateFailed retrain is shown red on its own; the watch that started it did its job).
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName,
                                            FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from dlkdd.config import load_params
from dlkdd.data.inbox import survey_inbox
from flows.retrain import outcome, retrain

WAITING = [StateType.SCHEDULED, StateType.PENDING]  # includes AwaitingConcurrencySlot (a SCHEDULED state)


def waiting_runs(deployment: str) -> int:
    """How many runs of ``flow/deployment`` are created but not started (they will see the inbox when they start)."""
    flow_name, dep_name = deployment.split("/", 1)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=WAITING))),
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[dep_name])))
    return len(runs)


@flow(name="watch")
def watch(repo: str = ".", deployment: str | None = None) -> dict:
    """Start one retrain if settled clips are in the inbox and no retrain is already waiting to start."""
    repo_p = Path(repo).resolve()
    cfg = load_params(repo_p / "params.yaml").retrain
    scan = survey_inbox(repo_p / cfg.inbox, cfg.settle_s)  # clips a running retrain claimed are hidden: not new
    landed = scan.landed + [*scan.refused]  # refusals too: a retrain quarantines them with their reason
    log = get_run_logger()
    if not landed:
        log.info("inbox %s: nothing settled", repo_p / cfg.inbox)
        return {"landed": 0, "triggered": None}
    if deployment is None:
        state = retrain(repo=str(repo_p), return_state=True)
        return {"landed": len(landed), "triggered": "subflow", "result": outcome(state)}
    if waiting_runs(deployment):
        log.info("%d clip(s) landed; a %s run is already waiting and will take them", len(landed), deployment)
        return {"landed": len(landed), "triggered": None}
    run = run_deployment(deployment, parameters={"repo": str(repo_p)}, timeout=0, as_subflow=False)
    log.info("%d clip(s) landed; started %s run %s", len(landed), deployment, run.id)
    return {"landed": len(landed), "triggered": str(run.id)}


if __name__ == "__main__":
    print(watch())
