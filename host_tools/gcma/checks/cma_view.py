"""What occupies the CMA areas, and CMA's own counters: the evidence that a
benchmark condition pressed on CMA at all.

``occupancy`` runs ``cma_occupancy`` on the target (each area's pages
counted by /proc/kpageflags and /proc/kpagecount); ``counters`` reads
CMA's allocation counters (/sys/kernel/mm/cma/<area>/) and the migration
counters of /proc/vmstat, whose differences across a cell say how hard CMA
worked and how often it failed.
"""

from __future__ import annotations

from typing import Any

from gcma.errors import CheckFailed
from gcma.report import parse_kv
from gcma.targets.transport import Transport

#: Page kinds cma_occupancy reports, besides the area's size (pages).
KINDS = ("free", "anon", "file", "dirty", "writeback", "locked", "unevictable", "mapped",
         "kernel")
#: /proc/vmstat counters of CMA and of page migration (what CMA does).
VMSTAT = ("cma_alloc_success", "cma_alloc_fail", "pgmigrate_success", "pgmigrate_fail")
#: An area this free when an allocation starts is not under pressure: a
#: condition that leaves it so does not test CMA.
MOSTLY_FREE = 0.9


def occupancy(shell: Transport) -> dict[str, dict[str, int]]:
    """Area name -> page counts by kind, and ``pages``."""
    res = shell.run("cma_occupancy", timeout=120)
    if res.exit_status:
        raise CheckFailed(f"cma_occupancy failed: {(res.stderr or res.stdout).strip()}")
    areas = {}
    for line in res.stdout.splitlines():
        kv = parse_kv(line)
        if "area" in kv:
            areas[kv["area"]] = {k: int(kv[k]) for k in ("pages", *KINDS)}
    return areas


def counters(shell: Transport) -> dict[str, int]:
    """``<area>/alloc_pages_success`` and ``..._fail`` of every CMA area,
    and the VMSTAT counters (those the kernel has)."""
    out = shell.check("cd /sys/kernel/mm/cma 2>/dev/null && for a in *; do "
                      "for f in alloc_pages_success alloc_pages_fail; do "
                      "[ -r \"$a/$f\" ] && echo \"$a/$f $(cat \"$a/$f\")\"; done; done; "
                      f"grep -E '^({'|'.join(VMSTAT)}) ' /proc/vmstat; true")
    values = {}
    for line in out.splitlines():
        name, _, value = line.rpartition(" ")
        if name and value.isdigit():
            values[name] = int(value)
    return values


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def shares(area: dict[str, int]) -> dict[str, float]:
    """Each kind as a share of the area's pages."""
    pages = area.get("pages") or 1
    return {k: round(area.get(k, 0) / pages, 3) for k in KINDS}


def pressed(area: dict[str, Any]) -> bool:
    """Whether an area was under pressure: less than MOSTLY_FREE of it free."""
    return shares(area)["free"] < MOSTLY_FREE
