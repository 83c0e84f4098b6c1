"""Bench timing is the target's own: a round trip to the target (ssh setup,
here a simulated 0.3 s) is never inside a timed interval."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gcma.checks import bench
from gcma.targets.transport import CommandResult, Transport

#: What each command costs before it runs, like an ssh session's setup.
ROUND_TRIP_S = 0.3


class SlowLocalShell(Transport):
    """Runs commands in a local shell (its /proc/uptime is the clock), each
    after a delay that a timed interval must not contain."""

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        time.sleep(ROUND_TRIP_S)
        res = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                             timeout=self._timeout(timeout))
        return CommandResult(command, res.returncode, res.stdout, res.stderr)

    def push(self, local: Path, remote: str, mode: int | None = None) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_timed_passes_time_the_command_on_the_target_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.integrity, "counters",
                        lambda t, names: {n: 0 for n in names})
    result = bench.timed_passes(SlowLocalShell(), "sleep 0.2", passes=3, warm_up=True)
    assert len(result.rounds_s) == 3
    # 0.2 s of work, measured at 10 ms resolution; a round trip would add 0.3.
    assert all(0.15 <= r < 0.2 + ROUND_TRIP_S / 2 for r in result.rounds_s), result.rounds_s


def test_timed_returns_what_the_target_measured() -> None:
    assert 0.05 <= bench.timed(SlowLocalShell(), "sleep 0.1") < 0.1 + ROUND_TRIP_S / 2
