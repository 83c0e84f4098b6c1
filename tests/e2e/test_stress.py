"""Stress scenarios (device_tests/scenarios/) through heap_stress on the
emulated target: a short run of each on our camera heap, and the whole
``gcma stress run`` command with its report."""

from __future__ import annotations

import json
import os

import pytest

from gcma import cli, paths, scenario, stress

from .conftest import Target, pool_stat

PAGES = 128 * (1 << 20) // 4096


@pytest.mark.parametrize("name", scenario.available())
def test_each_scenario_runs_short_with_every_allocation_good(target: Target, name: str) -> None:
    sc = scenario.find(name)
    report = stress.run(target.shell, sc, "camera", duration_s=2)
    s = report["summary"]
    assert s["count"] >= 1
    assert s["ok"] == s["count"] and s["success_pct"] == 100.0, s["errnos"]
    assert s["not_zeroed"] == 0 and s["pattern_mismatches"] == 0
    assert s["p50_us"] <= s["p99_us"] <= s["max_us"]
    threads = {r["thread"] for r in report["allocations"]}
    assert threads == set(range(sc.threads))
    assert {r["size"] for r in report["allocations"]} <= {scenario.size_bytes(x)
                                                         for x in sc.sizes}
    assert pool_stat(target, "camera", "donated") == PAGES


def test_gcma_stress_run_writes_its_report(built: None, variant: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    name = f"pytest-{os.getpid()}-stress-{variant}"
    assert cli.main(["stress", "run", "face-unlock", "--heap", "camera",
                     "--variant", variant, "--name", name]) == 0
    out = capsys.readouterr().out
    assert "face-unlock on camera: 1/1 allocations (100.0%)" in out
    report = json.loads((paths.out_dir() / "report" /
                         f"stress-face-unlock-camera-{variant}.json").read_text())
    assert report["on_target_command"].startswith("heap_stress -H camera -s 32M")
    assert report["summary"]["ok"] == 1 and len(report["allocations"]) == 1
    # A heap the target does not have: a user error, not a traceback.
    assert cli.main(["stress", "run", "face-unlock", "--heap", "nope",
                     "--variant", variant, "--name", name]) == 2
    assert "no heap 'nope' on the target" in capsys.readouterr().err
