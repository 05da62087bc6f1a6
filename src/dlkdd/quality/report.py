"""A self-contained HTML overview of a gate run (no scripts, no network): verdict, one row per check, links to the
GX Data Docs pages and the Evidently drift report (relative links, so the folder can be moved or opened offline)."""
from __future__ import annotations

import html
import os
from pathlib import Path

from dlkdd.atomic import write_text_atomic
from dlkdd.quality.result import GateResult, offender

_COLOURS = {"pass": "#1b7f3b", "fail": "#b00020", "warn": "#b26a00", "skipped": "#666"}


def render_index(result: GateResult, base: Path) -> str:
    """The overview page; links are made relative to ``base`` (the page's folder)."""
    verdict = "PASSED" if result.passed else "FAILED"
    rows = []
    for c in result.checks:
        worst = ", ".join(offender(w, " = ") for w in c.worst)
        rows.append(
            f"<tr><td>{html.escape(c.name)}</td><td style='color:{_COLOURS.get(c.status, '#000')};font-weight:bold'>"
            f"{c.status.upper()}</td><td>{html.escape(c.expectation)}</td><td>{html.escape(c.detail)}</td>"
            f"<td>{html.escape(worst)}</td></tr>")
    links = []
    for name, path in result.reports.items():
        if name != "index" and path.endswith(".html"):
            rel = os.path.relpath(path, base)
            links.append(f"<li><a href='{html.escape(rel)}'>{html.escape(name)}</a> ({html.escape(rel)})</li>")
    summary = html.escape(result.summary())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dlkdd data-quality gate: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left;vertical-align:top}}pre{{background:#f4f4f4;padding:1em}}</style></head>
<body><h1 id="verdict" style="color:{_COLOURS['pass' if result.passed else 'fail']}">Data-quality gate {verdict}</h1>
<p>{result.clips} clips, {len(result.checks)} checks, {len(result.failed_checks)} failed,
{len(result.warned_checks)} downgraded to warnings.</p>
<table id="checks"><tr><th>check</th><th>status</th><th>expectation / test</th><th>detail</th><th>worst offenders</th>
</tr>
{chr(10).join(rows)}
</table>
<h2>Reports</h2><ul id="reports">{''.join(links)}</ul>
<h2>Summary</h2><pre>{summary}</pre>
</body></html>
"""


def write_index(result: GateResult, path: Path) -> None:
    """Write the overview atomically (temp file + rename)."""
    write_text_atomic(path, render_index(result, path.parent))
