"""Randomized abuse of the heaps: heap_fuzz on a target, and what it must leave.

``heap_fuzz`` (device_tests/heap_fuzz.c) runs random, seeded sequences of
heap operations in several processes and threads and checks each step
itself (errno, zeroed buffers, data through every fd, the kernel log). The
host adds what only a whole run shows: afterwards every GCMA area's
accounting is back to empty (nothing used, nothing pending, no failed free)
and each area's pool has every page donated again, and the kernel log of
the run has no report. A failure names the seed, worker and step, and the
command that replays that worker alone.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import asdict, dataclass, field

from gcma.checks import klog
from gcma.errors import CheckFailed
from gcma.targets.transport import Transport

AREAS = "/sys/kernel/gcma_area"
#: The GCMA heaps of the emulated target.
DEFAULT_HEAPS = ("camera", "video")
POOLS = "/sys/kernel/mm/cleancache/pools"
#: How long freed pages may take to be donated again (deferred retries).
SETTLE_S = 30.0
_FAIL = re.compile(r"FAIL seed=(\d+) worker=(\d+) step=(\d+) op=(\w+): (.*)")


@dataclass
class FuzzReport:
    command: str
    seconds: float
    steps: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    enomem: int = 0
    failures: list[str] = field(default_factory=list)
    replay: list[str] = field(default_factory=list)
    areas: dict[str, dict[str, int]] = field(default_factory=dict)
    kernel_reports: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failures or self.kernel_reports)


def area_state(t: Transport) -> dict[str, dict[str, int]]:
    """Per GCMA area: used_kib, pending_pages, free_failures, total pages and
    the pages its cleancache pool has donated."""
    out = t.check(f"cd {AREAS} && for a in *; do for f in used_kib pending_pages "
                  f"free_failures total_kib; do echo \"$a $f $(cat $a/$f)\"; done; "
                  f"echo \"$a donated $(cat {POOLS}/$a/donated 2>/dev/null || echo -1)\"; done",
                  timeout=60)
    state: dict[str, dict[str, int]] = {}
    for line in out.splitlines():
        area, key, value = line.split()
        state.setdefault(area, {})[key] = int(value)
    return state


def free_failures(t: Transport) -> dict[str, int]:
    """Each area's count of failed frees so far: a baseline for settle(),
    since the count only grows (a test that pins a page on purpose leaves
    its failures in it for the rest of the boot)."""
    return {area: s["free_failures"] for area, s in area_state(t).items()}


def _settled(state: dict[str, dict[str, int]],
             failures_before: dict[str, int] | None = None) -> list[str]:
    """What is not back to empty, per area (none: settled); frees that
    failed since ``failures_before`` (all, without one)."""
    problems = []
    for area, s in sorted(state.items()):
        if s["used_kib"] or s["pending_pages"]:
            problems.append(f"{area}: {s['used_kib']} KiB still used, "
                            f"{s['pending_pages']} pages pending")
        if s["donated"] >= 0 and s["donated"] * 4 != s["total_kib"]:
            problems.append(f"{area}: {s['donated'] * 4} of {s['total_kib']} KiB donated "
                            f"to cleancache again")
        failed = s["free_failures"] - (failures_before or {}).get(area, 0)
        if failed:
            problems.append(f"{area}: {failed} frees failed")
    return problems


def settle(t: Transport, wait_s: float = SETTLE_S,
           failures_before: dict[str, int] | None = None) -> list[str]:
    """Wait up to ``wait_s`` for every area to be empty and donated again;
    what is still not (none: settled)."""
    deadline = time.monotonic() + wait_s
    while True:
        problems = _settled(area_state(t), failures_before)
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(1)


def run(t: Transport, heaps: list[str], seed: int, seconds: int, procs: int = 2,
        threads: int = 2, max_kib: int = 16384) -> FuzzReport:
    """heap_fuzz for ``seconds`` on ``heaps``; raises CheckFailed (with the
    report) if a step, the accounting or the kernel log says something broke."""
    failed_before = free_failures(t)
    leftover = settle(t, wait_s=0, failures_before=failed_before)
    if leftover:
        raise CheckFailed("the areas are not empty before the run: " + "; ".join(leftover))
    mark = len(t.check("dmesg", timeout=60).splitlines())
    command = (f"heap_fuzz -s {seed} -n 0 -d {seconds} -p {procs} -t {threads} "
               f"-m {max_kib} {' '.join(shlex.quote(h) for h in heaps)}")
    t0 = time.monotonic()
    res = t.run(command, timeout=seconds + 300)
    report = FuzzReport(command=command, seconds=round(time.monotonic() - t0, 1))
    for line in res.stdout.splitlines():
        if m := _FAIL.match(line):
            report.failures.append(line)
            report.replay.append(f"heap_fuzz -s {m.group(1)} -w {m.group(2)} "
                                 f"-n {int(m.group(3)) + 1} -m {max_kib} {' '.join(heaps)}")
        elif line.startswith("workers="):
            fields = dict(kv.split("=", 1) for kv in line.split())
            report.steps += int(fields.pop("steps"))
            report.enomem += int(fields.pop("enomem"))
            for key in ("workers", "result"):
                fields.pop(key, None)
            for op, n in fields.items():
                report.ops[op] = report.ops.get(op, 0) + int(n)
    if not res.ok and not report.failures:
        report.failures.append(f"{command} exited {res.exit_status}: "
                               f"{(res.stderr or res.stdout).strip()[-500:]}")
    report.failures += settle(t, failures_before=failed_before)
    report.areas = area_state(t)
    log = t.check("dmesg", timeout=60).splitlines()[mark:]
    report.kernel_reports = [f"{f.kind}: {f.line}" for f in klog.scan("\n".join(log))]
    if not report.ok:
        raise CheckFailed(f"heap_fuzz seed {seed}: "
                          + "; ".join((report.failures + report.kernel_reports)[:5])
                          + (f" (replay: {report.replay[0]})" if report.replay else ""),
                          report=asdict(report))
    return report
