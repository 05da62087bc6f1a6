"""git and DVC as subprocesses: the only way the flows touch the repository (Prefect orchestrates, DVC computes).

A retrain never works in the production checkout. It works in a throw-away git worktree on a branch
``retrain/<run_id>`` under ``.dvc/tmp/retrain/`` that shares the production checkout's DVC cache, so a crash or a kill
at any point leaves the production dataset, models and git history exactly as they were. Promotion, the one step
that changes production, is a transaction in :mod:`flows.production`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORKTREES = Path(".dvc/tmp/retrain")


class CommandFailed(RuntimeError):
    """A git/DVC command exited non-zero; the message carries the command and the tail of its output."""


def _env() -> dict[str, str]:
    # the venv's bin first so `dvc` stages run `python` from the same environment; identity for commits in CI sandboxes
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    for k, v in (("GIT_AUTHOR_NAME", "dlkdd-retrain"), ("GIT_AUTHOR_EMAIL", "retrain@dlkdd.local")):
        env.setdefault(k, v)
        env.setdefault(k.replace("AUTHOR", "COMMITTER"), v)
    return env


def sh(args: list[str], cwd: str | Path, check: bool = True,
       timeout_s: float | None = None) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"`{' '.join(map(str, args))}` did not finish within {timeout_s:g} s") from None
    if check and r.returncode != 0:
        tail = (r.stdout[-1500:] + "\n" + r.stderr[-2500:]).strip()
        raise CommandFailed(f"`{' '.join(map(str, args))}` exited {r.returncode}:\n{tail}")
    return r


def failure_line(err: CommandFailed) -> str:
    """One line for a failed command: its first line (the command and exit code) and the first ``error:`` line of its
    output (what a stage or DVC said was wrong), so a person reads the cause without opening a log."""
    lines = str(err).splitlines()
    cause = next((ln.strip() for ln in lines[1:] if ln.strip().lower().startswith("error")), "")
    return f"{lines[0]} {cause}".strip() if cause else lines[0]


def git(cwd: str | Path, *args: str, check: bool = True) -> str:
    return sh(["git", *args], cwd, check).stdout.strip()


def dvc(cwd: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


LOCK_WAIT_S = 600.0  # a person's `dvc status` takes seconds; a `dvc repro` in production is not waited out forever


def dvc_waiting(cwd: str | Path, *args: str, timeout_s: float | None = None) -> None:
    """A DVC command that may meet another DVC process's workspace lock: DVC's own ``--wait-for-lock`` waits for it,
    bounded by ``timeout_s`` (default :data:`LOCK_WAIT_S`) so a promotion is never stuck behind a hung process
    (CommandFailed then)."""
    sh([sys.executable, "-m", "dvc", "--wait-for-lock", *args], cwd, timeout_s=timeout_s or LOCK_WAIT_S)


# DVC 3.x (dvc_objects.fs.utils.tmp_fname) copies an output to ``.<token_urlsafe(16)>.tmp`` or ``<name>.<token>.tmp``
# beside it, then renames; a checkout that dies (ENOSPC, EIO, a kill) leaves the partial file, as big as the disk was.
_DVC_PARTIAL = re.compile(r"\.[A-Za-z0-9_-]{22}\.tmp$")


def remove_dvc_partials(repo: Path) -> list[str]:
    """Delete the partial copies a failed ``dvc checkout`` left in the workspace (not under .git or .dvc, where the
    cache and retrain worktrees live); returns their paths relative to ``repo``."""
    gone = []
    for root, dirs, files in os.walk(repo):
        if Path(root) == repo:
            dirs[:] = [d for d in dirs if d not in (".git", ".dvc")]
        for name in files:
            if _DVC_PARTIAL.search(name):
                (Path(root) / name).unlink(missing_ok=True)
                gone.append(str((Path(root) / name).relative_to(repo)))
    return gone


@contextlib.contextmanager
def flock_waiting(path: Path, timeout_s: float | None = None):
    """Yield True once this process holds the flock on ``path`` (waiting up to ``timeout_s``, default
    :data:`LOCK_WAIT_S`), False if another holder kept it that long. The kernel releases it when a holder is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (timeout_s or LOCK_WAIT_S)
    with open(path, "a") as fh:  # "a": an existing lock file is opened without writing a byte (a full disk)
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive(repo: Path):
    """Yield True if this process holds the repo's retrain lock, False if another retrain holds it.

    The deployment's concurrency limit covers served runs; this flock also covers a retrain started by hand, and the
    kernel releases it when a run is killed.
    """
    path = repo / ".dvc/tmp/retrain.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cleanup_stale(repo: Path) -> list[str]:
    """Remove worktrees left by killed runs (their branches stay, unmerged, for a post-mortem)."""
    root = repo / WORKTREES
    stale = [p.name for p in root.iterdir()] if root.is_dir() else []
    for name in stale:
        git(repo, "worktree", "remove", "--force", str(root / name), check=False)
        shutil.rmtree(root / name, ignore_errors=True)
    git(repo, "worktree", "prune")
    return stale


def open_worktree(repo: Path, run_id: str) -> tuple[Path, str, str]:
    """A fresh worktree on branch ``retrain/<run_id>`` from HEAD sharing the DVC cache; returns (path, branch, base)."""
    base = git(repo, "rev-parse", "HEAD")
    branch = f"retrain/{run_id}"
    ws = repo / WORKTREES / run_id
    ws.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "-q", "-b", branch, str(ws), base)
    cache = dvc(repo, "cache", "dir").stdout.strip()
    local = repo / ".dvc" / "config.local"  # remote endpoint/credentials live here, never in git
    if local.is_file():
        shutil.copy(local, ws / ".dvc" / "config.local")
    dvc(ws, "config", "--local", "cache.dir", cache)
    dvc(ws, "checkout", check=False)  # what the cache has; the pipeline rebuilds or restores the rest
    return ws, branch, base


def close_worktree(repo: Path, ws: Path, branch: str, keep_branch: bool) -> None:
    git(repo, "worktree", "remove", "--force", str(ws), check=False)
    shutil.rmtree(ws, ignore_errors=True)
    git(repo, "worktree", "prune")
    if not keep_branch:
        git(repo, "branch", "-D", branch, check=False)


def commit_all(ws: Path, message: str) -> str:
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "--allow-empty", "-m", message)
    return git(ws, "rev-parse", "HEAD")


def metrics_diff(ws: Path, old_rev: str) -> dict:
    """``dvc metrics diff --json --all <old_rev> HEAD`` as a dict (read with :mod:`dlkdd.regression`)."""
    return json.loads(dvc(ws, "metrics", "diff", "--json", "--all", old_rev, "HEAD").stdout or "{}")


def has_remote(ws: Path) -> bool:
    return bool(dvc(ws, "remote", "list").stdout.strip())
