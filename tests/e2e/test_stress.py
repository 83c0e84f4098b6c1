"""Stress scenarios (device_tests/scenarios/) through heap_stress on the
emulated target: a short run of each on our camera heap, and the whole
``gcma stress run`` command with its report."""

from __future__ import annotations

import json
import os

import pytest

from gcma import cli, paths
from gcma.checks import pressure, scenario, stress
from gcma.errors import TargetError

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


@pytest.mark.parametrize("load", list(pressure.PRESSURES))
@pytest.mark.parametrize("name", scenario.available())
def test_each_scenario_under_each_pressure(target: Target, name: str, load: str) -> None:
    """A short run; our heap must serve every allocation whatever the load."""
    report = stress.run(target.shell, scenario.find(name), "camera", duration_s=1,
                        pressures=[pressure.PRESSURES[load]], settle_s=1)
    s = report["summary"]
    assert s["count"] >= 1 and s["success_pct"] == 100.0, s["errnos"]
    assert s["not_zeroed"] == 0 and s["pattern_mismatches"] == 0
    ran = report["pressures"][load]
    assert ran["ready"] and ran["stopped"], ran  # it was up, and it stopped cleanly
    # Nothing is left behind: no generator, every page of the area lent again.
    assert target.shell.run("pidof pressure").exit_status == 1
    assert pool_stat(target, "camera", "donated") == PAGES


def test_under_all_pressures_camera_keeps_its_guarantee_and_cma_is_reported(
        target: Target) -> None:
    sc = scenario.find("camera-burst")
    loads = pressure.parse(["all"])
    ours = stress.run(target.shell, sc, "camera", duration_s=3, pressures=loads, settle_s=3)
    assert ours["summary"]["success_pct"] == 100.0
    assert set(ours["pressures"]) == set(pressure.PRESSURES)
    # Plain CMA under the same load: its rate is a result, not a failure;
    # its buffers that do arrive must still be clean.
    cma = stress.run(target.shell, sc, "linux,cma", duration_s=3, pressures=loads, settle_s=3)
    assert cma["summary"]["count"] >= 1
    assert cma["summary"]["not_zeroed"] == cma["summary"]["pattern_mismatches"] == 0


def test_a_generator_that_cannot_start_fails_the_run_and_leaves_none(target: Target) -> None:
    bad = pressure.Pressure("broken", "dirty pages in a folder that is not there",
                            ("pressure", "dirty", "/no/such/dir", "16"))
    loads = [pressure.PRESSURES["anon"], bad]
    with pytest.raises(TargetError, match=r"pressure broken exited: .*/no/such/dir"):
        stress.run(target.shell, scenario.find("face-unlock"), "camera", pressures=loads)
    assert target.shell.run("pidof pressure").exit_status == 1


def test_pressure_bad_arguments_get_one_line_and_exit_2(target: Target) -> None:
    for command, message in {
        "pressure": "usage: pressure stream FILE MIB",
        "pressure anon": "usage: pressure stream FILE MIB",
        "pressure anon x": "MIB 'x': not a number",
        "pressure pin 0": "PAGES '0': must be from 1 to",
        "pressure swim 1": "usage: pressure stream FILE MIB",
    }.items():
        res = target.shell.run(command, timeout=60)
        assert res.exit_status == 2, command
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (command, res.stderr)


def test_gcma_stress_run_writes_its_report(built: None, variant: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    name = f"pytest-{os.getpid()}-stress-{variant}"
    assert cli.main(["stress", "run", "face-unlock", "--heap", "camera",
                     "--variant", variant, "--name", name]) == 0
    out = capsys.readouterr().out
    assert "face-unlock on camera (idle): 1/1 allocations (100.0%)" in out
    report = json.loads((paths.out_dir() / "report" /
                         f"stress-face-unlock-camera-idle-{variant}.json").read_text())
    assert report["on_target_command"].startswith("heap_stress -H camera -s 32M")
    assert report["summary"]["ok"] == 1 and len(report["allocations"]) == 1
    # A heap the target does not have: a user error, not a traceback.
    assert cli.main(["stress", "run", "face-unlock", "--heap", "nope",
                     "--variant", variant, "--name", name]) == 2
    assert "no heap 'nope' on the target" in capsys.readouterr().err
