from pathlib import Path

import pytest

from gcma import runner
from gcma.errors import CommandFailed, InfraError


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
