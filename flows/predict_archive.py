"""Prefect flow ``predict_archive``: ``dlkdd predict --timeline`` over an archive bigger than one machine.

The same per-file work as the CLI (:func:`dlkdd.infer.watch.watch`), mapped as one task per video over a Dask
cluster through prefect-dask's ``DaskTaskRunner``: the cluster at ``dask_address`` when given (every worker must see
the folder, the model and ``out`` at the same paths: shared storage), else a local cluster of ``workers`` processes.

- Timelines are written per file into ``out`` (``<name>.json/.html/.png/.windows.csv/.segments.csv``, each atomic),
  then ``<name>.done`` (atomic, last): a rerun skips every file whose marker is there, so an interrupted or partly
  failed run is finished by running it again. Delete a marker (or use a new ``out``) to predict a file again.
- A bad file fails its own task with a one-line reason (the flow goes on); the flow returns a summary: ``done``,
  ``skipped``, ``failed`` (with reasons).

``python -m flows.predict_archive FOLDER --model M --out DIR [--dask-address tcp://host:8786]``
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from functools import lru_cache
from pathlib import Path

import cv2
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Failed
from prefect_dask import DaskTaskRunner

from dlkdd.atomic import write_text_atomic
from dlkdd.data.video import VideoDecodeError
from dlkdd.infer.runner import Runner, load_runner
from dlkdd.infer.watch import expand_inputs, watch

DONE_SUFFIX = ".done"


def done_marker(out: Path, name: str) -> Path:
    """The file whose presence means ``name``'s timeline is complete (written after all the timeline's files)."""
    return out / f"{name}{DONE_SUFFIX}"


def pending_inputs(folder: str | Path, out: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``(to_do, skipped)``: the folder's videos as ``(source, name)`` pairs without a done marker in ``out``, and
    the names of those with one."""
    todo, skipped = [], []
    for source, name in expand_inputs([str(folder)]):
        (skipped.append(name) if done_marker(out, name).is_file() else todo.append((source, name)))
    return todo, skipped


@lru_cache(maxsize=2)
def _runner(model: str, mtime_ns: int) -> Runner:
    """One runner per worker process and model file version (runners need not pickle: loaded where they run)."""
    return load_runner(model)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


@task(cache_policy=NO_CACHE, task_run_name="predict-{name}")
def predict_file(source: str, name: str, model: str, out: str, window_s: float, stride_s: float,
                 topk: int = 3, min_prob: float = 0.5, smoothing: int = 3):
    """Write ``source``'s timeline into ``out`` as ``<name>.*``, then its done marker. A bad file returns a Failed
    state whose message is the one-line reason (no traceback: it is the file's fault, not the code's)."""
    out_p = Path(out)
    try:
        runner = _runner(model, Path(model).stat().st_mtime_ns)
        tl = watch(runner, source, window_s, stride_s, out_p, topk, min_prob, name=name, smoothing=smoothing)
    except (VideoDecodeError, ValueError, OSError, cv2.error) as err:
        line = _first_line(err)
        return Failed(message=line if source in line else f"{source}: {line}")
    if not tl.windows:  # stream_windows raises when nothing is read; kept so a marker never means "no timeline"
        return Failed(message=f"{source}: no frames could be read")
    where = f"{socket.gethostname()}:{os.getpid()}"
    write_text_atomic(done_marker(out_p, name), json.dumps(
        {"source": source, "model": model, "windows": len(tl.windows), "window_s": window_s, "stride_s": stride_s,
         "where": where, "files": sorted(p.name for p in tl.files.values())}, indent=1))
    return {"name": name, "source": source, "windows": len(tl.windows), "where": where}


def _outcome(future: PrefectFuture, source: str) -> tuple[dict | None, str | None]:
    """``(result, None)`` for a completed task, ``(None, reason)`` otherwise (a returned Failed state, or a crash
    such as a worker killed by a codec: the Dask future's exception)."""
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result(), None
    wrapped = getattr(future, "wrapped_future", None)
    err = wrapped.exception() if wrapped is not None and wrapped.status == "error" else None
    reason = state.message or (err and _first_line(err)) or state.name
    return None, reason if source in reason else f"{source}: {reason}"


@flow(name="predict-archive")
def predict_archive_flow(folder: str, model: str, out: str, window_s: float = 2.0, stride_s: float = 1.0) -> dict:
    """List the folder's videos, skip those done, predict the rest one task each, and summarise (module doc)."""
    log = get_run_logger()
    folder_p, out_p = Path(folder), Path(out)
    if not folder_p.is_dir():
        raise ValueError(f"{folder}: not a folder (give the archive's folder of videos)")
    if not Path(model).is_file():
        raise ValueError(f"{model}: no such model file (a student .pt checkpoint or an .onnx export)")
    out_p.mkdir(parents=True, exist_ok=True)
    todo, skipped = pending_inputs(folder_p, out_p)
    log.info("%s: %d video(s) to predict, %d already done", folder, len(todo), len(skipped))
    futures = predict_file.map([s for s, _ in todo], [n for _, n in todo], model=unmapped(model),
                               out=unmapped(str(out_p)), window_s=window_s, stride_s=stride_s) if todo else []
    done, failed = [], []
    for (source, name), fut in zip(todo, futures):
        result, reason = _outcome(fut, source)
        if result is not None:
            done.append(result)
        else:
            failed.append({"name": name, "source": source, "reason": reason})
            log.warning("failed: %s", reason)
    return {"folder": str(folder_p), "out": str(out_p), "done": done, "skipped": skipped, "failed": failed}


def task_runner(dask_address: str | None = None, workers: int = 2) -> DaskTaskRunner:
    """The cluster at ``dask_address``, else a local one of ``workers`` single-threaded processes (no dashboard:
    nothing to serve or fetch, and no port to collide with another run)."""
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def predict_archive(folder: str | Path, model: str | Path, out: str | Path, window_s: float = 2.0,
                    stride_s: float = 1.0, dask_address: str | None = None, workers: int = 2) -> dict:
    """Run :func:`predict_archive_flow` on the chosen Dask cluster; returns its summary."""
    runner = task_runner(dask_address, workers)
    return predict_archive_flow.with_options(task_runner=runner)(
        str(Path(folder).resolve()), str(Path(model).resolve()), str(Path(out).resolve()), window_s, stride_s)


def summary_line(summary: dict) -> str:
    return (f"{len(summary['done'])} done, {len(summary['skipped'])} skipped, {len(summary['failed'])} failed "
            f"(timelines in {summary['out']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.predict_archive", description=__doc__.splitlines()[0])
    p.add_argument("folder", help="folder of videos (searched recursively)")
    p.add_argument("--model", required=True, help="student checkpoint (.pt) or ONNX export (.onnx)")
    p.add_argument("--out", required=True, help="folder for the timelines (a rerun skips videos done there)")
    p.add_argument("--window", type=float, default=2.0, help="window length in seconds (default: %(default)s)")
    p.add_argument("--stride", type=float, default=1.0, help="stride in seconds (default: %(default)s)")
    p.add_argument("--dask-address", help="scheduler of an existing Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--workers", type=int, default=2, help="local cluster's worker processes without --dask-address")
    a = p.parse_args(argv)
    if not Path(a.folder).is_dir() or not Path(a.model).is_file():  # one clear line, before any cluster starts
        bad = a.folder if not Path(a.folder).is_dir() else a.model
        print(f"error: {bad}: not found (FOLDER is a folder of videos, --model a .pt or .onnx file)", file=sys.stderr)
        return 2
    if a.window <= 0 or a.stride <= 0 or a.workers < 1:
        print("error: --window and --stride must be > 0 seconds and --workers >= 1", file=sys.stderr)
        return 2
    summary = predict_archive(a.folder, a.model, a.out, a.window, a.stride, a.dask_address, a.workers)
    print(summary_line(summary))
    for f in summary["failed"]:
        print(f"  {f['reason']}", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    # run the importable module's main, not this __main__ copy: Dask workers unpickle the task by module name
    from flows.predict_archive import main as _main

    sys.exit(_main())
