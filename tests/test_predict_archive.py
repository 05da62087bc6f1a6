"""The archive flow under a real Prefect server (prefect_test_harness) on a real local two-worker Dask cluster
(prefect-dask's DaskTaskRunner): real encoded clips, a corrupt one, a tiny untrained student checkpoint."""
import json
import os

import pytest
from conftest import ROOT
from distributed import Client, LocalCluster
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
from footage import write_clip
from helpers import CLASSES

from flows.predict_archive import predict_archive

pytestmark = pytest.mark.e2e


def test_archive_on_a_dask_cluster_then_rerun_skips_done(prefect_server, student, tmp_path, monkeypatch):
    # Dask's worker processes unpickle the task by module name: they need flows/ (and this checkout's src/)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    model = student  # conftest's tiny untrained tiny3d checkpoint (Drink/Jump/Sit)
    archive = tmp_path / "archive"
    write_clip(archive / "cam1.avi", frames=30, seed=1)  # 2 s at 15 fps: two windows of 1 s, stride 0.5 s
    write_clip(archive / "cam2.mp4", frames=20, seed=2)
    write_clip(archive / "night" / "cam1.avi", frames=12, seed=3)  # same stem in a subfolder: its own timeline
    (archive / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "timelines"
    good = ["cam1", "cam2", "night__cam1"]

    # first run: pointed at a running two-worker cluster (as at a remote scheduler), which must do the work
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster, set_as_default=False) as dask:  # not the default: the flow must use the address
            worker_pids = set(dask.run(os.getpid).values())
        first = predict_archive(archive, model, out, window_s=1.0, stride_s=0.5,
                                dask_address=cluster.scheduler_address)

    assert sorted(d["name"] for d in first["done"]) == good and first["skipped"] == []
    for name in good:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["classes"] == CLASSES and doc["windows"]
        for suffix in ("html", "png", "windows.csv", "segments.csv", "done"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0
    assert len(json.loads((out / "cam1.json").read_text())["windows"]) >= 2
    assert len(worker_pids) == 2 and {int(d["where"].rsplit(":", 1)[1]) for d in first["done"]} <= worker_pids
    [bad] = first["failed"]
    assert bad["name"] == "broken" and "broken.mp4" in bad["reason"] and "\n" not in bad["reason"]
    assert not list(out.glob("broken.*"))  # nothing half-written, no marker: a rerun tries it again

    mtimes = {n: (out / f"{n}.json").stat().st_mtime_ns for n in good}
    # rerun: the flow's own local cluster of two worker processes
    again = predict_archive(archive, model, out, window_s=1.0, stride_s=0.5, workers=2)

    assert sorted(again["skipped"]) == good and again["done"] == []
    assert [f["name"] for f in again["failed"]] == ["broken"]
    assert {n: (out / f"{n}.json").stat().st_mtime_ns for n in good} == mtimes
    with get_client(sync_client=True) as client:  # the skip is the flow's: only the bad file got a task run
        runs = client.read_flow_runs(limit=10, flow_filter=FlowFilter(name=FlowFilterName(any_=["predict-archive"])))
        counts = sorted(len(client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id]))))
                        for r in runs)
    assert counts == [1, 4]
