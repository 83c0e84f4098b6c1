"""The kernel's KUnit suites for cleancache and GCMA, on their own boot."""

from __future__ import annotations

import os

from gcma import kunit


def test_cleancache_and_gcma_suites_pass(built: None, variant: str) -> None:
    report = kunit.run(f"pytest-{os.getpid()}-kunit-{variant}",
                       variant=variant)  # raises on any failure
    suites = {s.name: s for s in report.suites}
    assert {"cleancache", "gcma"} <= set(suites)
    for name in ("cleancache", "gcma"):
        suite = suites[name]
        assert suite.status == "pass"
        assert suite.planned == len(suite.cases) >= 6
        assert all(c.status == "pass" for c in suite.cases)
    totals = report.totals()
    assert totals["fail"] == 0 and totals["skip"] == 0
