"""Serve the ``watch`` and ``retrain`` deployments from this process (``make serve``; needs ``make prefect-server``).

- ``watch/watch`` polls the inbox every ``retrain.poll_interval_s`` seconds (params.yaml), or on the cron in
  ``DLKDD_WATCH_CRON`` / the interval in ``DLKDD_WATCH_INTERVAL_S`` when set; one run at a time (CANCEL_NEW).
- ``retrain/retrain`` has concurrency 1 (ENQUEUE): DVC allows one process per workspace and promotion fast-forwards
  one branch. ``watch`` starts it only when no run is already waiting, so landings during a run → one follow-up run.

``DLKDD_REPO`` (default: the current directory) is the production checkout the flows work on.
"""
from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from dlkdd.config import load_params
from flows.retrain import retrain
from flows.watch import watch

RETRAIN_DEPLOYMENT = "retrain/retrain"


def deployments(repo: str) -> list:
    """The two runner deployments (also used by tests to check their schedule and limits)."""
    cfg = load_params(Path(repo) / "params.yaml").retrain
    cron = os.environ.get("DLKDD_WATCH_CRON")
    every = None if cron else int(os.environ.get("DLKDD_WATCH_INTERVAL_S", cfg.poll_interval_s))
    watch_dep = watch.to_deployment(
        name="watch", cron=cron, interval=every, parameters={"repo": repo, "deployment": RETRAIN_DEPLOYMENT},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="Poll the inbox for new dark footage; start retrain when clips have settled.")
    retrain_dep = retrain.to_deployment(
        name="retrain", parameters={"repo": repo},
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
        description="Gate, land, run the DVC pipeline, compare with production, promote or keep, dvc push.")
    return [watch_dep, retrain_dep]


def main() -> None:
    repo = str(Path(os.environ.get("DLKDD_REPO", ".")).resolve())
    serve(*deployments(repo))


if __name__ == "__main__":
    main()
