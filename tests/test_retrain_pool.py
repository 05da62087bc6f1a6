"""Unlabelled footage in the retrain loop (issue 23, part 3): a landing of unlabelled clips only retrains once
``retrain.min_unlabeled`` of them wait untrained (over nights); fewer land in production's dataset and train nothing.
A retrain they start is judged like any other (same labelled test clips, same paired test), and its summary says how
many pool clips the candidate learned from. One real git + DVC production repo (conftest's ``prod``), tests in file
order as nights are."""
import sys

import pytest
import yaml
from helpers import dark_clip, md5, server_state, sh, snapshot
from prefect.client.schemas.objects import StateType

MIN_UNLABELED = 3


def pool_rows(footage_csv_text: str) -> list[str]:
    from flows.pool import unlabelled_md5s

    return sorted(unlabelled_md5s(footage_csv_text))


@pytest.fixture(scope="module")
def pool_prod(prod):
    """Production with ``retrain.min_unlabeled: 3`` committed (a person's edit of params.yaml)."""
    params = yaml.safe_load((prod / "params.yaml").read_text())
    params["retrain"]["min_unlabeled"] = MIN_UNLABELED
    (prod / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "commit", "-qam", "retrain.min_unlabeled: 3"], prod)
    return prod


def test_pool_clips_are_the_rows_of_the_pool_index(tmp_path):
    from flows.pool import pool_clips

    assert pool_clips(tmp_path) == 0  # no pool written (frames without one, or kd.use_pool off)
    index = tmp_path / "data/pool/index.csv"
    index.parent.mkdir(parents=True)
    index.write_text("")
    assert pool_clips(tmp_path) == 0
    index.write_text("clip_id,split,label,class_name\nu_1,unlabeled,-1,\nu_2,unlabeled,-1,\n")
    assert pool_clips(tmp_path) == 2


def test_unlabelled_rows_of_the_footage_sidecar():
    text = "path,class_name,md5,source\nJump/a_1.avi,Jump,aa,a.avi\n_unlabelled/b_2.avi,,bb,b.avi\n"
    assert pool_rows(text) == ["bb"] and pool_rows("") == [] and pool_rows("path,class_name,md5\n") == []


def test_too_few_unlabelled_clips_land_and_train_nothing(pool_prod):
    from flows.poll_inbox import watch
    from flows.retrain import retrain

    before = snapshot(pool_prod)
    clips = [dark_clip(pool_prod / f"inbox/night_{i}.avi", "Jump", 500 + i) for i in range(2)]  # loose: unlabelled
    sums = sorted(md5(c) for c in clips)
    out = watch(repo=str(pool_prod))
    assert out["landed"] == 2 and out["triggered"] == "subflow"
    res = out["result"]
    assert res["decision"] == "nothing to do", res
    assert "2 unlabelled clip(s) landed, 2 wait untrained" in res["reason"]
    assert f"a retrain needs {MIN_UNLABELED} (retrain.min_unlabeled)" in res["reason"]
    assert sorted(res["accepted"]) == ["night_0.avi", "night_1.avi"] and res["pool_clips"] is None
    # landed in production's dataset (git + DVC), nothing trained, no model promoted
    after = snapshot(pool_prod)
    assert pool_rows(after["footage_csv"]) == sums and sorted(m for _, m in after["footage"]) == sums
    assert all(p.startswith("_unlabelled/") for p, _ in after["footage"])
    assert (after["student"], after["lock"], after["tags"]) == (before["student"], before["lock"], before["tags"])
    assert after["head"] != before["head"] and after["status"] == ""
    assert not sh(["git", "branch", "--list", "retrain/*"], pool_prod)
    assert not any((pool_prod / "inbox").rglob("*.avi"))
    sh([sys.executable, "-m", "dvc", "status", "--quiet", "data/footage.dvc"], pool_prod)  # data = its commit
    report = (pool_prod / "reports/retrain" / f"{res['run_id']}.md").read_text()
    assert "| decision | **nothing to do** |" in report and "retrain.min_unlabeled" in report
    # the named state says it too, on the server
    state = retrain(repo=str(pool_prod), return_state=True)  # an empty inbox now: a quiet run
    assert (state.type, state.name) == (StateType.COMPLETED, "NothingToDo")


@pytest.mark.e2e  # runs the tiny pipeline (`dvc exp run`) on the candidate
def test_enough_unlabelled_clips_over_nights_retrain_with_the_paired_verdict(pool_prod):
    from flows.retrain import outcome, retrain

    before = snapshot(pool_prod)
    third = md5(dark_clip(pool_prod / "inbox/night_2.avi", "Sit", 502))  # 2 waiting + 1 = min_unlabeled
    state = retrain(repo=str(pool_prod), return_state=True)
    res = outcome(state)
    assert res["decision"] in {"promoted", "kept"}, res
    assert server_state(state).name == {"promoted": "Promoted", "kept": "Kept"}[res["decision"]]
    # judged like any candidate: the same labelled test clips, the same paired test
    assert res["production"] is not None and res["candidate"] is not None
    assert "McNemar" in res["paired"], res["paired"]
    branch = res["branch"]
    assert len(pool_rows(sh(["git", "show", f"{branch}:data/footage.csv"], pool_prod))) == MIN_UNLABELED
    assert third in sh(["git", "show", f"{branch}:data/footage.csv"], pool_prod)
    # how many pool clips it learned from: the rows of the pool index the frames stage wrote (none before it does)
    writes_pool = "data/pool" in (pool_prod / "dvc.yaml").read_text()
    assert res["pool_clips"] == (MIN_UNLABELED if writes_pool else 0)
    report = (pool_prod / "reports/retrain" / f"{res['run_id']}.md").read_text()
    assert f"| pool clips learned from | {res['pool_clips']} |" in report
    if res["decision"] == "kept":
        assert snapshot(pool_prod) == before  # unlabelled footage never promotes a worse model


def test_a_failed_training_run_says_its_cause_in_one_line(tmp_path):
    """`dvc exp run` failing in a candidate's workspace: the run's reason names the command and the stage's own
    ``error:`` line (it was the exit code alone: the cause sat in a log nobody opens)."""
    from flows import ops

    script = "import sys; print('Running stage validate'); sys.exit('error: unlabelled pool: 2 clips too bright')"
    with pytest.raises(ops.CommandFailed) as err:
        ops.sh([sys.executable, "-c", script], tmp_path)
    line = ops.failure_line(err.value)
    assert "\n" not in line and "exited 1" in line and line.endswith("error: unlabelled pool: 2 clips too bright")
