"""The benchmark matrix's arithmetic and its report files, from made-up cells.

The measuring itself runs on the emulated target (tests/e2e/test_bench.py);
here the ratios, the checks and the rendering are held to known inputs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from gcma.checks import bench_report, matrix
from gcma.errors import CheckFailed


def _occupancy(free: int) -> dict[str, dict[str, int]]:
    """cma_occupancy's counts for the plain CMA area, ``free`` of 100 pages free."""
    rest = 100 - free
    return {"cma": {"pages": 100, "free": free, "anon": rest // 2, "file": rest - rest // 2,
                    "dirty": 3, "writeback": 2, "locked": 0, "unevictable": 0,
                    "mapped": rest // 2, "kernel": 0}}


def _cell(ok: int, count: int, lat_us: list[int], free: int = 100) -> dict[str, Any]:
    summary: dict[str, Any] = {"count": count, "ok": ok,
                               "success_pct": round(100 * ok / count, 1),
                               "not_zeroed": 0, "pattern_mismatches": 0, "errnos": {}}
    if lat_us:
        ordered = sorted(lat_us)
        summary |= {"p50_us": ordered[len(ordered) // 2 - 1 + len(ordered) % 2],
                    "p99_us": ordered[-1], "max_us": ordered[-1]}
    return {"summary": summary, "lat_us": lat_us, "on_target_command": "heap_stress ...",
            "cma_occupancy": _occupancy(free),
            "cma_counters": {"cma/alloc_pages_fail": 0 if ok == count else 16,
                             "pgmigrate_fail": 7}}


def _matrix(cma_ok: int = 2) -> dict[str, Any]:
    cols = ("gcma", "carve-out", "cma", "system")
    return {
        "size": "16M", "count": 2, "settle_s": 1.0, "block": 5, "seed": 1,
        "order": {"idle": [["cma", "gcma", "carve-out", "system"]],
                  "writeback": [["gcma", "system", "cma", "carve-out"]]},
        "columns": [{"name": c, "heap": c, "label": c} for c in cols],
        "absent": {"cma-guarantee": "no heap cma-guarantee on the target"},
        "conditions": [{"name": "idle", "pressures": []},
                       {"name": "writeback", "pressures": ["writeback"]}],
        "generators": {"idle": {}, "writeback": {"writeback": {
            "command": "pressure dirty /slow 64", "ready": {}, "stopped": {}}}},
        "cells": {
            "idle": {"gcma": _cell(2, 2, [1100, 1200]), "carve-out": _cell(2, 2, [1000, 1000]),
                     "cma": _cell(2, 2, [900, 2000]), "system": _cell(2, 2, [800, 900])},
            "writeback": {"gcma": _cell(2, 2, [1000, 1500]),
                          "carve-out": _cell(2, 2, [1000, 1000]),
                          "cma": _cell(cma_ok, 2, [30000, 45000][:cma_ok], free=20),
                          "system": _cell(2, 2, [800, 900])},
        },
    }


def test_ratios_against_the_floor_and_cma() -> None:
    r = matrix.ratios(_matrix())
    # Two allocations per cell: the tail is the slowest, not a p99.
    assert r["idle"]["tail"] == "max"
    assert r["idle"]["gcma_over_carveout_p50"] == 1.1
    assert r["idle"]["gcma_over_carveout_tail"] == 1.2
    assert r["writeback"]["cma_over_gcma_tail"] == 30.0
    assert r["writeback"]["gcma_over_cma_p50"] == round(1000 / 30000, 2)
    assert r["writeback"]["cma_success_pct"] == 100.0


def test_a_p99_is_claimed_from_a_hundred_allocations_on() -> None:
    m = _matrix()
    m["count"] = 100
    for row in m["cells"].values():
        for cell in row.values():
            cell["summary"]["p99_us"] = cell["summary"]["max_us"] - 1
    r = matrix.ratios(m)
    assert r["idle"]["tail"] == "p99"
    assert r["idle"]["gcma_over_carveout_tail"] == round(1199 / 999, 2)


@pytest.mark.parametrize("cma_ok", [0, 1])
def test_a_ratio_with_a_side_that_failed_is_not_a_number(cma_ok: int) -> None:
    r = matrix.ratios(_matrix(cma_ok=cma_ok))
    assert r["writeback"]["cma_over_gcma_tail"] is None
    assert r["writeback"]["gcma_over_cma_p50"] is None
    assert r["writeback"]["cma_over_gcma_tail_na"] == f"cma {cma_ok}/2"
    assert r["writeback"]["cma_success_pct"] == 50.0 * cma_ok
    rows = {row["ratio"]: row for row in bench_report.ratio_rows(
        {"matrix": _matrix(cma_ok=cma_ok), "ratios": r})}
    assert rows["CMA max / GCMA max"]["writeback"] == f"n/a (cma {cma_ok}/2)"
    assert rows["GCMA p50 / CMA p50"]["writeback"] == f"n/a (cma {cma_ok}/2)"


def test_goals_say_met_or_not_per_cell_and_overall() -> None:
    m = _matrix(cma_ok=1)
    report = {"matrix": m, "ratios": matrix.ratios(m)}
    rows = {row["ratio"]: row for row in bench_report.ratio_rows(report)}
    p50 = rows["GCMA p50 / carve-out p50"]
    assert (p50["idle"], p50["writeback"], p50["verdict"]) == ("1.1 (met)", "1.0 (met)", "met")
    tail = rows["GCMA max / carve-out max"]
    assert (tail["idle"], tail["writeback"], tail["verdict"]) == (
        "1.2 (not met)", "1.5 (not met)", "not met")
    assert rows["GCMA success"]["writeback"] == "100 %"
    assert rows["GCMA success"]["verdict"] == "met"
    # Plain CMA's area: all free at idle (not pressed), 20 % free under writeback.
    free = rows["CMA area free at start"]
    assert (free["idle"], free["writeback"]) == ("100 % (not pressed)", "20 %")
    struggles = rows["CMA struggles"]
    assert (struggles["idle"], struggles["writeback"]) == ("no", "fails 50 %")
    assert struggles["verdict"] == "not met"  # one condition of the two needed
    assert rows["cma-guarantee p50 / GCMA p50"]["idle"] == "-"  # not measured


def test_occupancy_rows_name_what_filled_cma() -> None:
    m = _matrix(cma_ok=1)
    rows = bench_report.occupancy_rows({"matrix": m, "ratios": matrix.ratios(m)})
    wb = next(r for r in rows if r["condition"] == "writeback")
    assert (wb["area"], wb["free"], wb["anon"], wb["file"]) == ("cma", "20 %", "40 %", "40 %")
    assert (wb["dirty"], wb["writeback"], wb["CMA fails"], wb["migrate fails"]) == (
        "3", "2", "16", "7")


def test_a_failed_gcma_allocation_fails_the_check() -> None:
    m = _matrix()
    matrix.check(m)
    m["cells"]["writeback"]["gcma"] = _cell(1, 2, [1000])
    with pytest.raises(CheckFailed, match="gcma under writeback: 1/2"):
        matrix.check(m)


def test_cell_scenario_is_one_allocation_at_a_time() -> None:
    argv = matrix.cell_scenario("16M", 20).driver_args("camera", "/tmp/x.jsonl")
    assert argv == ["heap_stress", "-H", "camera", "-s", "16M", "-b", "1", "-i", "0",
                    "-h", "0", "-t", "1", "-n", "20", "-o", "/tmp/x.jsonl"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_report_files(tmp_path: Path) -> None:
    m = _matrix(cma_ok=0)
    report = {"target": "bench", "variant": "default", "reproducer": "gcma bench --count 2",
              "matrix": m, "ratios": matrix.ratios(m),
              "utility": {"area": "camera", "memory_limit": "48M", "working_set_mib": 250.0,
                          "rounds": 3, "share_samples": [[0.0, 0.5, 0.4], [1.0, 0.7, 0.6]],
                          "timed_from_s": 0.5,
                          "area_share_mean": 0.6, "area_share_max": 0.7, "hit_rate": 0.8,
                          "counters_on": {"stored": 10, "restored": 8, "missed": 2},
                          "pages_donated_while_off": 0, "round_s_on": [1.0],
                          "round_s_off": [2.0], "read_mib_s_on": 250.0,
                          "read_mib_s_off": 125.0, "throughput_on_over_off": 2.0}}
    md = bench_report.write(report, tmp_path)
    assert md == tmp_path / "report.md"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ratios"] == report["ratios"]
    assert set(saved["plots"].values()) == {"latency-cdf.png", "success-rate.png",
                                            "cached-share.png"}
    for name in saved["plots"].values():
        width, height = _png_size(tmp_path / name)
        assert width > 100 and height > 100
    text = md.read_text()
    assert "| writeback | 2/2, 1.0/1.5 | 2/2, 1.0/1.0 | 0/2, -/- | 2/2, 0.8/0.9 |" in text
    assert "p50/max latency in ms" in text and text.count("p99") == 1  # "never called a p99"
    assert "| writeback | cma | 20 % | 40 % | 40 % | 0 % | 3 | 2 | 0 | 40 | 16 | 7 |" in text
    assert "not measured: no heap cma-guarantee" in text
    assert "- `idle`: cma, gcma, carve-out, system" in text
    assert "hit rate (restored / lookups): 80 % (8 / 10)" in text
    table = bench_report.ratio_table(report)
    assert table.splitlines()[0].startswith("2 allocations of 16M per heap and condition "
                                            "(fewer than 100: the tail shown is the slowest")
    assert table.splitlines()[1].split() == ["ratio", "idle", "writeback", "goal", "verdict"]
    assert "x2.0" in table


class _FakeTarget:
    """Answers what run_matrix asks of a target: heaps, the drivers' JSON
    lines (each heap_stress run's -n allocations), cma_occupancy, counters."""

    def __init__(self) -> None:
        self.driver_heaps: list[str] = []
        self.pending = 0
        self.reads = 0  # of the counters: pgmigrate_fail goes up by one each time

    def __call__(self, command: str) -> Any:
        from .fakes import ok
        if command == "ls /dev/dma_heap":
            return ok("camera\nlinux,cma\nsystem\n")
        if command.startswith("heap_stress"):
            argv = command.split()
            self.driver_heaps.append(argv[argv.index("-H") + 1])
            self.pending = int(argv[argv.index("-n") + 1])
            return ok()
        if command.startswith("cat /tmp/stress-"):
            line = json.dumps({"ok": True, "lat_ns": 2_000_000, "zeroed": True,
                               "verified": True, "errno": 0})
            return ok("\n".join([line] * self.pending) + "\n")
        if command == "cma_occupancy":
            return ok("area=linux,cma pages=100 free=90 anon=5 file=5 dirty=0 writeback=0 "
                      "locked=0 unevictable=0 mapped=5 kernel=0\n")
        if "/sys/kernel/mm/cma" in command:
            self.reads += 1
            return ok(f"linux,cma/alloc_pages_fail 0\npgmigrate_fail {self.reads}\n")
        return ok()


def test_columns_take_turns_a_block_at_a_time_in_a_recorded_order() -> None:
    from .fakes import FakeTransport
    fake = _FakeTarget()
    cols = tuple(c for c in matrix.COLUMNS if c.name in ("gcma", "carve-out", "cma"))
    m = matrix.run_matrix(FakeTransport(default=fake), size="1M", count=12, settle_s=0,
                          conditions=(matrix.Condition("idle", ()),), columns=cols)
    assert matrix.blocks(12) == [5, 5, 2]
    order = m["order"]["idle"]
    assert len(order) == 3 and all(sorted(o) == ["carve-out", "cma", "gcma"] for o in order)
    # The drivers ran in that order, block by block (carve-out is camera).
    heap = {"gcma": "camera", "carve-out": "camera", "cma": "linux,cma"}
    assert fake.driver_heaps == [heap[c] for o in order for c in o]
    # Not one column's allocations all first: the order is shuffled.
    assert len({tuple(o) for o in order}) > 1
    for col in ("gcma", "carve-out", "cma"):
        cell = m["cells"]["idle"][col]
        assert cell["summary"]["count"] == 12 and cell["blocks"] == 3
        # One read before and one after each block: one migration failure each.
        assert cell["cma_counters"] == {"linux,cma/alloc_pages_fail": 0, "pgmigrate_fail": 3}
        assert cell["cma_occupancy"]["linux,cma"]["free"] == 90
    # The same seed, the same order: a run can be repeated.
    again = matrix.run_matrix(FakeTransport(default=_FakeTarget()), size="1M", count=12,
                              settle_s=0, conditions=(matrix.Condition("idle", ()),),
                              columns=cols)
    assert again["order"] == m["order"]


def test_ratios_of_several_boots_are_medians_with_their_range() -> None:
    boots = [matrix.ratios(_matrix()), matrix.ratios(_matrix()), matrix.ratios(_matrix(1))]
    boots[1]["idle"]["gcma_over_carveout_p50"] = 1.5
    boots[2]["idle"]["gcma_over_carveout_p50"] = 1.0
    medians, spread = matrix.across_boots(boots)
    assert medians["idle"]["gcma_over_carveout_p50"] == 1.1
    assert spread["idle"]["gcma_over_carveout_p50"] == [1.0, 1.5]
    # One boot where CMA failed: no number, and which side failed.
    assert medians["writeback"]["cma_over_gcma_tail"] is None
    assert medians["writeback"]["cma_over_gcma_tail_na"] == "cma 1/2"
    assert medians["writeback"]["cma_success_pct"] == 50.0
    report = {"matrix": _matrix(), "ratios": medians, "spread": spread,
              "boot_ratios": boots}
    rows = {row["ratio"]: row for row in bench_report.ratio_rows(report)}
    assert rows["GCMA p50 / carve-out p50"]["idle"] == "1.1 [1-1.5] (met)"
    assert "ratios are medians of 3 boots" in bench_report.ratio_table(report)
