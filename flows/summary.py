"""What one retrain did, as a person reads it: the Prefect artifact and ``reports/retrain/<run_id>.md``.

A headline first (decision, metric production → candidate, what became of the clips), then a table of short values
only; anything long (paths, reasons, the gate report, commands) goes to lists and code blocks below it, so no cell runs
off the table. Every piece of text that came from a file name is escaped: it reaches the page as text.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

SHORT = 48  # a table value longer than this goes to "Details" below the table


def cell(value: object) -> str:
    """``value`` as markdown text (a table cell or a list item): HTML-escaped (a clip named ``<img src=x
    onerror=...>.mp4`` stays text), with the characters markdown would read as links, images, code, emphasis or cell
    borders backslash-escaped and newlines flattened."""
    text = html.escape(str(value), quote=True).replace("\r", " ").replace("\n", " ")
    for ch in "\\`*[]|":
        text = text.replace(ch, "\\" + ch)
    return text


def code_block(lines: list[str], lang: str = "sh") -> list[str]:
    """``lines`` as a fenced code block whose fence is longer than any run of backticks in them (a name cannot close
    it early); shown as text, never as HTML."""
    longest = max((len(m) for ln in lines for m in re.findall("`+", ln)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, *lines, fence]


@dataclass
class Summary:
    """What one retrain did; rendered as the Prefect artifact and ``reports/retrain/<run_id>.md``."""

    run_id: str
    reconciled: list[str] = field(default_factory=list)  # what the run repaired before starting
    landed: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    not_landed: dict[str, str] = field(default_factory=dict)  # taken, then changed or vanished: left for the next run
    dedupe: str = ""  # what the landings were checked against for duplicate bytes
    accepted: list[str] = field(default_factory=list)
    gate: str = ""
    drift: str = ""
    metric: str = ""
    production: float | None = None
    candidate: float | None = None
    pool_clips: int | None = None  # unlabelled pool clips the candidate learned from (data/pool/index.csv rows)
    paired: str = ""  # the paired test of production's and the candidate's per-clip test predictions
    decision: str = "nothing to do"  # promoted | kept | gate failed | training failed | refused | failed | nothing ..
    reason: str = ""
    branch: str = ""
    tag: str = ""
    push: str = ""
    clips: str = ""  # where accepted clips of a run that was not promoted are, and how to land them again
    reland: list[str] = field(default_factory=list)  # commands that put quarantined good clips back in the inbox

    def headline(self) -> str:
        fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        metric = f"{cell(self.metric or 'metric')} production {fmt(self.production)} → candidate {fmt(self.candidate)}"
        clips = (f"{len(self.seen())} clip(s): {len(self.accepted)} accepted, {len(self.quarantined)} quarantined, "
                 f"{len(self.not_landed)} left in the inbox")
        return f"**{cell(self.decision)}** · {metric} · {clips}"

    def seen(self) -> list[str]:
        """Every clip the run saw (taken, or refused before it could be taken), by its path in the inbox."""
        return list(dict.fromkeys([*self.landed, *self.accepted, *self.not_landed, *self.quarantined]))

    def rows(self) -> list[tuple[str, str]]:
        fmt = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        return [("decision", self.decision), (f"{self.metric} production", fmt(self.production)),
                (f"{self.metric} candidate", fmt(self.candidate)), ("clips", str(len(self.seen()))),
                ("accepted", str(len(self.accepted))), ("quarantined", str(len(self.quarantined))),
                ("left in the inbox", str(len(self.not_landed))),
                ("quality gate", self.gate.split(":", 1)[0] if self.gate else "not run"), ("drift", self.drift),
                ("paired test", self.paired),
                ("pool clips learned from", "" if self.pool_clips is None else str(self.pool_clips)),
                ("duplicate check", self.dedupe),
                ("reconciled", "; ".join(self.reconciled) or "consistent"), ("branch", self.branch),
                ("production tag", self.tag), ("dvc push", self.push)]

    def markdown(self) -> str:
        out = [f"# Retrain {cell(self.run_id)}", "", self.headline(), ""]
        if self.reason:
            out += [f"Why: {cell(self.reason)}", ""]
        details = []
        out += ["| item | value |", "|---|---|"]
        for k, v in self.rows():
            if not v:
                continue
            if len(v) > SHORT:
                details.append(f"- **{cell(k)}**: {cell(v)}")
                head = v.split(": ", 1)[0]
                v = f"{head} (Details below)" if len(head) <= SHORT else "see Details below"
            shown = f"**{cell(v)}**" if k == "decision" else cell(v)
            out.append(f"| {cell(k)} | {shown} |")
        out += self._clip_lists() + self._gate_lines()
        if details:
            out += ["", "## Details", "", *details]
        out += self._commands()
        return "\n".join(out) + "\n"

    def _clip_lists(self) -> list[str]:
        """One line per clip the run saw, with what became of it (by its path in the inbox)."""
        fates = {c: "taken (see Why)" for c in self.landed}
        fates.update({c: "accepted" for c in self.accepted})
        fates.update({c: f"left in the inbox for the next run: {w}" for c, w in self.not_landed.items()})
        fates.update({c: f"quarantined: {w}" for c, w in self.quarantined.items()})
        if not fates:
            return []
        return ["", f"## Clips ({len(fates)})", "", *(f"- {cell(c)} — {cell(f)}" for c, f in fates.items())]

    def _gate_lines(self) -> list[str]:
        if not self.gate:
            return []
        return ["", "## Quality gate", "", *[f"- {cell(ln.strip())}" for ln in self.gate.splitlines() if ln.strip()]]

    def _commands(self) -> list[str]:
        out = []
        if self.reland:
            out += ["", "## Land the quarantined good clips again", "",
                    "These clips were refused with their batch, not for themselves. From the production checkout:",
                    "", *code_block(self.reland)]
        if self.clips:
            where, _, cmds = self.clips.partition("; land them again: ")
            out += ["", "## Land the accepted clips again", "", cell(where) + ":", "",
                    *code_block(cmds.split(" && ") if cmds else [])]
        return out
