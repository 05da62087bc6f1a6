"""What a person sees of a retrain: its named final state in Prefect (read back from a real test server), and a
summary readable at a glance that names only paths that exist and says how to land refused good clips again. One
real git + DVC production repo (conftest's `prod`: a copy of the session's tiny production repo), tests in file
order as nights are."""
import os
import re
import shutil
import subprocess
import sys

from prefect.client.schemas.objects import StateType

from helpers import dark_clip, floodlit_clip, md5, report_of, server_state, sh, snapshot

DVC = [sys.executable, "-m", "dvc"]


def code_after(md: str, heading: str) -> list[str]:
    """The lines of the first code block after ``heading``."""
    rest = md.split(heading, 1)[1]
    fence = re.search(r"^(`{3,})sh$", rest, re.M)
    body = rest[fence.end():].split("\n" + fence.group(1) + "\n", 1)[0]
    return [ln for ln in body.splitlines() if ln]


def test_summary_reads_at_a_glance_and_keeps_long_text_out_of_the_table():
    from flows.retrain import Summary

    long = "x" * 300
    s = Summary("r1", landed=["Sit/a.avi", "Sit/b```.avi"], quarantined={"Sit/a.avi": long, "Sit/b```.avi": "bad"},
                metric="student.top1", production=0.5, candidate=0.25, decision="gate failed", reason=long,
                gate=f"validate: FAILED 1 of 5 checks on 2 clips; report: {long}\n  FAIL luma_mean: {long}",
                dedupe=long, push="skipped: no DVC remote configured (see README: DVC remote)",
                reland=["mkdir -p inbox/Sit && mv -n quarantine/r1/Sit/b```.avi inbox/Sit/b```.avi"])
    md = s.markdown()
    lines = md.splitlines()
    assert lines[0] == "# Retrain r1"
    head = lines[2]  # the headline comes first: decision, metric production → candidate, what became of the clips
    assert head.startswith("**gate failed**") and "student.top1 production 0.5000 → candidate 0.2500" in head
    assert "2 clip(s): 0 accepted, 2 quarantined, 0 left in the inbox" in head
    table = [ln for ln in lines if ln.startswith("| ")]
    assert table and all(len(ln) <= 120 for ln in table), max(table, key=len)
    assert "| duplicate check | see Details below |" in md and f"- **duplicate check**: {long}" in md
    cmds = code_after(md, "## Land the quarantined good clips again")  # a name's backticks cannot close the block
    assert cmds == s.reland


def test_quiet_runs_end_in_named_completed_states(prod):
    from flows import ops
    from flows.retrain import outcome, retrain

    state = retrain(repo=str(prod), return_state=True)
    assert (state.type, state.name) == (StateType.COMPLETED, "NothingToDo")
    recorded = server_state(state)
    assert (recorded.type, recorded.name) == (StateType.COMPLETED, "NothingToDo")
    assert outcome(state)["decision"] == "nothing to do"
    assert retrain(repo=str(prod))["decision"] == "nothing to do"  # a direct call still returns the summary dict
    with ops.exclusive(prod) as held:
        assert held
        busy = retrain(repo=str(prod), return_state=True)
    assert (busy.type, busy.name) == (StateType.COMPLETED, "Busy") and outcome(busy)["decision"] == "busy"


def test_gate_failed_run_is_a_named_failure_naming_only_paths_that_exist(prod):
    """The runs list shows GateFailed as a failure; the summary names clips by their inbox paths (never the claim
    folder, gone after the run) and gives the commands that land the good clips of the refused batch again."""
    from flows.retrain import RetrainStopped, outcome, retrain

    before = snapshot(prod)
    floodlit_clip(prod / "inbox/Jump/lights.avi", 3)  # the offender
    fine = {"Sit/fine.avi": md5(dark_clip(prod / "inbox/Sit/fine.avi", "Sit", 121)),
            "Drink/my dusk.avi": md5(dark_clip(prod / "inbox/Drink/my dusk.avi", "Drink", 122))}
    (prod / "inbox/Sit/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated upload" * 20)
    state = retrain(repo=str(prod), return_state=True)
    assert state.is_failed() and state.name == "GateFailed"
    recorded = server_state(state)
    assert (recorded.type, recorded.name) == (StateType.FAILED, "GateFailed") and "gate failed" in recorded.message
    assert isinstance(state.result(raise_on_failure=False), RetrainStopped)
    out = outcome(state)
    assert out["decision"] == "gate failed" and snapshot(prod) == before
    md = report_of(prod, out)
    print(md)  # pytest -s: what a person reads
    assert md.splitlines()[2].startswith("**gate failed**") and "4 quarantined" in md.splitlines()[2]
    assert all(len(ln) <= 120 for ln in md.splitlines() if ln.startswith("| "))
    qdir = prod / "quarantine" / out["run_id"]
    written = [md, *(p.read_text(errors="replace") for p in qdir.rglob("*.reason.txt")),
               *(p.read_text(errors="replace") for p in (prod / "reports/retrain" / out["run_id"]).rglob("*")
                 if p.is_file() and p.suffix in (".html", ".json", ".txt", ".md"))]
    assert not [t for t in written if ".claimed" in t]
    assert "Jump/lights.avi" in out["gate"] and "cannot decode" in out["quarantined"]["Sit/broken.mp4"]
    assert "Sit/broken.mp4" in out["quarantined"]["Sit/broken.mp4"]  # the decoder's message names the inbox path
    cmds = code_after(md, "## Land the quarantined good clips again")
    assert len(cmds) == 2 and not [c for c in cmds if "lights" in c or "broken" in c]
    subprocess.run(["bash", "-euc", "\n".join(cmds)], cwd=prod, check=True)
    assert {k: md5(prod / "inbox" / k) for k in fine} == fine  # the good clips landed again, byte for byte
    for k in fine:
        (prod / "inbox" / k).unlink()


def test_refused_on_an_empty_cache_advises_what_can_restore_it(prod, tmp_path):
    """`dvc checkout --force` cannot restore what the cache lacks: the refusal says `dvc pull` (a remote is
    configured) or `dvc repro` (none is)."""
    from flows.production import ProductionCheckout, ProductionInconsistent
    from flows.retrain import outcome, retrain

    cache = prod / ".dvc/cache"
    shutil.move(cache, tmp_path / "cache")  # a fresh clone's (or another machine's) empty cache
    remote = sh([*DVC, "remote", "list"], prod).split()
    try:
        state = retrain(repo=str(prod), return_state=True)
        assert state.is_failed() and state.name == "Refused" == server_state(state).name
        reason = outcome(state)["reason"]
        assert "(not in cache)" in reason and "`dvc pull`" in reason and "dvc checkout" not in reason, reason
        sh([*DVC, "remote", "remove", remote[0]], prod)
        # conftest's copy_repo gives each copy its own remote URL in .dvc/config.local: remove it there too
        subprocess.run([*DVC, "remote", "remove", "--local", remote[0]], cwd=prod, capture_output=True)
        try:
            ProductionCheckout(prod).reconcile()
            raise AssertionError("an empty cache must refuse the run")
        except ProductionInconsistent as err:
            assert "`dvc repro`" in str(err) and "dvc checkout" not in str(err) and "dvc pull" not in str(err)
    finally:
        if os.path.lexists(prod / ".dvc/config") and remote[0] not in sh([*DVC, "remote", "list"], prod):
            sh([*DVC, "remote", "add", "-d", remote[0], remote[1]], prod)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.move(tmp_path / "cache", cache)
    assert retrain(repo=str(prod))["decision"] == "nothing to do"
