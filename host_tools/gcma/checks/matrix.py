"""``gcma bench``: every kind of contiguous memory side by side, under each
pressure, in one boot.

The columns are heaps: our GCMA heap (``camera``); the same area as a plain
carve-out (its ``donate`` switched off, so nothing is ever taken back: the
floor, an allocation that only zeroes its buffer); the stock CMA heap over a
plain CMA region of the same size (``linux,cma``); the stock CMA heap over a
CMA region marked "guarantee" (``cma-guarantee``, backed by GCMA); and the
system heap (not contiguous: what the page allocator alone costs). The rows
are conditions: pressure generators running on the target. Each cell is the
allocation driver's run of ``count`` allocations of one size, one at a time.

After the matrix, the churn scenario measures what the donated memory is
worth while idle: files larger than their reader's memory are read over and
over, and the share of the camera area holding cached pages, the hit rate
and the read throughput are reported, with donation on and off.

Only the :class:`~gcma.transport.Transport` is used: the same run works on
any target a transport reaches. Absolute times on the emulated target are
TCG emulation; the ratios, measured in one boot, are the result.
"""

from __future__ import annotations

import random
import shlex
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gcma.checks import bench, cma_view, integrity, pressure, stress
from gcma.checks.scenario import Scenario
from gcma.errors import CheckFailed, TargetError
from gcma.targets.transport import Transport

AREA_SYSFS = "/sys/kernel/gcma_area"
POOLS = "/sys/kernel/mm/cleancache/pools"


@dataclass(frozen=True)
class Column:
    name: str
    heap: str
    label: str
    #: The GCMA area switched to a carve-out while this column runs.
    carveout_area: str | None = None


@dataclass(frozen=True)
class Condition:
    name: str
    pressures: tuple[str, ...]


COLUMNS: tuple[Column, ...] = (
    Column("gcma", "camera", "GCMA heap (camera)"),
    Column("carve-out", "camera", "carve-out (camera, donation off)", carveout_area="camera"),
    Column("cma", "linux,cma", "stock CMA heap, plain CMA"),
    Column("cma-guarantee", "cma-guarantee", "stock CMA heap, guarantee"),
    Column("system", "system", "system heap"),
)

CONDITIONS: tuple[Condition, ...] = (
    Condition("idle", ()),
    Condition("pagecache", ("pagecache",)),
    Condition("anon+pinned", ("anon", "pinned")),
    # Memory full of anonymous pages first, so that the dirty pages land
    # where movable allocations go when normal memory runs low: in CMA.
    Condition("writeback", ("anon", "writeback")),
    Condition("all", tuple(pressure.PRESSURES)),
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def cell_scenario(size: str, count: int) -> Scenario:
    """One cell: ``count`` allocations of ``size``, one at a time, back to back."""
    return Scenario(name="bench", description=f"{count} allocations of {size}, one at a time",
                    sizes=(size,), buffers_per_burst=1, bursts=count)


def set_donate(shell: Transport, area: str, on: bool) -> None:
    """Switch an idle area between GCMA (donating) and a plain carve-out."""
    shell.check(f"echo {int(on)} > {AREA_SYSFS}/{shlex.quote(area)}/donate")


def _usable(shell: Transport, columns: tuple[Column, ...]) -> tuple[list[Column], dict[str, str]]:
    heaps = set(shell.check("ls /dev/dma_heap").split())
    usable, absent = [], {}
    for col in columns:
        if col.heap not in heaps:
            absent[col.name] = f"no heap {col.heap} on the target"
        elif col.carveout_area and shell.run(
                f"test -w {AREA_SYSFS}/{col.carveout_area}/donate").exit_status:
            absent[col.name] = f"area {col.carveout_area} cannot switch donation off"
        else:
            usable.append(col)
    if not any(c.name == "gcma" for c in usable):
        raise TargetError("the target has no GCMA heap 'camera': nothing to measure")
    return usable, absent


#: Allocations per block. A condition's columns take turns a block at a
#: time, in an order shuffled for each block (seeded by the condition's
#: name), so that drift during a condition (memory filling, the emulator
#: warming up) favours no column.
BLOCK = 5
SEED = 1


def blocks(count: int, block: int = BLOCK) -> list[int]:
    """``count`` allocations as block sizes: full blocks, then the rest."""
    return [block] * (count // block) + ([count % block] if count % block else [])


def _block(shell: Transport, sc: Scenario, col: Column, warm_up: bool) -> dict[str, Any]:
    """One block of a column's allocations: its driver report, with what
    occupied CMA as it started and what CMA's counters did during it."""
    if col.carveout_area:
        set_donate(shell, col.carveout_area, False)
    try:
        if warm_up:
            # One untimed allocation first: the first run of a code path is
            # slow on the emulated target (TCG translates it), and a cold
            # first allocation would be every column's p99. Its failure is
            # not ours to judge here: the timed ones say it.
            shell.run(f"heap_alloc -s {sc.sizes[0]} -n 1 {shlex.quote(col.heap)}",
                      timeout=600)
        occupancy = cma_view.occupancy(shell)
        before = cma_view.counters(shell)
        rep = stress.run_driver(shell, sc, col.heap)
        rep["cma_counters"] = cma_view.delta(before, cma_view.counters(shell))
        rep["cma_occupancy"] = occupancy
    finally:
        if col.carveout_area:
            set_donate(shell, col.carveout_area, True)
    return rep


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """A column's blocks under one condition as one cell: all allocations
    summed up; the occupancy at its first block's start (and at each)."""
    rows = [r for rep in reports for r in rep["allocations"]]
    counters: dict[str, int] = {}
    for rep in reports:
        for k, v in rep["cma_counters"].items():
            counters[k] = counters.get(k, 0) + v
    return {"summary": stress.summarize(rows),
            "lat_us": [r["lat_ns"] // 1000 for r in rows if r["ok"]],
            "on_target_command": reports[0]["on_target_command"],
            "blocks": len(reports),
            "cma_occupancy": reports[0]["cma_occupancy"],
            "cma_occupancy_blocks": [rep["cma_occupancy"] for rep in reports],
            "cma_counters": counters}


def run_matrix(shell: Transport, size: str = "16M", count: int = 20, settle_s: float = 10.0,
               conditions: tuple[Condition, ...] = CONDITIONS,
               columns: tuple[Column, ...] = COLUMNS,
               progress: Progress = _quiet) -> dict[str, Any]:
    """Every column under every condition; each condition's generators run
    once, for all its columns, which take turns a block of allocations at a
    time (the order of each block is in the result's ``order``)."""
    usable, absent = _usable(shell, columns)
    cells: dict[str, dict[str, Any]] = {}
    generators: dict[str, Any] = {}
    orders: dict[str, list[list[str]]] = {}
    for cond in conditions:
        loads = [pressure.PRESSURES[n] for n in cond.pressures]
        progress(f"bench: {cond.name}: starting {', '.join(cond.pressures) or 'no pressure'}")
        ready = pressure.start(shell, loads)
        row: dict[str, Any] = {}
        try:
            if loads and settle_s:
                shell.check(f"sleep {settle_s:g}")
            rng = random.Random(f"{SEED}:{cond.name}")
            parts: dict[str, list[dict[str, Any]]] = {c.name: [] for c in usable}
            orders[cond.name] = []
            for n in blocks(count):
                order = list(usable)
                rng.shuffle(order)
                orders[cond.name].append([c.name for c in order])
                for col in order:
                    parts[col.name].append(_block(shell, cell_scenario(size, n), col,
                                                  warm_up=not parts[col.name]))
            for col in usable:
                row[col.name] = _merge(parts[col.name])
                s = row[col.name]["summary"]
                progress(f"bench: {cond.name}: {col.name}: {s['ok']}/{s['count']} ok, "
                         f"p50 {s.get('p50_us', '-')} us, {bench.tail_key(count)} "
                         f"{s.get(bench.tail_key(count) + '_us', '-')} us")
        finally:
            stopped = pressure.stop(shell, loads)
        cells[cond.name] = row
        generators[cond.name] = {p.name: {"command": shlex.join(p.argv), "ready": ready[p.name],
                                          "stopped": stopped[p.name]} for p in loads}
    return {
        "size": size,
        "count": count,
        "settle_s": settle_s,
        "block": BLOCK,
        "seed": SEED,
        "order": orders,
        "columns": [{"name": c.name, "heap": c.heap, "label": c.label} for c in usable],
        "absent": absent,
        "conditions": [{"name": c.name, "pressures": list(c.pressures)} for c in conditions],
        "generators": generators,
        "cells": cells,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


#: The ratios of each condition: key -> (numerator column, denominator
#: column, statistic: "p50" or "tail").
RATIOS = {
    "gcma_over_carveout_p50": ("gcma", "carve-out", "p50"),
    "gcma_over_carveout_tail": ("gcma", "carve-out", "tail"),
    "gcma_over_cma_p50": ("gcma", "cma", "p50"),
    "cma_over_gcma_tail": ("cma", "gcma", "tail"),
    "guarantee_over_gcma_p50": ("cma-guarantee", "gcma", "p50"),
}


def ratios(matrix: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per condition, each ratio of RATIOS, or None where a column is
    missing; where a side did not succeed every time, the ratio is None and
    ``<key>_na`` says which side and how often it succeeded. Also each
    column's success rate."""
    tail = bench.tail_key(matrix["count"])
    out: dict[str, dict[str, Any]] = {}
    for cond, row in matrix["cells"].items():
        r: dict[str, Any] = {"tail": tail}
        for key, (num, den, which) in RATIOS.items():
            stat = f"{tail if which == 'tail' else which}_us"
            if num not in row or den not in row:
                r[key] = None
                continue
            short = [f"{c} {row[c]['summary']['ok']}/{row[c]['summary']['count']}"
                     for c in (num, den) if row[c]["summary"]["success_pct"] != 100.0]
            if short:
                r[key] = None
                r[f"{key}_na"] = ", ".join(short)
            else:
                r[key] = _ratio(row[num]["summary"].get(stat), row[den]["summary"].get(stat))
        for col in row:
            r[f"{col}_success_pct"] = row[col]["summary"].get("success_pct")
        out[cond] = r
    return out


def across_boots(per_boot: list[dict[str, dict[str, Any]]]) -> tuple[
        dict[str, dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Ratios of several boots (each as :func:`ratios` gives them) as one:
    each ratio's median, or None (with ``<key>_na`` from the first boot that
    had none) unless every boot has it; success rates are the lowest. Also
    each ratio's [min, max] across the boots."""
    medians: dict[str, dict[str, Any]] = {}
    spread: dict[str, dict[str, list[float]]] = {}
    for cond, first in per_boot[0].items():
        r: dict[str, Any] = {"tail": first["tail"]}
        spread[cond] = {}
        for key in RATIOS:
            values = [b[cond].get(key) for b in per_boot]
            if any(v is None for v in values):
                r[key] = None
                na = next((b[cond][f"{key}_na"] for b in per_boot
                           if f"{key}_na" in b[cond]), None)
                if na:
                    r[f"{key}_na"] = na
                continue
            r[key] = round(statistics.median(values), 2)
            spread[cond][key] = [min(values), max(values)]
        for key in first:
            if key.endswith("_success_pct"):
                r[key] = min(b[cond].get(key) or 0.0 for b in per_boot)
        medians[cond] = r
    return medians, spread


def check(matrix: dict[str, Any]) -> None:
    """What must hold whatever the timing: GCMA (and its carve-out) always
    succeed, and no heap hands out a buffer that is not zeroed or loses data
    (the driver's run fails on the latter already)."""
    for cond, row in matrix["cells"].items():
        for col in ("gcma", "carve-out"):
            if col in row and row[col]["summary"]["success_pct"] != 100.0:
                s = row[col]["summary"]
                raise CheckFailed(f"{col} under {cond}: {s['ok']}/{s['count']} allocations "
                                  f"succeeded (errnos {s['errnos']})", matrix)


# --- cleancache utility: the churn scenario ---------------------------------

CHURN_CGROUP = "/sys/fs/cgroup/gcma-churn"
#: What the churn reads: the files of the throttled disk (288 MiB), where a
#: page-cache miss costs I/O.
CHURN_DIR = "/slow"
CHURN_FILES = f"{CHURN_DIR}/*.bin"
SAMPLER = "/tmp/gcma-churn-samples"
#: Holds the guaranteed CMA area's pages while donation is off.
HOLDER = ("heap_stress", "-H", "cma-guarantee", "-s", "128M", "-b", "1", "-n", "1",
          "-h", "3600000", "-o", "/dev/null")


def _sampler_start(shell: Transport, area: str, period_s: float) -> None:
    shell.check(f"sh -c 'while :; do echo $(cut -d\" \" -f1 /proc/uptime) "
                f"$(cat {POOLS}/{area}/cached) $(cat {POOLS}/{area}/donated) "
                f"$(cat {integrity.CLEANCACHE}/cached) $(cat {integrity.CLEANCACHE}/donated); "
                f"sleep {period_s:g}; done' > {SAMPLER} 2>/dev/null & echo $! > {SAMPLER}.pid")


def _sampler_stop(shell: Transport) -> tuple[list[list[float]], float]:
    """The samples as [seconds since the first, area share, all pools'
    share], and the first one's uptime."""
    shell.run(f"kill $(cat {SAMPLER}.pid) 2>/dev/null; true")
    samples = []
    for line in shell.check(f"cat {SAMPLER}").splitlines():
        f = line.split()
        if len(f) != 5:
            continue
        t, cached, donated, all_cached, all_donated = (float(x) for x in f)
        samples.append([t, round(cached / donated, 4) if donated else 0.0,
                        round(all_cached / all_donated, 4) if all_donated else 0.0])
    t0 = samples[0][0] if samples else 0.0
    for s in samples:
        s[0] = round(s[0] - t0, 2)
    return samples, t0


def churn(shell: Transport, memory_limit: str = "48M", rounds: int = 3, area: str = "camera",
          progress: Progress = _quiet) -> dict[str, Any]:
    """Files larger than their reader's memory read ``rounds`` times (after
    two warm-up rounds: cleancache admits a page once it was refaulted) with
    donation on, then with every pool emptied (the GCMA areas as carve-outs,
    the guaranteed CMA area held by one allocation). The files' checksums
    are verified through the cache at the end."""
    ws_kib = int(shell.check(f"du -ck {CHURN_FILES} | tail -n 1").split()[0])
    integrity.make_cgroup(shell, CHURN_CGROUP, memory_limit)
    read = integrity.in_cgroup(f"cat {CHURN_FILES} > /dev/null", CHURN_CGROUP)
    progress(f"bench: churn: {ws_kib // 1024} MiB read in {memory_limit}, donation on")
    # Sampled from the first (cold) round on, so that the plot shows the
    # pools filling; the mean counts the timed rounds only.
    _sampler_start(shell, area, 0.5)
    try:
        shell.check(read, timeout=1800)
        shell.check(read, timeout=1800)
        timed_from = bench.uptime(shell)
        on = bench.timed_passes(shell, read, rounds, warm_up=False)
    finally:
        samples, t0 = _sampler_stop(shell)
    lookups = on.counters["restored"] + on.counters["missed"]
    res = shell.run(integrity.in_cgroup(
        f"cd {CHURN_DIR} && sha256sum -c MANIFEST.sha256 > /tmp/gcma-churn-sums 2>&1",
        CHURN_CGROUP), timeout=1800)
    if res.exit_status:
        bad = shell.run("grep -v ': OK$' /tmp/gcma-churn-sums | head -n 5").stdout.strip()
        raise CheckFailed(f"churn: files on {CHURN_DIR} read back wrong: {bad}")

    progress("bench: churn: donation off")
    areas = shell.check(f"ls {AREA_SYSFS}").split()
    holder: str | None = None
    for a in areas:
        set_donate(shell, a, False)
    try:
        if "cma-guarantee" in shell.check("ls /dev/dma_heap").split():
            shell.check(f"{shlex.join(HOLDER)} > /dev/null 2>&1 & echo $! > /tmp/gcma-holder")
            holder = "/tmp/gcma-holder"
            shell.check("i=0; while [ $i -lt 300 ] && "
                        f"[ $(cat {POOLS}/cma-guarantee/donated) != 0 ]; do "
                        "sleep 0.1; i=$((i+1)); done")
        left = int(shell.check(f"cat {integrity.CLEANCACHE}/donated"))
        off = bench.timed_passes(shell, read, rounds, warm_up=True)
    finally:
        if holder:
            shell.run(f"kill $(cat {holder}) 2>/dev/null; sleep 1; true")
        for a in areas:
            set_donate(shell, a, True)
    mib = ws_kib / 1024
    on_mib_s = round(mib / on.median_s, 1) if on.median_s else None
    off_mib_s = round(mib / off.median_s, 1) if off.median_s else None
    shares = [s[1] for s in samples if s[0] >= timed_from - t0]
    return {
        "area": area,
        "memory_limit": memory_limit,
        "working_set_mib": round(mib, 1),
        "rounds": rounds,
        "share_samples": samples,
        "timed_from_s": round(timed_from - t0, 2),
        "area_share_mean": round(sum(shares) / len(shares), 3) if shares else None,
        "area_share_max": max(shares) if shares else None,
        "hit_rate": round(on.counters["restored"] / lookups, 3) if lookups else None,
        "counters_on": {k: on.counters[k] for k in ("stored", "restored", "missed")},
        "pages_donated_while_off": left,
        "round_s_on": on.rounds_s,
        "round_s_off": off.rounds_s,
        "read_mib_s_on": on_mib_s,
        "read_mib_s_off": off_mib_s,
        "throughput_on_over_off": _ratio(on_mib_s, off_mib_s),
    }

