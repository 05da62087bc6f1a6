"""The retrain-on-landing flows under a real Prefect server (prefect_test_harness), on a real temp git + DVC repo
holding this project's pipeline with a tiny params.yaml. The tests share one production repo and run in file order:
each starts from the state the previous one left (as nights do in production)."""
import importlib
import shutil
import sys

import pytest
import yaml
from helpers import dark_clip, floodlit_clip, md5, retrain_runs, server_state, sh, snapshot
from prefect.client.orchestration import get_client

pytestmark = pytest.mark.e2e

def test_empty_inbox_does_nothing(prod):
    from flows.poll_inbox import watch

    before = snapshot(prod)
    out = watch(repo=str(prod))
    assert out == {"landed": 0, "triggered": None}
    assert retrain_runs(prod) == []  # the session's server serves other modules' production copies too
    assert snapshot(prod) == before
    assert not sh(["git", "branch", "--list", "retrain/*"], prod)


def test_second_retrain_on_the_same_checkout_waits_its_turn(prod):
    from flows import ops
    from flows.retrain import retrain

    before = snapshot(prod)
    dark_clip(prod / "inbox/Jump/early.avi", "Jump", 808)
    with ops.exclusive(prod) as held:  # a retrain is running (e.g. one started by hand)
        assert held
        assert retrain(repo=str(prod))["decision"] == "busy"
    assert (prod / "inbox/Jump/early.avi").is_file() and snapshot(prod) == before
    (prod / "inbox/Jump/early.avi").unlink()


def test_batch_failing_quality_gate_trains_and_promotes_nothing(prod):
    from flows.retrain import outcome, retrain

    before = snapshot(prod)
    floodlit_clip(prod / "inbox/Jump/lights_on.avi", 1)
    dark_clip(prod / "inbox/Sit/fine.avi", "Sit", 101)  # fine alone, but refused with its batch
    out = outcome(retrain(repo=str(prod), return_state=True))  # a GateFailed run is a Failed state
    assert out["decision"] == "gate failed"
    assert "luma_mean" in out["quarantined"]["Jump/lights_on.avi"]  # the offender is named with its check
    assert "batch failed the quality gate" in out["quarantined"]["Sit/fine.avi"]
    q = prod / "quarantine" / out["run_id"]
    assert (q / "Jump/lights_on.avi").is_file() and "luma_mean" in (q / "Jump/lights_on.avi.reason.txt").read_text()
    assert (q / "Sit/fine.avi.reason.txt").is_file()
    assert not any((prod / "inbox").rglob("*.avi"))
    assert snapshot(prod) == before  # no training, no dataset change, no promotion
    assert not sh(["git", "branch", "--list", "retrain/*"], prod)
    report = (prod / "reports/retrain" / f"{out['run_id']}.md").read_text()
    assert "| decision | **gate failed** |" in report


def test_new_clip_retrains_once_corrupt_clip_quarantined(prod):
    from flows.poll_inbox import watch

    before = snapshot(prod)
    good = dark_clip(prod / "inbox/Jump/night_cam.avi", "Jump", 202)
    good_md5 = md5(good)
    (prod / "inbox/Sit").mkdir(parents=True, exist_ok=True)
    (prod / "inbox/Sit/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated upload" * 20)
    runs_before = len(retrain_runs(prod))
    out = watch(repo=str(prod))
    assert out["landed"] == 2 and out["triggered"] == "subflow"
    res = out["result"]
    runs = sorted(retrain_runs(prod), key=lambda r: r.created)
    assert len(runs) == runs_before + 1  # exactly one retrain for the landing (of this repo)
    assert runs[-1].state.name == {"promoted": "Promoted", "kept": "Kept"}[res["decision"]]  # the runs list says it
    assert "cannot decode" in res["quarantined"]["Sit/broken.mp4"]
    assert (prod / "quarantine" / res["run_id"] / "Sit/broken.mp4.reason.txt").is_file()
    assert res["accepted"] == ["Jump/night_cam.avi"] and not good.exists()
    assert res["decision"] in {"promoted", "kept"} and res["reason"]
    assert res["production"] is not None and res["candidate"] is not None
    assert res["push"] == "pushed"
    report = (prod / "reports/retrain" / f"{res['run_id']}.md").read_text()
    assert f"**{res['decision']}**" in report and res["reason"].split(" ")[0] in report
    branch = res["branch"]
    landed = sh(["git", "show", f"{branch}:data/footage.csv"], prod)
    assert good_md5 in landed and "Jump/night_cam_" in landed
    if res["decision"] == "promoted":  # production fast-forwarded, tagged, data checked out
        after = snapshot(prod)
        assert after["head"] == sh(["git", "rev-parse", branch], prod) != before["head"]
        assert sh(["git", "rev-parse", f"{res['tag']}^{{commit}}"], prod) == after["head"]
        assert [m for _, m in after["footage"]] == [good_md5]
        assert after["status"] == ""  # workspace = the promoted commit (dvc checkout done)
        sh([sys.executable, "-m", "dvc", "status", "--quiet"], prod)
    else:
        assert snapshot(prod) == before
    frames_index = sh(["git", "show", f"{branch}:dvc.lock"], prod)
    assert "data/footage.csv" in frames_index  # the frames stage consumed the landed footage


def test_summary_escapes_what_file_names_carry():
    """A clip named like HTML or a markdown image must reach the Prefect artifact as text: no tag, no remote fetch."""
    from flows.retrain import Summary

    s = Summary("r1", landed=["Sit/<img src=x onerror=alert(1)>.mp4", "Jump/![x](http://e.vil/t.png).avi"],
                quarantined={"a|b.mp4": "cannot decode: `x` *y*\nsecond line"}, decision="kept")
    md = s.markdown()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;.mp4" in md
    assert "![x](" not in md and "!\\[x\\](http" in md  # an image no more: nothing is fetched
    assert "a\\|b.mp4" in md and "\\`x\\` \\*y\\*" in md and "second line" in md
    assert "| decision | **kept** |" in md
    assert all(line.count(" | ") == 1 for line in md.splitlines() if line.startswith("| ") and "---" not in line)


def test_promotion_rule():
    from dlkdd.regression import promotion_verdict as decide

    assert decide(0.70, 0.69, 0.01, "student.top1")[0]  # within the tolerance
    assert decide(0.70, 0.71, 0.0, "student.top1")[0]
    ok, why = decide(0.70, 0.60, 0.01, "student.top1")
    assert not ok and "worse than production 0.7000" in why
    assert not decide(0.70, 0.70, -0.05, "student.top1")[0]  # negative tolerance: must beat production
    assert decide(None, 0.4, 0.0, "student.top1")[0] and not decide(0.7, None, 0.0, "student.top1")[0]
    # the paired test of the same test clips blocks a significant regression even within the tolerance ...
    ok, why = decide(0.70, 0.69, 0.05, "student.top1", (False, "9 clips lost, 0 gained; p = 0.002"))
    assert not ok and "significantly worse" in why and "p = 0.002" in why
    # ... and an unpairable comparison (no predictions yet) leaves the decision to the tolerance
    assert decide(0.70, 0.69, 0.05, "student.top1", (None, "not tested"))[0]


def test_paired_evidence_reads_production_and_candidate_predictions(tmp_path):
    """The retrain flow asks the CI gate's paired test (dlkdd.regression) about the committed predictions of
    production and the candidate's, on the same clips."""
    from flows.retrain import paired_evidence

    rows = lambda pred: "clip_id,video_id,label,student\n" + "".join(  # noqa: E731
        f"c{i},v{i},{0},{pred(i)}\n" for i in range(40))
    sh(["git", "init", "-q"], tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/predictions.csv").write_text(rows(lambda i: 0))  # production: all 40 right
    sh(["git", "add", "-A"], tmp_path)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "prod"], tmp_path)
    base = sh(["git", "rev-parse", "HEAD"], tmp_path)
    (tmp_path / "metrics/predictions.csv").write_text(rows(lambda i: 1 if i < 12 else 0))  # candidate loses 12
    ok, why = paired_evidence(tmp_path, base, "student", 0.05)
    assert ok is False and "12 clips lost, 0 gained" in why
    (tmp_path / "metrics/predictions.csv").write_text(rows(lambda i: 1 if i < 2 else 0))  # 2 lost: noise
    assert paired_evidence(tmp_path, base, "student", 0.05)[0] is True
    (tmp_path / "metrics/predictions.csv").unlink()
    assert paired_evidence(tmp_path, base, "student", 0.05)[0] is None


def test_failed_retrain_leaves_production_exactly_as_before(prod):
    from flows.retrain import outcome, retrain

    before = snapshot(prod)
    clip = dark_clip(prod / "inbox/Sit/late.avi", "Sit", 404)
    # the dataset change is committed on the branch, then the pipeline dies (an enhance method that does not exist)
    state = retrain(repo=str(prod), set_params=["enhance.method=nope"], return_state=True)
    assert state.is_failed() and state.name == "TrainingFailed" == server_state(state).name
    assert outcome(state)["decision"] == "training failed"
    assert snapshot(prod) == before
    assert clip.is_file()  # the landed clip waits for the next run
    assert not (prod / ".dvc/tmp/retrain").exists() or not any((prod / ".dvc/tmp/retrain").iterdir())
    reports = sorted((prod / "reports/retrain").glob("*.md"), key=lambda p: p.stat().st_mtime)
    assert "**training failed**" in reports[-1].read_text()


def test_killed_retrain_is_cleaned_up_by_the_next_run(prod):
    """SIGKILL leaves no chance to clean up: simulate its leftovers (a worktree with the dataset change committed)."""
    from flows import ops
    from flows.retrain import add_to_dataset, retrain
    from dlkdd.data.footage import NewClip

    before = snapshot(prod)
    ws, branch, _ = ops.open_worktree(prod, "killed-run")
    clip = prod / "inbox/Sit/late.avi"
    add_to_dataset.fn(ws, [NewClip(clip, "Sit", md5(clip))], "killed-run")
    assert md5(clip) in (ws / "data/footage.csv").read_text()
    assert snapshot(prod) == before  # production never saw the dataset change
    clip.unlink()  # nothing else landed: the next run only cleans up
    out = retrain(repo=str(prod))
    assert out["decision"] == "nothing to do"
    assert not ws.exists()
    assert "killed-run" not in sh(["git", "worktree", "list"], prod)
    assert snapshot(prod) == before


def test_hostile_inbox_is_quarantined_and_the_next_run_is_not_blocked(prod):
    """A FIFO named like a clip (its open() blocked the run forever, holding the retrain lock), a 254-byte name (the
    quarantine's .reason.txt passed the 255-byte limit: a crash with no summary, every night), a copy of one of
    production's own test clips (it was accepted as a new training clip) and a name that is HTML, beside a bad batch.
    """
    import os
    import stat

    from helpers import deadline

    from flows.retrain import retrain
    from flows.poll_inbox import watch

    before = snapshot(prod)
    os.makedirs(prod / "inbox/Jump", exist_ok=True)  # earlier tests may leave the empty class folders
    os.mkfifo(prod / "inbox/Jump/clip.mp4")
    long_name = "n" * 250 + ".avi"
    floodlit_clip(prod / "inbox/Jump" / long_name, 2)  # the gate's offender: refuses the batch
    manifest = (prod / "data/raw/manifest.csv").read_text().splitlines()
    test_clip = next(line.split(",")[0] for line in manifest if ",test," in line)
    (prod / "inbox/Sit").mkdir(exist_ok=True)
    shutil.copy(prod / "data/raw" / test_clip, prod / "inbox/Sit/copy.avi")
    html_name = "<img src=x onerror=alert(1)>.mp4"
    (prod / "inbox/Sit" / html_name).write_bytes(b"not a video at all")
    dark_clip(prod / "inbox/Drink/fine.avi", "Drink", 111)
    with deadline(600):
        out = watch(repo=str(prod))["result"]
    q = out["quarantined"]
    assert out["decision"] == "gate failed", out
    assert q["Jump/clip.mp4"].startswith("not_regular: ") and "FIFO" in q["Jump/clip.mp4"]
    assert "luma_mean" in q[f"Jump/{long_name}"]
    assert q["Sit/copy.avi"] == f"duplicate: same bytes as data/raw/{test_clip} (test)"
    assert "cannot decode" in q[f"Sit/{html_name}"] and "batch failed" in q["Drink/fine.avi"]
    qdir = prod / "quarantine" / out["run_id"]
    assert stat.S_ISFIFO(os.lstat(qdir / "Jump/clip.mp4").st_mode)
    (reason,) = (qdir / "Jump").glob("n*.avi.reason.txt")  # under a shortened name, the original recorded
    assert f"original name: {long_name}" in reason.read_text() and len(reason.name.encode()) < 255
    assert (qdir / "Sit/copy.avi.reason.txt").read_text().startswith("duplicate: same bytes as data/raw/")
    assert not [p for p in (prod / "inbox").rglob("*") if not p.is_dir()]
    report = (prod / "reports/retrain" / f"{out['run_id']}.md").read_text()
    assert "<img" not in report and "&lt;img src=x onerror=alert(1)&gt;.mp4" in report
    assert snapshot(prod) == before
    again = retrain(repo=str(prod))  # the lock was released, nothing is left to refuse
    assert again["decision"] == "nothing to do" and again["reason"].startswith("no settled clips"), again


def test_a_clip_changing_mid_run_or_an_unexpected_error_never_fails_the_next_run(prod, monkeypatch):
    """A settled clip grows after it was taken (the uploader was not done): its FootageError escaped the flow with
    no summary. An error nobody expected (here: the gate crashes): the clips of that batch must not fail the next
    run too, and the run still writes its summary."""
    import flows.intake
    from flows.retrain import retrain

    before = snapshot(prod)
    clip = dark_clip(prod / "inbox/Jump/growing.avi", "Jump", 909)
    real_inspect = flows.intake.inspect_clips

    def inspect_then_grow(landed, classes, params):  # the upload goes on while the run decodes
        out = real_inspect.fn(landed, classes, params)
        with open(landed[0].path, "ab") as fh:
            fh.write(b"\0" * 4096)
        return out

    monkeypatch.setattr(flows.intake, "inspect_clips", inspect_then_grow)
    out = retrain(repo=str(prod))
    assert out["decision"] == "nothing to do" and out["accepted"] == [] and out["quarantined"] == {}
    assert "changed after it was hashed" in out["not_landed"]["Jump/growing.avi"]
    assert clip.is_file() and "growing.avi" in (prod / "reports/retrain" / f"{out['run_id']}.md").read_text()
    assert snapshot(prod) == before
    monkeypatch.setattr(flows.intake, "inspect_clips", real_inspect)

    def gate_crashes(*args, **kwargs):
        raise RuntimeError("gate exploded")

    monkeypatch.setattr(flows.intake, "run_gate", gate_crashes)
    state = retrain(repo=str(prod), return_state=True)
    assert state.is_failed()
    reports = sorted((prod / "reports/retrain").glob("*.md"), key=lambda p: p.stat().st_mtime)
    text = reports[-1].read_text()
    assert "**failed**" in text and "RuntimeError: gate exploded" in text
    run_id = reports[-1].stem
    why = (prod / "quarantine" / run_id / "Jump/growing.avi.reason.txt").read_text()
    assert "the run failed (RuntimeError: gate exploded)" in why and not clip.exists()
    monkeypatch.undo()
    nxt = retrain(repo=str(prod))
    assert nxt["decision"] == "nothing to do" and nxt["reason"].startswith("no settled clips"), nxt
    assert snapshot(prod) == before


def test_served_deployments_schedule_and_concurrency(prod, monkeypatch):
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from flows.serve import deployments

    monkeypatch.delenv("DLKDD_WATCH_CRON", raising=False)
    monkeypatch.delenv("DLKDD_WATCH_INTERVAL_S", raising=False)
    watch_dep, retrain_dep = deployments(str(prod))
    poll = yaml.safe_load((prod / "params.yaml").read_text())["retrain"]["poll_interval_s"]
    assert watch_dep.schedules[0].schedule.interval.total_seconds() == poll
    assert retrain_dep.concurrency_limit == 1
    assert retrain_dep.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    assert watch_dep.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    monkeypatch.setenv("DLKDD_WATCH_CRON", "0 2 * * *")
    assert deployments(str(prod))[0].schedules[0].schedule.cron == "0 2 * * *"


def test_served_and_work_pool_deployments_are_one_definition(monkeypatch):
    """flows/serve.py builds its deployments from prefect.yaml; the poll interval there is params.yaml's."""
    from flows.serve import FLOWS, PREFECT_YAML, deployment_specs, deployments

    monkeypatch.delenv("DLKDD_WATCH_CRON", raising=False)
    monkeypatch.delenv("DLKDD_WATCH_INTERVAL_S", raising=False)
    specs = deployment_specs()
    root = PREFECT_YAML.parent
    served = {d.name: d for d in deployments(str(root))}
    assert set(served) == set(specs) == {"watch", "retrain"}
    for name, spec in specs.items():
        d = served[name]
        assert d.description == spec["description"]
        assert d.concurrency_limit == spec["concurrency_limit"]["limit"]
        assert d.concurrency_options.collision_strategy.value == spec["concurrency_limit"]["collision_strategy"]
        assert {k: v for k, v in d.parameters.items() if k != "repo"} == {
            k: v for k, v in spec.get("parameters", {}).items() if k != "repo"}
    for name, spec in specs.items():  # `prefect deploy` imports the entrypoint: it must be the flow serve.py serves
        module, attr = spec["entrypoint"].split(":")
        assert (root / module).is_file(), spec["entrypoint"]
        loaded = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        assert loaded is FLOWS[name] and loaded.name == name
    poll = yaml.safe_load((root / "params.yaml").read_text())["retrain"]["poll_interval_s"]
    assert specs["watch"]["schedules"][0]["interval"] == poll
    assert served["watch"].schedules[0].schedule.interval.total_seconds() == poll


def test_landings_during_a_run_cause_one_follow_up_not_a_pile_up(prod):
    """Against the real server: the retrain deployment registered, no worker, so runs stay where watch put them."""
    from prefect.states import Running

    from flows.serve import RETRAIN_DEPLOYMENT, deployments
    from flows.poll_inbox import watch

    deployment_id = deployments(str(prod))[1].apply()
    dark_clip(prod / "inbox/Jump/one.avi", "Jump", 505)
    first = watch(repo=str(prod), deployment=RETRAIN_DEPLOYMENT)["triggered"]
    assert first
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(first, Running(), force=True)  # the first retrain is now busy
    dark_clip(prod / "inbox/Jump/two.avi", "Jump", 606)  # lands during the run
    follow_up = watch(repo=str(prod), deployment=RETRAIN_DEPLOYMENT)["triggered"]
    assert follow_up and follow_up != first
    dark_clip(prod / "inbox/Jump/three.avi", "Jump", 707)  # lands too: the waiting follow-up will take it
    assert watch(repo=str(prod), deployment=RETRAIN_DEPLOYMENT)["triggered"] is None
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.deployment_id == deployment_id
                and r.parameters.get("repo") == str(prod)]  # this module's: the session has one server
    assert sorted(r.state_type.value for r in runs) == ["RUNNING", "SCHEDULED"]
