"""``gcma stress run``: a scenario on one heap of a target, through heap_stress.

The driver writes one JSON line per allocation on the target; this pulls
them, keeps them in the report, and sums them up: count, success rate,
latency percentiles of the allocations that succeeded, and the buffers that
came back not zeroed or failed their pattern check. Failed allocations are
results (a plain CMA heap under pinned pressure fails some); bad data never
is, and fails the run.
"""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter
from typing import Any

from gcma.checks import pressure
from gcma.checks.scenario import Scenario
from gcma.errors import CheckFailed, TargetError, UserError
from gcma.targets.transport import Transport

REMOTE_DIR = "/tmp"


def percentile(values: list[int], pct: float) -> int:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TargetError(f"heap_stress output line {number} is not JSON ({exc.msg}): "
                              f"{line[:120]!r}") from None
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["ok"]]
    lat_us = [r["lat_ns"] // 1000 for r in ok]
    summary: dict[str, Any] = {
        "count": len(rows),
        "ok": len(ok),
        "success_pct": round(100 * len(ok) / len(rows), 1) if rows else 0.0,
        "not_zeroed": sum(1 for r in ok if not r["zeroed"]),
        "pattern_mismatches": sum(1 for r in ok if not r["verified"]),
        "errnos": dict(Counter(str(r["errno"]) for r in rows if not r["ok"])),
    }
    if lat_us:
        summary |= {"p50_us": percentile(lat_us, 50), "p99_us": percentile(lat_us, 99),
                    "max_us": max(lat_us)}
    return summary


def _timeout(sc: Scenario, duration_s: float | None) -> float:
    """Generous: the scenario's own length, plus time for slow allocations."""
    if duration_s is not None or sc.bursts is None:
        length = duration_s if duration_s is not None else sc.duration_s or 0.0
    else:
        length = sc.bursts * (sc.frame_interval_ms + sc.hold_ms) / 1000
    return length + 300.0


def require_heap(shell: Transport, heap: str) -> None:
    """A user error, naming the heaps there are, unless the target has ``heap``."""
    heaps = shell.check("ls /dev/dma_heap").split()
    if heap not in heaps:
        raise UserError(f"no heap {heap!r} on the target (heaps: {', '.join(heaps) or 'none'})")


def run_driver(shell: Transport, sc: Scenario, heap: str,
               duration_s: float | None = None) -> dict[str, Any]:
    """Run ``sc`` on ``heap`` as the system is now (no pressure started here);
    returns the report without the pressures."""
    require_heap(shell, heap)
    remote = f"{REMOTE_DIR}/stress-{sc.name}-{heap}.jsonl"
    command = shlex.join(sc.driver_args(heap, remote, duration_s))
    res = shell.run(command, timeout=_timeout(sc, duration_s))
    if res.exit_status == 2:
        raise UserError(f"heap_stress refused the scenario: {res.stderr.strip()}")
    if res.exit_status not in (0, 1):
        raise TargetError(f"heap_stress ended with status {res.exit_status}: "
                          f"{res.stderr.strip()[-500:]}")
    rows = parse_lines(shell.check(f"cat {shlex.quote(remote)}"))
    shell.run(f"rm -f {shlex.quote(remote)}")
    summary = summarize(rows)
    report: dict[str, Any] = {
        "scenario": sc.name,
        "heap": heap,
        "on_target_command": command,
        "summary": summary,
        "allocations": rows,
    }
    if summary["not_zeroed"] or summary["pattern_mismatches"]:
        raise CheckFailed(f"{sc.name} on {heap}: {summary['not_zeroed']} buffers not zeroed, "
                          f"{summary['pattern_mismatches']} pattern mismatches", report)
    return report


def run(shell: Transport, sc: Scenario, heap: str, duration_s: float | None = None,
        pressures: list[pressure.Pressure] | None = None,
        settle_s: float = 5.0) -> dict[str, Any]:
    """Run ``sc`` on ``heap``; with ``pressures``, they are started (and given
    ``settle_s`` to fill memory) before it and stopped after it."""
    pressures = pressures or []
    require_heap(shell, heap)
    ready = pressure.start(shell, pressures)
    try:
        if pressures and settle_s:
            shell.check(f"sleep {settle_s:g}")
        report = run_driver(shell, sc, heap, duration_s)
    finally:
        stopped = pressure.stop(shell, pressures)
    report["pressures"] = {p.name: {"command": shlex.join(p.argv), "ready": ready[p.name],
                                    "stopped": stopped[p.name]} for p in pressures}
    return report
