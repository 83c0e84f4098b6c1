"""Parse KUnit's KTAP output as printed on a kernel console."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The console's prefix: a timestamp, and with CONFIG_PRINTK_CALLER the
#: caller ("[    1.234567][    T1] " or "[C0]" in interrupts).
_PREFIX = re.compile(r"^\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])?\s?")
_RESULT = re.compile(r"^(?P<indent>\s*)(?P<ok>ok|not ok) (?P<num>\d+) (?P<name>[^#]*?)"
                     r"\s*(?:#\s*(?P<directive>\S+)(?P<reason>.*))?$")
_PLAN = re.compile(r"^(?P<indent>\s*)1\.\.(?P<count>\d+)$")
_SUBTEST = re.compile(r"^(?P<indent>\s*)# Subtest: (?P<name>\S+)")
#: KTAP nests by four spaces: 0 suites' results, 1 suites and their cases,
#: 2 and deeper the parameters of parameterized cases.
_INDENT = 4


def _level(indent: str) -> int:
    return len(indent.expandtabs(8)) // _INDENT


@dataclass
class Case:
    name: str
    status: str  # "pass", "fail" or "skip"
    reason: str = ""


@dataclass
class Suite:
    name: str
    planned: int | None = None
    cases: list[Case] = field(default_factory=list)
    status: str = "missing"  # the suite's own result line

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)


@dataclass
class Report:
    suites: list[Suite]
    planned_suites: int | None

    @property
    def ok(self) -> bool:
        """Every planned suite reported, every case passed, nothing skipped."""
        return (bool(self.suites)
                and self.planned_suites == len(self.suites)
                and all(s.status == "pass" and s.planned == len(s.cases)
                        and all(c.status == "pass" for c in s.cases)
                        for s in self.suites))

    def totals(self) -> dict[str, int]:
        cases = [c for s in self.suites for c in s.cases]
        return {"suites": len(self.suites), "cases": len(cases),
                "pass": sum(c.status == "pass" for c in cases),
                "fail": sum(c.status == "fail" for c in cases),
                "skip": sum(c.status == "skip" for c in cases)}

    def problems(self) -> list[str]:
        out = []
        if self.planned_suites is None:
            out.append("no KTAP output")
        elif self.planned_suites != len(self.suites):
            out.append(f"{self.planned_suites} suites planned, {len(self.suites)} reported")
        for s in self.suites:
            if s.planned != len(s.cases):
                out.append(f"{s.name}: {s.planned} cases planned, {len(s.cases)} reported")
            for c in s.cases:
                if c.status != "pass":
                    out.append(f"{s.name}.{c.name}: {c.status} {c.reason}".rstrip())
            if s.status != "pass" and all(c.status == "pass" for c in s.cases):
                out.append(f"{s.name}: suite result {s.status}")
        return out


def _status(ok: str, directive: str | None) -> str:
    if directive and directive.upper() == "SKIP":
        return "skip"
    return "pass" if ok == "ok" else "fail"


def parse(console: str) -> Report:
    """Suites (top level) and their cases (one level down) from KTAP lines.

    A parameterized case nests one more level (its parameters, each with a
    result, and no plan in 6.12); it counts as one case, by its own result
    line, as kunit_parser.py counts it.
    """
    suites: list[Suite] = []
    planned_suites = None
    current: Suite | None = None
    for raw in console.splitlines():
        line = _PREFIX.sub("", raw.rstrip())
        if m := _SUBTEST.match(line):
            if _level(m.group("indent")) == 1:
                current = Suite(m.group("name"))
            continue
        if m := _PLAN.match(line):
            level = _level(m.group("indent"))
            if level == 0:
                planned_suites = int(m.group("count"))
            elif level == 1 and current is not None and current.planned is None:
                current.planned = int(m.group("count"))
            continue
        if m := _RESULT.match(line):
            level = _level(m.group("indent"))
            status = _status(m.group("ok"), m.group("directive"))
            reason = (m.group("reason") or "").strip()
            name = m.group("name").strip()
            if level == 1:
                if current is not None:
                    current.cases.append(Case(name, status, reason))
            elif level == 0:
                suite = current if current and current.name == name else Suite(name)
                suite.status = status
                suites.append(suite)
                current = None
    return Report(suites, planned_suites)
