"""Randomized abuse: heap_fuzz on each kernel variant, then the areas must be
empty and the kernel log clean; its seeds replay; its detectors fire."""

from __future__ import annotations

import os
import time

import pytest

from gcma.build import dt
from gcma.checks import fuzz
from gcma.errors import CheckFailed
from gcma.targets.emulated import Artefacts, EmulatedTarget

from .conftest import Target

pytestmark = pytest.mark.e2e


def test_a_short_fuzz_run_leaves_every_area_empty(target: Target) -> None:
    report = fuzz.run(target.shell, list(fuzz.DEFAULT_HEAPS), seed=20261127, seconds=20)
    assert report.ok, report.failures
    assert report.steps > 1000
    # Every kind of operation ran, the hostile ones included.
    assert set(report.ops) == {"alloc", "bad_alloc", "mmap", "bad_mmap", "munmap", "sync",
                               "bad_sync", "write", "check", "close", "dup", "fork", "send",
                               "kill"}
    assert all(n > 0 for n in report.ops.values()), report.ops
    for area, state in report.areas.items():
        assert state["used_kib"] == 0 and state["pending_pages"] == 0, area
        assert state["donated"] * 4 == state["total_kib"], area


def test_a_worker_replays_exactly(target: Target) -> None:
    command = "heap_fuzz -s 99 -w 3 -n 400 camera video | grep ^workers="
    first = target.shell.check(command, timeout=300)
    assert first == target.shell.check(command, timeout=300)
    assert "result=ok" in first


def test_a_kernel_report_during_the_run_is_caught(built: None) -> None:
    """The detector can fail: a report written to the kernel log mid-run
    stops heap_fuzz with the step it came in, and fails the host check.
    (Its own target: the report would fail any test of the shared one.)"""
    emu = EmulatedTarget(f"pytest-{os.getpid()}-fuzzdetect")
    with emu.start(Artefacts.default("default", dt.DEFAULT_DTB), timeout=300) as t:
        try:
            t.check("(sleep 3; echo 'BUG: planted by the fuzz test' > /dev/kmsg) "
                    ">/dev/null 2>&1 &")
            t0 = time.monotonic()
            with pytest.raises(CheckFailed) as err:
                fuzz.run(t, ["camera"], seed=3, seconds=60)
            assert time.monotonic() - t0 < 45  # stopped at the report, not at the end
            message = str(err.value)
            assert "kernel report: BUG: planted by the fuzz test" in message
            assert "replay: heap_fuzz -s 3 -w " in message
            report = err.value.report
            assert report is not None and report["kernel_reports"]
        finally:
            emu.stop()
