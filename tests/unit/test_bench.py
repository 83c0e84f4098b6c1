"""bench's parsing of heap_alloc, against a scripted target."""

from __future__ import annotations

import pytest

from gcma.checks import bench
from gcma.errors import CheckFailed
from gcma.targets.transport import CommandResult

from .fakes import FakeTransport


def _result(stdout: str, status: int) -> CommandResult:
    return CommandResult("heap_alloc", status, stdout, "")


def test_failed_allocations_are_counted_not_raised() -> None:
    """heap_alloc exits 1 when an allocation failed; a benchmark counts it."""
    line = ("heap=linux,cma size=33554432 count=20 ok=18 alloc_fail=2 map_fail=0 "
            "not_zero=0 bad_data=0 p50_us=19967 p99_us=61143 max_us=61143\n")
    t = FakeTransport(default=_result(line, 1))
    run = bench._alloc_run(t, "linux,cma", "32M", 20)
    assert run == {"ok": 18, "alloc_fail": 2, "p50_us": 19967, "p99_us": 61143,
                   "max_us": 61143}
    assert t.commands == [("heap_alloc -s 32M -n 20 linux,cma", 1800)]


def test_wrong_data_or_no_result_is_a_failed_check() -> None:
    bad = "heap=x size=1 count=1 ok=1 alloc_fail=0 map_fail=0 not_zero=1 bad_data=0\n"
    with pytest.raises(CheckFailed, match="saw wrong data"):
        bench._alloc_run(FakeTransport(default=_result(bad, 1)), "x", "4K", 1)
    with pytest.raises(CheckFailed, match="did not run"):
        bench._alloc_run(FakeTransport(default=_result("", 127)), "x", "4K", 1)
