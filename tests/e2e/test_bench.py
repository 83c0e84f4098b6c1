"""``gcma bench`` on the emulated target: the whole matrix in one boot, short,
with the report files it promises. Timing goals are not asserted here (they
are the benchmark's output); what must hold whatever the timing is."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from gcma import cli, paths
from gcma.checks import matrix

PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_runs_the_matrix_and_writes_its_report(built: None, variant: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = cli.bench_dir(variant)
    shutil.rmtree(out_dir, ignore_errors=True)
    name = f"pytest-{os.getpid()}-bench-{variant}"
    assert cli.main(["bench", "--variant", variant, "--target", name, "--count", "3",
                     "--settle", "3", "--churn-rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert f"report: {out_dir / 'report.md'}" in out
    # Three allocations a cell: the tail is the slowest, never called a p99.
    assert "GCMA max / carve-out max" in out and "GCMA p99" not in out

    report = json.loads((out_dir / "report.json").read_text())
    m = report["matrix"]
    assert [c["name"] for c in m["columns"]] == [c.name for c in matrix.COLUMNS]
    assert list(m["cells"]) == [c.name for c in matrix.CONDITIONS]
    for cond, row in m["cells"].items():
        for col, cell in row.items():
            s = cell["summary"]
            assert s["count"] == 3 and s["not_zeroed"] == 0 and s["pattern_mismatches"] == 0
            # What occupied each CMA area as the cell started, page by page.
            occ = cell["cma_occupancy"]["linux,cma"]
            assert occ["pages"] == 128 * 256
            assert sum(occ[k] for k in ("free", "anon", "file", "kernel")) <= occ["pages"]
            assert "pgmigrate_fail" in cell["cma_counters"]
            if col in ("gcma", "carve-out"):
                assert s["ok"] == 3, (cond, col, s)
                assert len(cell["lat_us"]) == 3 and min(cell["lat_us"]) > 0
    # Each condition's generators were ready before its cells ran.
    assert set(m["generators"]["all"]) == {"pagecache", "anon", "pinned", "writeback", "frag"}
    assert all(g["ready"] for g in m["generators"]["all"].values())
    assert report["ratios"]["idle"]["gcma_over_carveout_p50"] > 0

    u = report["utility"]
    assert u["counters_on"]["stored"] > 0 and u["share_samples"]
    assert 0 < u["area_share_max"] <= 1 and 0 <= u["hit_rate"] <= 1
    assert u["pages_donated_while_off"] == 0
    assert u["read_mib_s_on"] > 0 and u["read_mib_s_off"] > 0

    for png in report["plots"].values():
        data = (out_dir / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, png
    assert set(report["plots"].values()) == {"latency-cdf.png", "success-rate.png",
                                             "cached-share.png"}
    md = (out_dir / "report.md").read_text()
    assert "## Ratios and goals" in md and "latency-cdf.png" in md
    assert "## What occupied CMA" in md and report["reproducer"] in md


# Each documented action, end to end and short, on the default kernel; the
# options given before the action must hold (they once were dropped).
ACTIONS = [
    (["--count", "3", "--size", "4M", "heaps"], "bench-heaps",
     lambda r: r["size"] == "4M" and r["count"] == 3 and r["tail"] == "max"
     and all(row["idle"]["ok"] == 3 for name, row in r["heaps"].items() if name == "camera")),
    (["--count", "10", "free-stall"], "bench-free-stall",
     lambda r: r["count"] == 10 and r["tail"] == "max" and r["idle_tail_us"] > 0
     and r["freeing_tail_us"] > 0),
    (["cost", "--rounds", "1", "--alloc-size", "16M", "--allocs", "3"], "bench-cost",
     lambda r: r["alloc"]["count"] == 3 and r["read"]["no_pool_s"][0] > 0
     and r["read"]["pools_s"][0] > 0),
    (["stream", "--size-mib", "64", "--passes", "1"], "bench-stream",
     lambda r: r["size_mib"] == 64 and r["no_pool_s"][0] > 0
     and r["admit_all_counters"]["stored"] >= 0),
]


@pytest.mark.parametrize(("argv", "report", "holds"), ACTIONS,
                         ids=[a[1] for a in ACTIONS])
def test_bench_action_runs_end_to_end(built: None, argv: list[str], report: str,
                                      holds: Callable[[dict[str, Any]], bool],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = paths.out_dir() / "report" / f"{report}-default.json"
    out.unlink(missing_ok=True)
    name = f"pytest-{os.getpid()}-{report}"
    assert cli.main(["bench", "--target", name, *argv]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert holds(data), data
