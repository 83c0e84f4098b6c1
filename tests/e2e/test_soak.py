"""gcma soak, short: scenarios and a fuzz burst under every pressure, then
no error, no kernel report, no drift, and every area empty."""

from __future__ import annotations

import os

import pytest

from gcma.build import dt
from gcma.checks import fuzz, soak
from gcma.targets.emulated import Artefacts, EmulatedTarget

pytestmark = pytest.mark.e2e


def test_a_short_soak_is_clean(built: None) -> None:
    emu = EmulatedTarget(f"pytest-{os.getpid()}-soak")
    rounds: list[soak.Round] = []
    with emu.start(Artefacts.default("default", dt.DEFAULT_DTB), timeout=300) as t:
        try:
            report = soak.run(t, minutes=1.5, round_s=20, seed=11, progress=rounds.append)
            assert not report.errors and not report.kernel_reports
            assert [r.work.split()[0] for r in report.rounds[:3]] == \
                ["scenario", "scenario", "heap_fuzz"]
            assert all(r.allocations > 0 and not r.errors for r in report.rounds)
            assert rounds == report.rounds  # progress saw each round
            # Nothing failed on a GCMA heap, whatever the pressure.
            assert sum(r.failed_allocations for r in report.rounds) == 0
            assert set(report.pressures) == {"pagecache", "anon", "pinned", "writeback",
                                             "frag"}
            assert abs(report.drift_kib["SUnreclaim"]) < soak.DRIFT_LIMIT_KIB
            assert fuzz.settle(t, wait_s=0) == []
        finally:
            emu.stop()
