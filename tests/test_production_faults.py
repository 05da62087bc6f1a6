"""Promotion under the faults an adversarial tester found: a person's uncommitted edit during or after a killed
promotion (stashed, never reset away), two promotions at once (serialised; a tag names the commit it promoted), a
REAL full disk during the promotion's `dvc checkout` and during the rollback (a tmpfs mount; skipped where mounting is
not permitted), and a rollback whose own `dvc checkout` cannot get DVC's lock. Each on its own small real git + DVC
repo (a `dvc add`-tracked model, the cache outside the workspace); no Prefect server needed."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import md5, promote_in_subprocess, sh, src_env

from conftest import ROOT

pytestmark = pytest.mark.e2e

DVC = [sys.executable, "-m", "dvc"]
BASE_KB, CANDIDATE_KB = 100, 700


def make_repo(repo: Path, cache: Path) -> str:
    """A production checkout: params.yaml in git, models/student.pt tracked by DVC; returns the base commit."""
    from flows import ops

    repo.mkdir(parents=True, exist_ok=True)
    ops.git(repo, "init", "-q", "-b", "main")
    for args in (["init", "-q"], ["config", "core.analytics", "false"], ["config", "cache.dir", str(cache)]):
        ops.dvc(repo, *args)
    (repo / "params.yaml").write_text("lr: 0.1\n")
    (repo / "models").mkdir()
    (repo / "models/student.pt").write_bytes(os.urandom(BASE_KB * 1024))
    ops.dvc(repo, "add", "-q", "models/student.pt")
    return ops.commit_all(repo, "production")


def candidate(repo: Path, name: str, kb: int = CANDIDATE_KB) -> tuple[str, str]:
    """A real candidate on branch ``retrain/<name>``: another student, ``dvc add``-ed in a retrain worktree."""
    from flows import ops
    from flows.production import ProductionCheckout

    pc = ProductionCheckout(repo)
    ws, branch, base = pc.open_candidate(name)
    (ws / "models/student.pt").write_bytes(os.urandom(kb * 1024))
    ops.dvc(ws, "add", "-q", "models/student.pt")
    ops.commit_all(ws, f"candidate {name}")
    pc.close_candidate(ws, branch, keep_branch=True)
    return branch, base


def rev(repo: Path, ref: str) -> str:
    return sh(["git", "rev-parse", f"{ref}^{{commit}}"], repo)


def assert_at(repo: Path, commit: str) -> None:
    """Production is ``commit`` with its data: git clean, the model's bytes what its .dvc file says, no journal, no
    DVC partial copies left in the workspace."""
    from flows.production import ProductionCheckout

    assert sh(["git", "rev-parse", "HEAD"], repo) == commit
    assert sh(["git", "status", "--porcelain", "--untracked-files=no"], repo) == ""
    assert ProductionCheckout(repo).data_dirty() == ""
    assert f"md5: {md5(repo / 'models/student.pt')}" in (repo / "models/student.pt.dvc").read_text()
    assert not ProductionCheckout(repo).journal.exists()
    assert not [p for p in repo.rglob("*.tmp") if ".git" not in p.parts and ".dvc" not in p.parts]


@pytest.fixture
def repo(tmp_path) -> Path:
    make_repo(tmp_path / "prod", tmp_path / "cache")
    return tmp_path / "prod"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs for the production workspace (the DVC cache stays outside it): a disk that really fills."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"a real full disk needs `mount -t tmpfs` (root in a sandbox that allows it): {r.stderr.strip()}")
    try:
        make_repo(mnt / "prod", tmp_path / "cache")
        yield mnt / "prod"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(repo: Path, leave_kb: int) -> Path:
    """Fill the repo's disk with a file until only ``leave_kb`` KiB are free (0: until the kernel says ENOSPC)."""
    filler = repo.parent / "filler"
    with open(filler, "ab") as fh:
        try:
            while os.statvfs(repo).f_bavail * os.statvfs(repo).f_frsize > leave_kb * 1024:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    return filler


def test_reconcile_stashes_a_persons_edit_instead_of_resetting_it(repo):
    """A promotion is killed after its merge; a person then edits params.yaml. The next run's rollback must keep the
    edit (in `git stash list`, and say so), not `git reset --hard` it away."""
    from flows.production import ProductionCheckout

    branch, base = candidate(repo, "killed")
    assert promote_in_subprocess(repo, branch, base, "after_merge").returncode == -9
    (repo / "params.yaml").write_text("lr: 0.1\n# tuned by hand, not committed yet\n")
    done = ProductionCheckout(repo).reconcile()
    assert len(done) == 1 and "rolled back" in done[0], done
    assert "your edit to params.yaml is in `git stash list` as stash@{0}: dlkdd interrupted promotion" in done[0]
    assert "tuned by hand" in sh(["git", "stash", "show", "-p", "stash@{0}"], repo)
    assert_at(repo, base)


def test_two_promotions_at_once_are_serialised(repo):
    """Two real promotions of two candidates from the same base, released at the same instant: one wins, the other
    fails without touching it, and the winner's tag names the winner's commit."""
    gate = repo.parent / "go"
    code = ("import sys, time; from pathlib import Path; from flows.production import ProductionCheckout\n"
            "while not Path(sys.argv[4]).exists(): time.sleep(0.01)\n"
            "print(ProductionCheckout(Path(sys.argv[1])).promote(sys.argv[2], sys.argv[3], 'test'))")
    env = src_env(ROOT, ROOT / "src")
    env.pop("DLKDD_FAULT", None)
    runs = [candidate(repo, name) for name in ("left", "right")]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(repo), b, base, str(gate)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for b, base in runs]
    time.sleep(2)  # both imported and waiting
    gate.touch()
    outs = [(p.wait(300), *p.communicate()) for p in procs]
    won = [i for i, (rc, _, _) in enumerate(outs) if rc == 0]
    assert len(won) == 1, outs
    lost = outs[1 - won[0]]
    assert "PromotionFailed: the production checkout moved" in lost[2], lost
    tag, target = outs[won[0]][1].strip(), rev(repo, runs[won[0]][0])
    assert rev(repo, tag) == target  # the tag names the commit it promoted ...
    assert sh(["git", "tag", "--list", "prod-*"], repo) == tag  # ... and it is the only one
    assert_at(repo, target)  # production is the winner, with the winner's data


def test_rollback_never_resets_an_edit_made_during_a_failing_promotion(repo, monkeypatch):
    """Between the promotion's merge and its `dvc checkout` a person edits params.yaml and starts a DVC command that
    holds the workspace lock throughout: the checkout times out, and so does the rollback's. The edit is stashed (not
    reset away); the failure is ProductionInconsistent — a PromotionFailed, the one class the retrain flow catches —
    with the one command to run and the journal kept; that command, once the lock is let go, finishes the rollback."""
    from flows import ops
    from flows.production import ProductionCheckout, ProductionInconsistent, PromotionFailed

    branch, base = candidate(repo, "blocked")
    holder: list[subprocess.Popen] = []
    real_dvc_waiting = ops.dvc_waiting

    def person_acts_first(*args, **kw):  # the real command runs; a real person got there just before it
        if not holder:
            assert sh(["git", "rev-parse", "HEAD"], repo) == rev(repo, branch)  # merged, data not checked out
            (repo / "params.yaml").write_text("lr: 0.1\n# edited during the promotion\n")
            holder.append(subprocess.Popen(
                [sys.executable, "-c", "import sys; from dvc.repo import Repo\nwith Repo(sys.argv[1]).lock:\n"
                 "    print('held', flush=True); sys.stdin.readline()", str(repo)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            assert holder[0].stdout.readline().strip() == "held"
        return real_dvc_waiting(*args, **{"timeout_s": 5.0, **kw})  # the person's command outlasts 5 s

    monkeypatch.setattr(ops, "dvc_waiting", person_acts_first)
    try:
        with pytest.raises(PromotionFailed) as err:
            ProductionCheckout(repo).promote(branch, base, "test")
    finally:
        if holder:
            holder[0].communicate("\n", timeout=60)
    assert isinstance(err.value, ProductionInconsistent), repr(err.value)
    assert "did not finish within 5 s" in str(err.value) and "\n" not in str(err.value)
    assert f"`python -m flows.production {repo}`" in str(err.value)
    assert ProductionCheckout(repo).journal.exists()  # the rollback is not done: the next run's reconcile does it
    assert "edited during the promotion" in sh(["git", "stash", "show", "-p", "stash@{0}"], repo)
    r = subprocess.run([sys.executable, "-m", "flows.production", str(repo)], cwd=ROOT, capture_output=True, text=True,
                       env=src_env(ROOT, ROOT / "src"))
    assert r.returncode == 0 and "rolled back" in r.stdout, r
    assert_at(repo, base)
    assert "edited during the promotion" in sh(["git", "stash", "show", "-p", "stash@{0}"], repo)


def test_disk_full_during_checkout_rolls_back_and_leaves_no_partial_file(small_disk):
    """The candidate's model does not fit: DVC's checkout dies with ENOSPC after deleting the old model and filling the
    disk with its partial copy. The promotion must end as PromotionFailed, production back at base with its model,
    the partial copy gone; once there is room the same candidate promotes."""
    from flows.production import ProductionCheckout, PromotionFailed

    repo = small_disk
    branch, base = candidate(repo, "too-big")
    filler = fill(repo, leave_kb=CANDIDATE_KB - 300)
    with pytest.raises(PromotionFailed, match=r"disk full: \d+ KiB free\) \(rolled back to") as err:
        ProductionCheckout(repo).promote(branch, base, "test")
    assert type(err.value) is PromotionFailed and "\n" not in str(err.value)
    assert_at(repo, base)
    assert not sh(["git", "tag", "--list", "prod-*"], repo)
    filler.unlink()
    tag = ProductionCheckout(repo).promote(branch, base, "test")
    assert rev(repo, tag) == rev(repo, branch)
    assert_at(repo, rev(repo, branch))


def test_rollback_on_a_full_disk_keeps_the_journal_until_there_is_room(small_disk):
    """A promotion is killed after its checkout; the disk then fills up completely. The next run's rollback cannot
    write: ProductionInconsistent (the command that finishes it), the journal kept; once there is room again the next
    reconcile rolls back to base."""
    from flows.production import ProductionCheckout, ProductionInconsistent

    repo = small_disk
    branch, base = candidate(repo, "killed", kb=300)
    assert promote_in_subprocess(repo, branch, base, "after_checkout").returncode == -9
    filler = fill(repo, leave_kb=0)
    with pytest.raises(ProductionInconsistent, match="python -m flows.production") as err:
        ProductionCheckout(repo).reconcile()
    assert "could not finish the interrupted promotion" in str(err.value) and "\n" not in str(err.value)
    assert ProductionCheckout(repo).journal.exists()
    filler.unlink()
    done = ProductionCheckout(repo).reconcile()
    assert "rolled back" in done[0] and "stash" not in done[0], done
    assert_at(repo, base)
    assert not sh(["git", "stash", "list"], repo)


def test_the_retrain_flow_needs_to_catch_only_promotion_failed():
    """Every promotion failure is a PromotionFailed (a rollback that could not finish is its subclass
    ProductionInconsistent), and the retrain flow's `production.promote` call catches exactly that class."""
    import ast
    import inspect

    from flows import retrain
    from flows.production import ProductionInconsistent, PromotionFailed

    assert issubclass(ProductionInconsistent, PromotionFailed)
    tries = [n for n in ast.walk(ast.parse(inspect.getsource(retrain))) if isinstance(n, ast.Try)
             and any("production.promote(" in ast.unparse(s) for s in n.body)]
    assert [ast.unparse(h.type) for t in tries for h in t.handlers] == ["PromotionFailed"]
