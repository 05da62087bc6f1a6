"""Fault injection for the reliability tests: make a real process crash, hang or die at a named point.

``DLKDD_FAULT`` holds comma-separated rules ``point[@substring][=action]``: at :func:`inject` ``(point, subject)``
a rule fires when its point matches and its substring (if any) occurs in ``subject``. Actions: ``kill`` (SIGKILL,
the default: a power cut or the OOM killer), ``crash`` (SIGSEGV: a codec bug), ``hang`` (sleep forever: a stuck
codec). Unset in production, where :func:`inject` is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
import time


def inject(point: str, subject: str = "") -> None:
    rules = os.environ.get("DLKDD_FAULT")
    if not rules:
        return
    for rule in rules.split(","):
        where, _, action = rule.strip().partition("=")
        name, _, needle = where.partition("@")
        if name != point or (needle and needle not in str(subject)):
            continue
        if action == "hang":
            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGSEGV if action == "crash" else signal.SIGKILL)
