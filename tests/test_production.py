"""Production is always in one consistent state: promotion as a transaction, killed at each step for real (SIGKILL
through the ``DLKDD_FAULT`` hook in a subprocess), repaired by the next run; dirty data refuses it; a rollback by
``git reset --hard`` is what the next comparison uses; landing refusals and claims in a real retrain. One real
git + DVC production repo (conftest's ``prod``: a copy of the session's), tests in file order as nights are."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.objects import StateType

from helpers import dark_clip, floodlit_clip, md5, promote_in_subprocess, report_of, server_state, sh, snapshot

pytestmark = pytest.mark.e2e

DVC = [sys.executable, "-m", "dvc"]


def lock_md5(repo: Path, out: str) -> str:
    """The md5 ``dvc.lock`` records for output ``out``."""
    for stage in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].values():
        for o in stage.get("outs", []):
            if o["path"] == out:
                return o["md5"]
    raise KeyError(out)


def assert_consistent(repo: Path) -> None:
    """HEAD == the newest prod tag reachable from it, git and `dvc status` clean, no journal, model bytes == lock."""
    from flows.production import ProductionCheckout

    pc = ProductionCheckout(repo)
    if sh(["git", "tag", "--list", "prod-*"], repo):  # before the first promotion there is no tag to agree with
        assert pc.tag() and sh(["git", "rev-parse", f"{pc.tag()}^{{commit}}"], repo) == pc.head()
    assert sh(["git", "status", "--porcelain", "--untracked-files=no"], repo) == ""
    status = json.loads(sh([*DVC, "status", "--json"], repo) or "{}")
    assert not [e for v in status.values() for e in v if isinstance(e, dict) and e.get("changed outs")], status
    assert not pc.journal.exists()
    assert md5(repo / "models/student.pt") == lock_md5(repo, "models/student.pt")


def candidate(repo: Path, run_id: str, top1: float | None = None) -> tuple[str, str]:
    """A cheap real candidate: a retrain worktree whose student (a DVC-tracked output in dvc.lock) has other bytes,
    committed with ``dvc commit`` on branch ``retrain/<run_id>``; optionally a faked metric. Returns (branch, base)."""
    from flows import ops
    from flows.production import ProductionCheckout

    pc = ProductionCheckout(repo)
    ws, branch, base = pc.open_candidate(run_id)
    with open(ws / "models/student.pt", "ab") as fh:
        fh.write(run_id.encode())
    ops.dvc(ws, "commit", "-f", "-q")  # every stage: the lock stays consistent downstream
    if top1 is not None:
        m = json.loads((ws / "metrics/evaluate.json").read_text())
        m["student"]["top1"] = top1
        (ws / "metrics/evaluate.json").write_text(json.dumps(m))
    ops.commit_all(ws, f"candidate {run_id}")
    pc.close_candidate(ws, branch, keep_branch=True)
    return branch, base


def test_promotion_is_merge_checkout_tag(prod):
    branch, base = candidate(prod, "first")
    r = promote_in_subprocess(prod, branch, base, None)
    assert r.returncode == 0, r.stderr
    assert sh(["git", "rev-parse", "HEAD"], prod) == sh(["git", "rev-parse", branch], prod) != base
    assert_consistent(prod)


@pytest.mark.parametrize("fault,finished", [("after_merge", False), ("after_checkout", False), ("after_tag", True)])
def test_promotion_killed_is_repaired_by_the_next_run(prod, fault, finished):
    from flows.retrain import retrain

    before = snapshot(prod)
    branch, base = candidate(prod, f"killed-{fault.replace('_', '-')}")
    r = promote_in_subprocess(prod, branch, base, fault)
    assert r.returncode == -9, (r.returncode, r.stderr)  # really SIGKILLed mid-promotion
    assert sh(["git", "rev-parse", "HEAD"], prod) == sh(["git", "rev-parse", branch], prod)  # between states
    out = retrain(repo=str(prod))  # nothing landed: the run only reconciles
    assert out["reconciled"], out
    assert_consistent(prod)
    if finished:  # the tag was written: the promotion is completed, not undone
        assert sh(["git", "rev-parse", "HEAD"], prod) == sh(["git", "rev-parse", branch], prod)
    else:
        assert snapshot(prod) == before  # back to the last consistent production, data included
        assert "rolled back" in out["reconciled"][0] and branch in out["reconciled"][0]


def test_dirty_dvc_output_refuses_promotion_with_nothing_moved(prod):
    from flows.production import ProductionCheckout, PromotionFailed
    from flows.retrain import outcome, retrain

    branch, base = candidate(prod, "dirty")
    with open(prod / "models/student.pt", "ab") as fh:  # someone edited a DVC-tracked output in production
        fh.write(b"local edit")
    before = snapshot(prod)
    with pytest.raises(PromotionFailed, match="models/student.pt"):
        ProductionCheckout(prod).promote(branch, base, "test")
    assert snapshot(prod) == before and not ProductionCheckout(prod).journal.exists()
    out = outcome(retrain(repo=str(prod), return_state=True))  # refuses to start on it, one line says what to do
    assert out["decision"] == "refused" and "dvc checkout" in out["reason"] and "\n" not in out["reason"]
    assert snapshot(prod) == before
    sh([*DVC, "checkout", "--force"], prod)
    assert_consistent(prod)
    with open(prod / "params.yaml", "a") as fh:  # an uncommitted git edit is named whole in the refusal
        fh.write("# local edit\n")
    with pytest.raises(PromotionFailed, match=r"\(uncommitted git changes: params\.yaml\)"):
        ProductionCheckout(prod).promote(branch, base, "test")
    sh(["git", "checkout", "params.yaml"], prod)
    assert_consistent(prod)


def test_rollback_by_reset_is_production_for_the_next_comparison(prod):
    """Promote a candidate whose metric is a (faked) 0.999, roll back by the README's reset; a real retrain must compare
    against the rolled-back commit's metric. The same run lands a malformed labels.csv (quarantined, the folder clip
    trained) and a single clip (drift not tested, and said so).

    That retrain is also a crippled one (lr=1e-12, one epoch; the schema refuses 0): the new student never learns. At
    this tiny scale production is itself near chance, so a crippled student can tie it; the run therefore demands a
    real improvement (tolerance -0.05), which untrained weights cannot deliver, and must be kept with its reason, a
    Completed run named Kept in the runs list, production as it was, its accepted clip one command from landing
    again."""
    from flows.production import ProductionCheckout
    from flows.retrain import outcome, retrain

    pc = ProductionCheckout(prod)
    good_tag = pc.tag()
    good = json.loads((prod / "metrics/evaluate.json").read_text())["student"]["top1"]
    branch, base = candidate(prod, "too-good", top1=0.999)
    pc.promote(branch, base, "test")
    sh(["git", "reset", "-q", "--hard", good_tag], prod)  # the README's rollback
    sh([*DVC, "checkout", "--force"], prod)
    assert pc.rev() == sh(["git", "rev-parse", f"{good_tag}^{{commit}}"], prod)
    before = snapshot(prod)
    jump_md5 = md5(dark_clip(prod / "inbox/Jump/after_rollback.avi", "Jump", 909))
    dark_clip(prod / "inbox/loose.avi", "Sit", 910)
    (prod / "inbox/labels.csv").write_text("file;label\nloose.avi;Sit\n")
    state = retrain(repo=str(prod), set_params=["train.lr=1e-12", "train.epochs=1"], tolerance=-0.05,
                    return_state=True)
    out = outcome(state)
    assert out["production"] == good != 0.999, out
    assert out["accepted"] == ["Jump/after_rollback.avi"]
    assert out["quarantined"]["labels.csv"].startswith("bad_labels: ")
    assert out["quarantined"]["loose.avi"].startswith("bad_labels: ")
    assert (prod / "quarantine" / out["run_id"] / "labels.csv.reason.txt").is_file()
    assert out["drift"] == "not tested: 1 clip (needs >= 2)"
    assert not (prod / "inbox/.claimed").exists()
    assert_consistent(prod)
    # the crippled candidate: kept, named so in the runs list, both metrics in the summary's headline
    assert out["decision"] == "kept", out
    assert (state.type, state.name) == (StateType.COMPLETED, "Kept") and server_state(state).name == "Kept"
    head = report_of(prod, out).splitlines()[2]
    assert f"production {out['production']:.4f} → candidate {out['candidate']:.4f}" in head
    assert out["candidate"] < out["production"] + 0.05
    assert "worse than production" in out["reason"] and out["branch"] in out["reason"]
    prod_metrics = json.loads(sh(["git", "show", "HEAD:metrics/evaluate.json"], prod))
    cand_metrics = json.loads(sh(["git", "show", f"{out['branch']}:metrics/evaluate.json"], prod))
    assert (out["production"], out["candidate"]) == (prod_metrics["student"]["top1"], cand_metrics["student"]["top1"])
    recipe = yaml.safe_load(sh(["git", "show", f"{out['branch']}:params.yaml"], prod))
    assert float(recipe["train"]["lr"]) == 1e-12  # the crippled recipe is what the candidate branch records
    assert snapshot(prod) == before  # production untouched
    assert out["push"] == "pushed"
    # the accepted clip is not lost: the summary says where it is and the command that lands it again works
    assert out["branch"] in out["clips"] and "DVC cache" in out["clips"]
    for cmd in out["clips"].split("land them again: ", 1)[1].split(" && "):
        sh(shlex.split(cmd), prod)
    (again,) = (prod / "inbox/Jump").glob("after_rollback_*.avi")
    assert md5(again) == jump_md5
    again.unlink()


def test_symlink_out_of_inbox_is_quarantined_not_landed(prod, tmp_path):
    from flows.retrain import retrain

    before = snapshot(prod)
    private = dark_clip(tmp_path / "private/secret.avi", "Jump", 111)
    (prod / "inbox/Jump").mkdir(parents=True, exist_ok=True)
    os.symlink(private, prod / "inbox/Jump/secret.avi")
    out = retrain(repo=str(prod))
    assert out["quarantined"]["Jump/secret.avi"].startswith("escapes_root: ") and out["accepted"] == []
    assert (prod / "quarantine" / out["run_id"] / "Jump/secret.avi").is_symlink()  # the link moved, not the bytes
    assert private.is_file() and snapshot(prod) == before
    assert md5(private) not in sh(["git", "log", "--all", "-p", "--", "data/footage.csv"], prod)


def test_poll_during_a_run_does_not_retake_claimed_clips(prod):
    """A retrain holds the lock and has claimed its clips: the watch poll sees no landing; once that run is dead, the
    next run returns its claims to the inbox and takes them (here: a floodlit clip the gate refuses, to stay cheap)."""
    from dlkdd.data.inbox import claim, survey_inbox
    from flows import ops
    from flows.retrain import outcome, retrain
    from flows.poll_inbox import watch

    clip = floodlit_clip(prod / "inbox/Jump/lights.avi", 7)
    with ops.exclusive(prod) as held:
        assert held
        claim(prod / "inbox", "running-run", [c.path for c in survey_inbox(prod / "inbox").landed])
        assert watch(repo=str(prod)) == {"landed": 0, "triggered": None}
    assert not clip.exists()  # ... and then the running run is killed, its claim left behind
    out = outcome(retrain(repo=str(prod), return_state=True))  # GateFailed: a Failed state
    assert any("returned 1 clip" in r for r in out["reconciled"]), out
    assert out["landed"] == ["Jump/lights.avi"] and out["decision"] == "gate failed"
    assert not (prod / "inbox/.claimed").exists()


def test_codec_crash_and_hang_on_a_landed_clip_quarantine_it_with_its_kind(prod, monkeypatch):
    """The landing gate decodes in the lead's isolated worker: a codec that really segfaults or hangs on one clip
    quarantines that clip with the kind in its reason, and the run goes on; a non-UTF-8 name is refused by its bytes
    before any decoder (cv2 segfaults on such names)."""
    from flows.retrain import retrain

    before = snapshot(prod)
    dark_clip(prod / "inbox/Jump/boom.avi", "Jump", 121)
    dark_clip(prod / "inbox/Sit/stuck.avi", "Sit", 122)
    shutil.copy(prod / "inbox/Sit/stuck.avi", os.path.join(os.fsencode(prod / "inbox/Jump"), b"caf\xe9.avi"))
    params = yaml.safe_load((prod / "params.yaml").read_text())
    params["frames"]["decode_timeout_s"] = 3.0
    (prod / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv("DLKDD_FAULT", "decode@boom=crash,decode@stuck=hang")
    try:
        out = retrain(repo=str(prod))
    finally:
        sh(["git", "checkout", "params.yaml"], prod)
    assert out["quarantined"]["Jump/boom.avi"].startswith("cannot decode (crashed)"), out
    assert out["quarantined"]["Sit/stuck.avi"].startswith("cannot decode (timeout)"), out
    assert out["quarantined"]["Jump/caf\\xe9.avi"].startswith("bad_name: "), out  # never reached a codec
    assert os.path.isfile(os.path.join(os.fsencode(prod / "quarantine" / out["run_id"] / "Jump"), b"caf\xe9.avi"))
    assert out["decision"] == "nothing to do" and snapshot(prod) == before


def test_dvc_in_a_promotion_waits_for_another_dvc_process_and_is_never_stuck(tmp_path):
    """Promotion's `dvc checkout` meets a person's DVC command holding the workspace lock: DVC's own --wait-for-lock
    waits it out; a holder that never lets go costs a bounded wait and one error, not a stuck night."""
    import time

    from flows import ops

    sh(["git", "init", "-q"], tmp_path)
    sh([*DVC, "init", "-q"], tmp_path)
    (tmp_path / "model.bin").write_bytes(b"weights")
    sh([*DVC, "add", "-q", "model.bin"], tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dvc.repo import Repo\n"
                               "with Repo(sys.argv[1]).lock:\n"
                               "    print('held', flush=True); time.sleep(float(sys.argv[2]))",
                               str(tmp_path), "8"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        failed = ops.dvc(tmp_path, "checkout", check=False)  # without waiting: DVC's lock error
        assert failed.returncode != 0 and "lock" in failed.stderr.lower()
        with pytest.raises(ops.CommandFailed, match="did not finish within 1 s"):
            ops.dvc_waiting(tmp_path, "checkout", timeout_s=1)
        t0 = time.monotonic()
        ops.dvc_waiting(tmp_path, "checkout")  # returns once the holder lets go
        assert time.monotonic() - t0 > 0.5 and holder.poll() is not None
    finally:
        holder.kill()
        holder.wait()
