"""``gcma soak``: hours of mixed work under every pressure, watched for drift.

Every pressure generator runs for the whole soak. In rounds, the stress
scenarios (device_tests/scenarios/) take turns on the GCMA heaps, and every
third round is a heap_fuzz burst instead. After each round the soak records
the areas' accounting (which must be back to empty, every page donated
again), MemAvailable and unreclaimable slab, and the kernel log since the
start (which must have no report). At the end, with the generators
stopped, free memory and slab are compared with where they stood before:
growth beyond a few MiB is a leak, and fails the soak like any error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from gcma.checks import fuzz, klog, pressure, stress
from gcma.checks.scenario import Scenario, available, find
from gcma.errors import CheckFailed, GcmaError
from gcma.targets.transport import Transport

#: Slab and free-memory growth over the whole soak that counts as a leak.
DRIFT_LIMIT_KIB = 16 << 10
#: Seconds the generators get to fill memory before the first round.
SETTLE_S = 10


@dataclass
class Round:
    number: int
    work: str  # "scenario camera-burst on camera" or "heap_fuzz seed N"
    seconds: float
    allocations: int = 0
    failed_allocations: int = 0
    p99_us: int = 0
    mem_available_kib: int = 0
    slab_unreclaimable_kib: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    minutes: float
    rounds: list[Round] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    drift_kib: dict[str, int] = field(default_factory=dict)
    kernel_reports: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pressures: dict[str, Any] = field(default_factory=dict)


def meminfo(t: Transport) -> dict[str, int]:
    out = t.check("grep -E '^(MemAvailable|SUnreclaim):' /proc/meminfo", timeout=30)
    return {line.split(":")[0]: int(line.split()[1]) for line in out.splitlines()}


def _round(t: Transport, number: int, scenarios: list[Scenario], heaps: list[str],
           round_s: int, seed: int) -> Round:
    t0 = time.monotonic()
    failed_before = fuzz.free_failures(t)
    if number % 3 == 2:
        rnd = Round(number, f"heap_fuzz seed {seed + number}", 0.0)
        try:
            report = fuzz.run(t, heaps, seed + number, round_s, procs=2, threads=2)
            rnd.allocations = report.ops.get("alloc", 0)
        except CheckFailed as exc:
            rnd.errors.append(str(exc))
    else:
        sc = scenarios[(number // 3 * 2 + number % 3) % len(scenarios)]
        heap = heaps[number % len(heaps)]
        rnd = Round(number, f"scenario {sc.name} on {heap}", 0.0)
        try:
            summary = stress.run_driver(t, sc, heap, duration_s=round_s)["summary"]
            rnd.allocations = summary["count"]
            rnd.failed_allocations = summary["count"] - summary["ok"]
            rnd.p99_us = summary.get("p99_us", 0)
        except CheckFailed as exc:
            rnd.errors.append(str(exc))
        problems = fuzz.settle(t, failures_before=failed_before)
        rnd.errors += problems
    rnd.seconds = round(time.monotonic() - t0, 1)
    mem = meminfo(t)
    rnd.mem_available_kib = mem["MemAvailable"]
    rnd.slab_unreclaimable_kib = mem["SUnreclaim"]
    return rnd


def run(t: Transport, minutes: float, heaps: list[str] | None = None, round_s: int = 60,
        seed: int = 1, progress: Any = None) -> SoakReport:
    """Soak for ``minutes``; raises CheckFailed with the report if anything
    broke or drifted."""
    heaps = heaps or list(fuzz.DEFAULT_HEAPS)
    scenarios = [find(name) for name in available()]
    report = SoakReport(minutes=minutes)
    failed_before = fuzz.free_failures(t)
    leftover = fuzz.settle(t, wait_s=0, failures_before=failed_before)
    if leftover:
        raise CheckFailed("the areas are not empty before the soak: " + "; ".join(leftover))
    t.check("sync; echo 3 > /proc/sys/vm/drop_caches", timeout=120)
    report.before = meminfo(t)
    mark = len(t.check("dmesg", timeout=60).splitlines())
    gens = pressure.parse(["all"])
    ready = pressure.start(t, gens)
    deadline = time.monotonic() + minutes * 60
    try:
        t.check(f"sleep {SETTLE_S}", timeout=SETTLE_S + 60)
        number = 0
        while time.monotonic() < deadline:
            left = int(deadline - time.monotonic())
            rnd = _round(t, number, scenarios, heaps, max(10, min(round_s, left)), seed)
            report.rounds.append(rnd)
            if progress:
                progress(rnd)
            log = t.check("dmesg", timeout=60).splitlines()[mark:]
            report.kernel_reports = [f"{f.kind}: {f.line}" for f in klog.scan("\n".join(log))]
            if report.kernel_reports:
                break
            number += 1
    except GcmaError as exc:
        report.errors.append(f"round {len(report.rounds)}: {exc}")
    finally:
        stopped = pressure.stop(t, gens)
        report.pressures = {p.name: {"ready": ready[p.name], "stopped": stopped[p.name]}
                            for p in gens}
    t.check("sync; echo 3 > /proc/sys/vm/drop_caches", timeout=120)
    report.errors += fuzz.settle(t, failures_before=failed_before)
    report.after = meminfo(t)
    report.drift_kib = {"MemAvailable": report.before["MemAvailable"] -
                        report.after["MemAvailable"],
                        "SUnreclaim": report.after["SUnreclaim"] - report.before["SUnreclaim"]}
    for key, grew in report.drift_kib.items():
        if grew > DRIFT_LIMIT_KIB:
            report.errors.append(f"{key} drifted by {grew} KiB over the soak "
                                 f"(limit {DRIFT_LIMIT_KIB} KiB)")
    report.errors += [f"round {r.number} ({r.work}): {e}" for r in report.rounds for e in r.errors]
    if report.errors or report.kernel_reports:
        raise CheckFailed("soak: " + "; ".join((report.kernel_reports + report.errors)[:5]),
                          report=asdict(report))
    return report
