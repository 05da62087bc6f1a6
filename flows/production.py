"""The production checkout as one object: where promotion is a transaction and every run starts consistent.

Production is the commit checked out in the production checkout (a rollback by ``git reset --hard <older prod tag>``
is respected), with its DVC-tracked data in the workspace exactly as ``dvc.lock`` says. Promotion:

1. refuse unless git *and* ``dvc status`` are clean and HEAD is still the commit the candidate was built on;
2. write the journal ``.dvc/tmp/promotion.json`` (base, target, tag) — the record a killed promotion leaves;
3. ``git merge --ff-only`` → ``dvc checkout`` → annotated ``prod-*`` tag → remove the journal.

Any failure rolls back (``git reset --hard base`` + ``dvc checkout --force``) before the error is reported. A kill
leaves the journal, and :meth:`ProductionCheckout.reconcile`, run first by every retrain, finishes a promotion whose
tag was written or rolls it back otherwise. ``DLKDD_FAULT=promote@<step>`` (:mod:`dlkdd.faults`) SIGKILLs the process
after ``after_merge``, ``after_checkout`` or ``after_tag``: the fault-injection tests kill a real promotion with it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from dlkdd import faults
from dlkdd.atomic import write_text_atomic
from flows import ops

JOURNAL = Path(".dvc/tmp/promotion.json")


class PromotionFailed(RuntimeError):
    """The promotion did not happen (refused before anything moved, or rolled back); the message says why."""


class ProductionInconsistent(RuntimeError):
    """The production checkout is in a state no run may repair by itself; the message says what a person must do."""


@dataclass(frozen=True)
class ProductionCheckout:
    repo: Path

    @property
    def journal(self) -> Path:
        return self.repo / JOURNAL

    def head(self) -> str:
        return ops.git(self.repo, "rev-parse", "HEAD")

    def rev(self) -> str:
        """The production commit: the one checked out (not the newest tag by name, which a rollback leaves behind)."""
        return self.head()

    def tag(self) -> str | None:
        """The newest ``prod-*`` tag reachable from HEAD (by creation time), or None."""
        out = ops.git(self.repo, "tag", "--list", "prod-*", "--merged", "HEAD", "--sort=-creatordate")
        return out.split()[0] if out else None

    def dirty(self) -> str:
        """'' if git tracked files and DVC-tracked outputs match HEAD; else one line naming what differs."""
        changed = ops.git(self.repo, "diff", "--name-only", "HEAD")  # staged or not; untracked files do not matter
        if changed:
            return "uncommitted git changes: " + ", ".join(changed.splitlines()[:5])
        return self.data_dirty()

    def data_dirty(self) -> str:
        """'' if every DVC-tracked output in the workspace is what ``dvc.lock``/``.dvc`` files say; else one line."""
        outs = _changed_outs(json.loads(ops.dvc(self.repo, "status", "--json").stdout or "{}"))
        if outs:  # changed deps alone are a stale lock committed as such, not data a promotion would overwrite
            return "DVC-tracked outputs differ from dvc.lock/.dvc files: " + ", ".join(outs[:5])
        return ""

    # -- runs start here -------------------------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Bring an interrupted promotion to a consistent end; returns what was done (empty: nothing to do).

        With a journal: a promotion whose tag exists and sits at HEAD is finished (data checked out, journal removed);
        any other is rolled back to its base commit and data. Without one, a checkout whose data differs from its
        commit is refused (it may be a person's work): ProductionInconsistent says what to run. Uncommitted git edits
        (e.g. to params.yaml) do not stop a run; they stop a promotion.
        """
        if self.journal.is_file():
            j = json.loads(self.journal.read_text())
            tag_rev = ops.git(self.repo, "rev-parse", "-q", "--verify", f"{j['tag']}^{{commit}}", check=False)
            if tag_rev and tag_rev == j["target"] == self.head():
                ops.dvc_waiting(self.repo, "checkout", "--force")
                self.journal.unlink()
                return [f"finished the interrupted promotion to {j['tag']} ({j['target'][:10]})"]
            # someone moved it since: their commits are not ours to drop
            if self.head() not in (j["base"], j["target"]):
                raise ProductionInconsistent(
                    f"production checkout {self.repo} was moved during an interrupted promotion ({self.journal} names "
                    f"{j['base'][:10]} → {j['target'][:10]}, HEAD is {self.head()[:10]}): check it out as wanted, run "
                    f"`dvc checkout --force`, delete {JOURNAL}, then rerun")
            self.rollback(j["base"])
            if tag_rev:  # a tag on a rolled-back commit would name it production
                ops.git(self.repo, "tag", "-d", j["tag"], check=False)
            self.journal.unlink()
            return [f"rolled back the interrupted promotion of {j['branch']} to {j['base'][:10]} (the candidate "
                    f"stays on {j['branch']})"]
        why = self.data_dirty()
        if why:
            raise ProductionInconsistent(
                f"production checkout {self.repo} is not consistent ({why}): restore it with `dvc checkout --force` "
                f"(or `git reset --hard {self.tag() or 'HEAD'} && dvc checkout --force`), or commit the change, then "
                "rerun")
        return []

    # -- candidates ------------------------------------------------------------------------------------------------
    def open_candidate(self, run_id: str) -> tuple[Path, str, str]:
        """A throw-away worktree on ``retrain/<run_id>`` from production sharing the DVC cache: (path, branch, base)."""
        return ops.open_worktree(self.repo, run_id)

    def close_candidate(self, ws: Path, branch: str, keep_branch: bool) -> None:
        ops.close_worktree(self.repo, ws, branch, keep_branch)

    # -- the transaction -------------------------------------------------------------------------------------------
    def promote(self, branch: str, base: str, message: str) -> str:
        """Make ``branch`` production (merge → dvc checkout → tag) or raise PromotionFailed with production at base."""
        if self.head() != base:
            raise PromotionFailed("the production checkout moved during the retrain; rerun to retrain on top of it")
        why = self.dirty()
        if why:
            raise PromotionFailed(f"the production checkout is not clean ({why}); nothing moved")
        target = ops.git(self.repo, "rev-parse", f"{branch}^{{commit}}")
        tag = self._new_tag_name()
        write_text_atomic(self.journal, json.dumps({"base": base, "target": target, "branch": branch, "tag": tag}))
        try:
            ops.git(self.repo, "merge", "-q", "--ff-only", branch)
            faults.inject("promote", "after_merge")
            ops.dvc_waiting(self.repo, "checkout")
            faults.inject("promote", "after_checkout")
            ops.git(self.repo, "tag", "-a", tag, "-m", message)
            faults.inject("promote", "after_tag")
        except ops.CommandFailed as err:
            self.rollback(base)
            ops.git(self.repo, "tag", "-d", tag, check=False)
            self.journal.unlink(missing_ok=True)
            raise PromotionFailed(f"{str(err).splitlines()[0]} (rolled back to {base[:10]})") from err
        self.journal.unlink()
        return tag

    def rollback(self, base: str) -> None:
        """Production back to ``base``: its commit and its data (the cache holds both, promotion only added)."""
        ops.git(self.repo, "reset", "-q", "--hard", base)
        ops.dvc_waiting(self.repo, "checkout", "--force")

    def _new_tag_name(self) -> str:
        stamp = time.strftime("prod-%Y%m%d-%H%M%S", time.gmtime())
        tag, n = stamp, 1
        while ops.git(self.repo, "tag", "--list", tag):
            n += 1
            tag = f"{stamp}-{n}"
        return tag


def _changed_outs(status: dict) -> list[str]:
    """The outputs ``dvc status --json`` reports as changed: ``["models/student.pt (modified)", ...]``."""
    return [f"{p} ({s})" for entries in status.values() for e in entries if isinstance(e, dict)
            for p, s in (e.get("changed outs") or {}).items()]
