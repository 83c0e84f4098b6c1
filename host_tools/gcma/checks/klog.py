"""Scan kernel logs for the reports that mean something went wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Each pattern names one kind of kernel report. A test run whose kernel log
#: has any of these fails, whatever the test itself saw. The first pattern a
#: line matches names its kind, so the specific ones come before the generic
#: "BUG:" and "WARNING:" that prefix many reports.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx)) for kind, rx in (
        ("bad-page", r"BUG: Bad page (state|map)"),
        ("sanitizer", r"\b(UBSAN|KASAN|KFENCE|KMSAN):"),
        ("lockdep", r"possible (circular|recursive) locking|inconsistent lock state"
                    r"|suspicious RCU usage|lock held when returning"
                    r"|turning off the locking correctness validator"),
        ("list-corruption", r"list_(add|del) corruption"),
        ("oops", r"\bOops\b|Internal error: Oops"),
        ("paging", r"Unable to handle kernel (paging request|NULL pointer)"),
        ("panic", r"Kernel panic - not syncing"),
        ("hung", r"INFO: task .* blocked for more than"),
        ("rcu-stall", r"rcu: INFO: .* detected stalls"),
        ("bug", r"\bBUG:|kernel BUG at"),
        ("warning", r"\bWARNING: .*(CPU|at )"),
    ))


@dataclass(frozen=True)
class Finding:
    kind: str
    line: str


def scan(text: str) -> list[Finding]:
    findings = []
    for line in text.splitlines():
        for kind, rx in PATTERNS:
            if rx.search(line):
                findings.append(Finding(kind, line.strip()))
                break
    return findings
