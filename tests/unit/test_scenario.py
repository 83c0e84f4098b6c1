"""Stress scenarios: the shipped files, every validation error (file, line and
field named), heap_stress's command line, and the summary of its lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcma import cli
from gcma.checks import scenario, stress
from gcma.errors import TargetError

GOOD = """\
name: {name}
description: a test scenario
sizes: [4M, 8M]
buffers_per_burst: 3
frame_interval_ms: 33
hold_ms: 20
threads: 2
bursts: 5
"""


def _write(tmp_path: Path, text: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_shipped_scenarios_load_and_cover_the_camera_cases() -> None:
    names = scenario.available()
    assert {"camera-preview", "camera-burst", "face-unlock", "concurrent"} <= set(names)
    for name in names:
        sc = scenario.find(name)
        assert sc.name == name and sc.description
        assert all(scenario.size_bytes(s) >= 4096 for s in sc.sizes)


def test_driver_args_follow_the_scenario(tmp_path: Path) -> None:
    sc = scenario.load(_write(tmp_path, GOOD.format(name="s")))
    assert sc.driver_args("camera", "/tmp/o.jsonl") == [
        "heap_stress", "-H", "camera", "-s", "4M,8M", "-b", "3", "-i", "33", "-h", "20",
        "-t", "2", "-n", "5", "-o", "/tmp/o.jsonl"]
    # A length given on the command line replaces the bursts.
    assert sc.driver_args("camera", "/o", duration_s=2.5)[-4:] == ["-d", "2500", "-o", "/o"]
    timed = scenario.load(_write(tmp_path, GOOD.format(name="t").replace(
        "bursts: 5", "duration_s: 1.5"), "t"))
    assert timed.driver_args("video", "/o")[-4:] == ["-d", "1500", "-o", "/o"]


@pytest.mark.parametrize(("change", "message"), [
    (("threads: 2", "threads: 2\ncolour: red"), ":8: colour: unknown field"),
    (("threads: 2", "threads: 2\nthreads: 3"), ":8: threads: given twice"),
    (("description: a test scenario\n", ""), ":1: description: missing"),
    (("sizes: [4M, 8M]", "sizes: [4M, 8X]"), ":3: sizes: '8X' is not a size"),
    (("sizes: [4M, 8M]", "sizes: [4M, 0]"), ":3: sizes: '0' is not a size"),
    (("sizes: [4M, 8M]", "sizes: []"), ":3: sizes: expected a list of sizes"),
    (("sizes: [4M, 8M]", "sizes: 4M"), ":3: sizes: expected a list of sizes"),
    (("threads: 2", "threads: two"), ":7: threads: expected a whole number, got 'two'"),
    (("threads: 2", "threads: 65"), ":7: threads: 65 is not between 1 and 64"),
    (("buffers_per_burst: 3", "buffers_per_burst: 0"),
     ":4: buffers_per_burst: 0 is not between 1 and 256"),
    (("hold_ms: 20", "hold_ms: 1.5"), ":6: hold_ms: expected a whole number, got '1.5'"),
    (("bursts: 5", "bursts: 5\nduration_s: 3"), ":1: duration_s, bursts: give exactly one"),
    (("bursts: 5", ""), ":1: duration_s, bursts: give exactly one"),
    (("bursts: 5", "duration_s: -1"), ":8: duration_s: -1 is not between 0 and 86400"),
    (("bursts: 5", "duration_s: soon"), ":8: duration_s: expected seconds"),
    (("name: s", "name: other"), ":1: name: 'other' must match the file name 's'"),
    (("description: a test scenario", "description: ''"),
     ":2: description: expected a non-empty string"),
    (("sizes: [4M, 8M]", "sizes: [4M, 8M"), ": not valid YAML"),
])
def test_each_mistake_names_file_line_and_field(tmp_path: Path, change: tuple[str, str],
                                                message: str) -> None:
    path = _write(tmp_path, GOOD.format(name="s").replace(*change))
    with pytest.raises(scenario.ScenarioError) as exc:
        scenario.load(path)
    assert str(exc.value).startswith(str(path))
    assert message in str(exc.value)


def test_a_file_that_is_not_a_mapping_or_is_missing(tmp_path: Path) -> None:
    with pytest.raises(scenario.ScenarioError, match=r"s\.yaml:1: expected a mapping"):
        scenario.load(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(scenario.ScenarioError, match="No such file"):
        scenario.find(str(tmp_path / "gone.yaml"))
    with pytest.raises(scenario.ScenarioError, match=r"no scenario 'nope' \(known: camera-burst"):
        scenario.find("nope")


def test_cli_reports_a_bad_scenario_in_one_line_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, GOOD.format(name="s").replace("threads: 2", "threads: x"))
    assert cli.main(["stress", "run", str(path), "--heap", "camera"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:7: threads: expected a whole number" in err[0]
    assert cli.main(["stress", "list"]) == 0
    assert "camera-burst" in capsys.readouterr().out


def test_cli_rejects_a_bad_length(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["stress", "run", "camera-burst", "--heap", "camera", "--seconds", "0"])
    assert exc.value.code == 2
    assert "not a number of seconds" in capsys.readouterr().err


def _row(ok: bool = True, lat_ns: int = 1000, errno: int = 0, zeroed: bool | None = True,
         verified: bool | None = True) -> dict[str, object]:
    return {"thread": 0, "burst": 0, "index": 0, "size": 4096, "lat_ns": lat_ns, "ok": ok,
            "errno": errno, "zeroed": zeroed, "verified": verified}


def test_summary_counts_failures_and_bad_data() -> None:
    rows = [_row(lat_ns=n * 1000) for n in range(1, 101)]
    rows += [_row(ok=False, errno=12, zeroed=None, verified=None),
             _row(lat_ns=5000, zeroed=False), _row(lat_ns=6000, verified=False)]
    s = stress.summarize(rows)
    assert s["count"] == 103 and s["ok"] == 102
    assert s["success_pct"] == 99.0
    assert s["errnos"] == {"12": 1}
    assert s["not_zeroed"] == 1 and s["pattern_mismatches"] == 1
    # Nearest rank, over the allocations that succeeded only.
    s = stress.summarize(rows[:100] + rows[100:101])
    assert (s["p50_us"], s["p99_us"], s["max_us"]) == (50, 99, 100)
    assert "p50_us" not in stress.summarize([_row(ok=False, errno=12)])


def test_a_torn_line_is_an_infrastructure_error() -> None:
    good = json.dumps(_row())
    assert len(stress.parse_lines(f"{good}\n{good}\n")) == 2
    with pytest.raises(TargetError, match="line 2 is not JSON"):
        stress.parse_lines(good + "\n" + good[:20] + "\n")


def test_pressures_parse_in_order_once_each_and_all() -> None:
    from gcma.checks import pressure
    from gcma.errors import UserError

    assert [p.name for p in pressure.parse(["anon,pinned", "anon", "pagecache"])] == [
        "anon", "pinned", "pagecache"]
    assert [p.name for p in pressure.parse(["pinned", "all"])] == [
        "pinned", "pagecache", "anon", "writeback", "frag"]
    assert pressure.parse([]) == []
    with pytest.raises(UserError, match="unknown pressure 'swim'"):
        pressure.parse(["anon,swim"])
    for p in pressure.PRESSURES.values():
        assert p.argv[0] == "pressure" and p.mode in {"stream", "anon", "pin", "dirty", "frag"}
