"""The production checkout as one object: where promotion is a transaction and every run starts consistent.

Production is the commit checked out in the production checkout (a rollback by ``git reset --hard <older prod tag>``
is respected), with its DVC-tracked data in the workspace exactly as ``dvc.lock`` says. Promotion:

0. take the promotion lock (an flock on ``.dvc/tmp/promotion.lock``): promotions of one checkout are serialised, and
   :meth:`ProductionCheckout.reconcile` waits for a live promotion rather than taking its journal for a dead one's;
1. refuse unless git *and* ``dvc status`` are clean and HEAD is still the commit the candidate was built on;
2. write the journal ``.dvc/tmp/promotion.json`` (base, target, tag) — the record a killed promotion leaves;
3. ``git merge --ff-only <target>`` → ``dvc checkout`` → annotated ``prod-*`` tag *on target* → remove the journal.

A landing (:meth:`ProductionCheckout.land`: unlabelled clips too few to retrain on, added to production's dataset
without a pipeline run) is the same transaction without the tag.

Any failure (a command exiting non-zero, ENOSPC, EIO, a DVC lock never let go) rolls back (``git reset --hard base``
+ ``dvc checkout --force``) and raises PromotionFailed saying why. If the rollback itself fails, the journal stays
and the error is its subclass ProductionInconsistent with the one command that finishes it
(``python -m flows.production <repo>``, which is what every retrain runs first anyway). A kill leaves the journal,
and :meth:`ProductionCheckout.reconcile`, run first by every retrain, finishes a promotion whose tag was written or
rolls it back otherwise. ``DLKDD_FAULT=promote@<step>`` (:mod:`dlkdd.faults`) SIGKILLs the process after
``after_merge``, ``after_checkout`` or ``after_tag``: the fault-injection tests kill a real promotion with it.

A rollback never overwrites a person's work. Uncommitted edits to git-tracked files (a person editing params.yaml
while a promotion runs or after one was killed) are stashed first, ``git stash push -m "dlkdd <why>: uncommitted
edits kept <time>"``, and the error or the reconcile line says so: "your edit to params.yaml is in `git stash list` as
stash@{0}: ...". (Stash, not refuse: a refusal would leave production between two commits until a person acts.)
DVC's partial copies (``.<token>.tmp`` beside an output, which a checkout on a full disk leaves as big as the free
space) are deleted before the rollback's own checkout needs that space.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dlkdd import faults
from dlkdd.atomic import write_text_atomic
from flows import ops

JOURNAL = Path(".dvc/tmp/promotion.json")
LOCK = Path(".dvc/tmp/promotion.lock")


class PromotionFailed(RuntimeError):
    """The promotion did not happen (refused before anything moved, or rolled back); the message says why."""


class ProductionInconsistent(PromotionFailed):
    """The production checkout is in a state no run may repair by itself; the message says what a person must do.

    Raised by :meth:`ProductionCheckout.reconcile`, and by :meth:`ProductionCheckout.promote` when its rollback could
    not finish: a PromotionFailed, so the retrain flow's one ``except PromotionFailed`` covers every promotion failure
    (its summary: "kept: promotion failed: … run `python -m flows.production <repo>`").
    """


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
        any other is rolled back to its base commit and data, uncommitted edits stashed first. Without one, a checkout
        whose data differs from its commit is refused (it may be a person's work): ProductionInconsistent says what to
        run. Uncommitted git edits (e.g. to params.yaml) do not stop a run; they stop a promotion.
        """
        with ops.flock_waiting(self.repo / LOCK) as held:  # a live promotion's journal is not an interrupted one
            if not held:
                raise ProductionInconsistent(
                    f"a promotion of {self.repo} has held {LOCK} for {ops.LOCK_WAIT_S:g} s: let it finish (or kill "
                    f"it), then run `{self.repair_command()}`")
            if self.journal.is_file():
                return self._resume(json.loads(self.journal.read_text()))
        why = self.data_dirty()
        if why:
            raise ProductionInconsistent(f"production checkout {self.repo} is not consistent ({why}): "
                                         f"{self._restore_advice(why)}, then rerun")
        return []

    def _restore_advice(self, why: str) -> str:
        """What brings the workspace's data back to the commit's: ``dvc checkout`` only when the cache holds it."""
        if "(not in cache)" not in why:
            return (f"restore it with `dvc checkout --force` (or `git reset --hard {self.tag() or 'HEAD'} && dvc "
                    "checkout --force`), or commit the change")
        if ops.has_remote(self.repo):  # `dvc checkout` cannot restore what the cache lacks
            return "the DVC cache lacks their data: fetch it with `dvc pull`"
        return "the DVC cache lacks their data and no DVC remote is configured: rebuild it with `dvc repro`"

    def repair_command(self) -> str:
        """The one command that brings an interrupted promotion to its end (what every retrain runs first)."""
        return f"python -m flows.production {self.repo}"

    def _resume(self, j: dict) -> list[str]:
        """Finish (tag written at HEAD) or roll back the promotion journal ``j`` names; the journal stays until done."""
        tag_rev = ops.git(self.repo, "rev-parse", "-q", "--verify", f"{j['tag']}^{{commit}}", check=False) \
            if j["tag"] else j["target"]  # a landing has no tag: merged is finished
        head = self.head()
        if head not in (j["base"], j["target"]):  # someone moved it since: their commits are not ours to drop
            raise ProductionInconsistent(
                f"production checkout {self.repo} was moved during an interrupted promotion ({self.journal} names "
                f"{j['base'][:10]} → {j['target'][:10]}, HEAD is {head[:10]}): check it out as wanted, run "
                f"`dvc checkout --force`, delete {JOURNAL}, then rerun")
        try:
            if tag_rev and tag_rev == j["target"] == head:
                ops.remove_dvc_partials(self.repo)
                ops.dvc_waiting(self.repo, "checkout", "--force")
                self.journal.unlink()
                what = f"promotion to {j['tag']}" if j["tag"] else f"landing of {j['branch']}"
                return [f"finished the interrupted {what} ({j['target'][:10]})"]
            kept = self.rollback(j["base"], f"interrupted {'promotion' if j['tag'] else 'landing'} of {j['branch']}")
            self._drop_tag(j["tag"], j["target"])
            self.journal.unlink()
        except Exception as err:  # ENOSPC, EIO, a DVC lock never let go: the journal stays for the next run
            raise ProductionInconsistent(
                f"could not finish the interrupted promotion of {j['branch']} in {self.repo} ({_line(err)}); "
                f"{JOURNAL} stays: fix that, then run `{self.repair_command()}`") from err
        return [f"rolled back the interrupted promotion of {j['branch']} to {j['base'][:10]} (the candidate "
                f"stays on {j['branch']}){kept}"]

    # -- candidates ------------------------------------------------------------------------------------------------
    def open_candidate(self, run_id: str) -> tuple[Path, str, str]:
        """A throw-away worktree on ``retrain/<run_id>`` from production sharing the DVC cache: (path, branch, base)."""
        return ops.open_worktree(self.repo, run_id)

    def close_candidate(self, ws: Path, branch: str, keep_branch: bool) -> None:
        ops.close_worktree(self.repo, ws, branch, keep_branch)

    # -- the transaction -------------------------------------------------------------------------------------------
    def promote(self, branch: str, base: str, message: str) -> str:
        """Make ``branch`` production (merge → dvc checkout → tag) or raise PromotionFailed with production at base.

        Promotions of one checkout are serialised by an flock on :data:`LOCK`. Every failure is a PromotionFailed;
        one whose rollback did not finish is its subclass ProductionInconsistent, with the journal kept for the next
        run's :meth:`reconcile` and the one command that finishes it by hand.
        """
        tag = self._transaction(branch, base, message, tagged=True)
        assert tag is not None
        return tag

    def land(self, branch: str, base: str) -> None:
        """Make ``branch`` (production plus landed footage, no pipeline run) production: the same transaction as
        :meth:`promote` without the ``prod-*`` tag, since no model changes (unlabelled clips too few to retrain on
        wait in production's dataset for the next retrain). Raises PromotionFailed with production at base."""
        self._transaction(branch, base, "", tagged=False)

    def _transaction(self, branch: str, base: str, message: str, tagged: bool) -> str | None:
        try:
            with ops.flock_waiting(self.repo / LOCK) as held:
                if not held:
                    raise PromotionFailed(f"another promotion held {LOCK} for {ops.LOCK_WAIT_S:g} s; nothing moved")
                target, tag = self._begin(branch, base, tagged)
                try:
                    self._merge_checkout_tag(target, tag, message)
                except Exception as err:
                    raise self._undo(base, target, tag, err) from err
                with contextlib.suppress(OSError):  # promoted; a journal left is finished by the next reconcile
                    self.journal.unlink()
                return tag
        except PromotionFailed:
            raise
        except Exception as err:  # the lock file or the journal could not be written (a full disk): nothing moved
            raise PromotionFailed(f"{_line(err)}; nothing moved") from err

    def _begin(self, branch: str, base: str, tagged: bool = True) -> tuple[str, str | None]:
        """Refuse unless production is clean and still at ``base``; write the journal; return (target, tag: None for
        a landing)."""
        if self.head() != base:
            raise PromotionFailed("the production checkout moved during the retrain; rerun to retrain on top of it")
        why = self.dirty()
        if why:
            raise PromotionFailed(f"the production checkout is not clean ({why}); nothing moved")
        target = ops.git(self.repo, "rev-parse", f"{branch}^{{commit}}")
        tag = self._new_tag_name() if tagged else None
        write_text_atomic(self.journal, json.dumps({"base": base, "target": target, "branch": branch, "tag": tag}))
        return target, tag

    def _merge_checkout_tag(self, target: str, tag: str | None, message: str) -> None:
        ops.git(self.repo, "merge", "-q", "--ff-only", target)
        faults.inject("promote", "after_merge")
        ops.dvc_waiting(self.repo, "checkout")
        faults.inject("promote", "after_checkout")
        if tag:
            ops.git(self.repo, "tag", "-a", tag, "-m", message, target)  # it names the commit promoted, not HEAD
            faults.inject("promote", "after_tag")

    def _undo(self, base: str, target: str, tag: str | None, err: Exception) -> PromotionFailed:
        """Roll a failed promotion (or landing: ``tag`` None) back; the error to raise says whether that finished."""
        err_line = _line(err) + _disk_note(self.repo)  # before the rollback frees DVC's partial copies
        try:
            kept = self.rollback(base, f"failed promotion to {tag}" if tag else f"failed landing of {target[:10]}")
            self._drop_tag(tag, target)
            self.journal.unlink(missing_ok=True)
        except Exception as again:  # the journal stays: the next run's reconcile retries the rollback
            return ProductionInconsistent(
                f"{err_line}, and the rollback to {base[:10]} did not finish ({_line(again)}); {JOURNAL} stays: "
                f"fix that, then run `{self.repair_command()}`")
        return PromotionFailed(f"{err_line} (rolled back to {base[:10]}){kept}")

    def rollback(self, base: str, why: str = "rollback") -> str:
        """Production back to ``base``: its commit and its data (the cache holds both, promotion only added).

        Never overwrites an uncommitted edit: tracked changes are stashed first (``git stash push``); returns where
        they went ('' when there were none). DVC's partial copies are removed first: they hold the space it needs.
        """
        ops.remove_dvc_partials(self.repo)
        kept = self._stash_edits(base, why)
        ops.git(self.repo, "reset", "-q", "--hard", base)
        ops.dvc_waiting(self.repo, "checkout", "--force")
        return kept

    def _stash_edits(self, base: str, why: str) -> str:
        """Stash the tracked files a person changed (not those already as ``base`` has them: a reset that died
        part-way wrote those); returns where they went, '' when none."""
        changed = [f for f in ops.git(self.repo, "diff", "-z", "--name-only", "HEAD").split("\0") if f]
        edits = [f for f in changed if self._blob(f) != self._blob(f, base)]
        if not edits:
            return ""
        msg = f"dlkdd {why}: uncommitted edits kept {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
        ops.git(self.repo, "stash", "push", "-q", "-m", msg, "--", *edits)
        ref = ops.git(self.repo, "stash", "list", "-1", "--format=%gd")
        return f"; your edit to {', '.join(edits[:5])} is in `git stash list` as {ref}: {msg}"

    def _blob(self, path: str, commit: str | None = None) -> str:
        """The blob id of ``path`` in the workspace (or in ``commit``); '' where it does not exist."""
        if commit:
            return ops.git(self.repo, "rev-parse", "-q", "--verify", f"{commit}:{path}", check=False)
        return ops.git(self.repo, "hash-object", "--", path) if (self.repo / path).is_file() else ""

    def _drop_tag(self, tag: str | None, target: str) -> None:
        """Delete ``tag`` if it names ``target`` (a tag on a rolled-back commit would name it production)."""
        if tag and ops.git(self.repo, "rev-parse", "-q", "--verify", f"{tag}^{{commit}}", check=False) == target:
            ops.git(self.repo, "tag", "-d", tag)

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


def _line(err: BaseException) -> str:
    """The error's first line, plus the first ERROR/fatal line of a failed command's output."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    said = next((ln.strip() for ln in lines[1:] if ln.lstrip().lower().startswith(("error", "fatal"))), "")
    return lines[0] + (f" {said}" if said else "")


def _disk_note(repo: Path) -> str:
    """' (disk full: N KiB free)' when the checkout's disk is (nearly) full (DVC's own message does not say so)."""
    free = shutil.disk_usage(repo).free
    return f" (disk full: {free // 1024} KiB free)" if free < 1 << 20 else ""


if __name__ == "__main__":  # `python -m flows.production <repo>`: finish or roll back an interrupted promotion
    import sys

    try:
        print("\n".join(ProductionCheckout(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).reconcile()) or
              "consistent: nothing to do")
    except ProductionInconsistent as err:
        sys.exit(f"refused: {err}")
