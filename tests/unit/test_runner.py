import time
from pathlib import Path

import pytest

from gcma import runner
from gcma.errors import CommandFailed, CommandTimedOut, InfraError
from gcma.targets.emulated import process_alive


def test_format_command_reproduces_quoting() -> None:
    line = runner.format_command(["make", "CC=ccache gcc", "it's"], Path("/tmp/a b"),
                                 {"ARCH": "arm64"})
    assert line == "cd '/tmp/a b' && ARCH=arm64 make 'CC=ccache gcc' 'it'\"'\"'s'"


def test_failure_carries_log_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with pytest.raises(CommandFailed) as info:
        runner.run(["sh", "-c", "echo first; echo boom >&2; exit 7"], log=log)
    assert info.value.returncode == 7
    assert info.value.exit_code == 3
    assert "boom" in str(info.value) and str(log) in str(info.value)
    text = log.read_text()
    assert text.startswith("+ sh -c 'echo first; echo boom >&2; exit 7'\n")
    assert "first\nboom\n" in text


def test_capture_and_history() -> None:
    res = runner.run(["printf", "a\\nb\\n"], capture=True)
    assert res.output == "a\nb\n"
    assert runner.history[-1] == "printf 'a\\nb\\n'"


def test_missing_command_is_infra_error() -> None:
    with pytest.raises(InfraError, match="no-such-tool-xyz: command not found"):
        runner.run(["no-such-tool-xyz"])


def test_timeout_kills_the_whole_group_and_names_the_step(tmp_path: Path) -> None:
    """A hung step ends at its timeout, with the step and command named, and
    the children the command started (a background sleep here) die with it."""
    log = tmp_path / "hang.log"
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(CommandTimedOut) as info:
        runner.run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"],
                   log=log, progress="hung-step", timeout=1.5)
    assert time.monotonic() - start < 15
    assert info.value.exit_code == 3
    msg = str(info.value)
    assert msg.startswith("hung-step timed out after 2 s") or \
        msg.startswith("hung-step timed out after 1 s"), msg
    assert "sh -c" in msg and "started" in msg and str(log) in msg
    child = int(pidfile.read_text())
    for _ in range(50):
        if not process_alive(child):
            break
        time.sleep(0.1)
    assert not process_alive(child)


def test_quick_command_is_not_touched_by_its_timeout() -> None:
    assert runner.run(["sh", "-c", "echo ok"], capture=True, timeout=5).output == "ok\n"


def test_query_timeout_is_infra_error() -> None:
    with pytest.raises(CommandTimedOut, match="sleep timed out after 1 s"):
        runner.output(["sleep", "30"], timeout=1)
