"""``gcma bench`` on the emulated target: the whole matrix in one boot, short,
with the report files it promises. Timing goals are not asserted here (they
are the benchmark's output); what must hold whatever the timing is."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from gcma import cli
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
