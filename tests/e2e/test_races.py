"""Cleancache against writes, truncation and direct I/O: the on-target race
programs of ``cc_race`` (device_tests/cc_race.c), each a regression test of
a lost write or a stale read that the first cleancache series allowed."""

from __future__ import annotations

import pytest

from gcma.report import parse_kv

from .conftest import Target

#: The races need stores on demand: fadvise evicts pages written or read once.
pytestmark = pytest.mark.usefixtures("admit_all")

#: (test, directory, iterations). /data1k has 1 KiB blocks: a block-sized
#: write leaves a folio partly uptodate, which a restore must never fill.
RACES = (
    ("subpage", "/data1k", 400),
    ("trunc", "/data", 10_000),
    ("dio", "/data", 10_000),
    # 4 KiB blocks: a hole punched inside one is zeroed through a folio
    # that no read made, and which no copy may fill later.
    ("punch", "/data", 10_000),
)


def _stored(target: Target) -> int:
    return int(target.shell.check("cat /sys/kernel/mm/cleancache/stored"))


@pytest.mark.parametrize(("name", "where", "iterations"), RACES,
                         ids=[r[0] for r in RACES])
def test_race(target: Target, name: str, where: str, iterations: int) -> None:
    stored = _stored(target)
    res = target.shell.run(f"cc_race {name} {where} {iterations}", timeout=1200)
    lines = [line for line in res.stdout.splitlines() if line.startswith("test=")]
    assert lines, f"cc_race {name} gave no summary: {res.stdout[-800:]}{res.stderr[-800:]}"
    summary = parse_kv(lines[-1])
    assert summary["iterations"] == str(iterations)
    assert summary["failures"] == "0", res.stderr[-800:]
    assert summary["mismatches"] == "0", res.stdout[-2000:]
    assert res.ok
    # The evictions went through cleancache, or the test proved nothing.
    assert _stored(target) > stored


def test_hwpoisoned_page_is_not_stored(target: Target) -> None:
    """A memory error on a clean, mapped erofs page: memory failure evicts
    it, and cleancache must not copy the poisoned page."""
    res = target.shell.run("cc_hwpoison /erofs/file005.bin 3")
    assert res.ok, res.stdout + res.stderr
    counts = parse_kv(res.stdout)
    assert counts["stored_delta"] == "0", counts
    assert int(counts["skipped_delta"]) >= 1, counts
