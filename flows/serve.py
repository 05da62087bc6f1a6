"""Serve the ``watch`` and ``retrain`` deployments of ``prefect.yaml`` from this process (``make serve``; needs
``make prefect-server``): one definition for served and work-pool deployments.

- ``watch/watch`` polls the inbox every ``retrain.poll_interval_s`` seconds (params.yaml), or on the cron in
  ``DLKDD_WATCH_CRON`` / the interval in ``DLKDD_WATCH_INTERVAL_S`` when set; one run at a time (CANCEL_NEW).
- ``retrain/retrain`` has concurrency 1 (ENQUEUE): DVC allows one process per workspace and promotion fast-forwards
  one branch. ``watch`` starts it only when no run is already waiting, so landings during a run → one follow-up run.

``DLKDD_REPO`` (default: the current directory) is the production checkout the flows work on.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from dlkdd.config import load_params
from flows.retrain import retrain
from flows.poll_inbox import watch

RETRAIN_DEPLOYMENT = "retrain/retrain"
PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
FLOWS = {"watch": watch, "retrain": retrain}


def deployment_specs(path: Path = PREFECT_YAML) -> dict[str, dict]:
    """The deployments of ``prefect.yaml`` by name: the one definition of their descriptions, parameters and
    concurrency limits, for ``prefect deploy`` (work pools) and :func:`deployments` (``make serve``) alike."""
    return {d["name"]: d for d in yaml.safe_load(path.read_text())["deployments"]}


def deployments(repo: str) -> list:
    """The two runner deployments as ``prefect.yaml`` defines them, for the production checkout ``repo``; the watch
    schedule from ``retrain.poll_interval_s`` (which a test keeps equal to prefect.yaml's interval) or the env."""
    cfg = load_params(Path(repo) / "params.yaml").retrain
    cron = os.environ.get("DLKDD_WATCH_CRON")
    every = None if cron else int(os.environ.get("DLKDD_WATCH_INTERVAL_S", cfg.poll_interval_s))
    out = []
    for name, spec in deployment_specs().items():
        limit = spec["concurrency_limit"]
        schedule = {"cron": cron, "interval": every} if spec.get("schedules") else {}
        out.append(FLOWS[name].to_deployment(
            name=name, description=spec["description"], parameters={**spec.get("parameters", {}), "repo": repo},
            concurrency_limit=ConcurrencyLimitConfig(
                limit=limit["limit"], collision_strategy=ConcurrencyLimitStrategy(limit["collision_strategy"])),
            **schedule))
    return out


def main() -> None:
    repo = str(Path(os.environ.get("DLKDD_REPO", ".")).resolve())
    serve(*deployments(repo))


if __name__ == "__main__":
    main()
