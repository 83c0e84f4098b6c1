"""The kernel's KUnit suites for cleancache and GCMA, on their own boot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gcma import paths
from gcma.build import kernel
from gcma.checks import ktap, kunit


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
    # They ran beside the guaranteed CMA area's pool, not alone.
    record = json.loads((paths.out_dir() / "report" / f"kunit-{variant}.json").read_text())
    assert "cma-guarantee" in record["other_pools"]


def _kernel_parser_view(tree: Path, text: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(suite, status, [(case, status)]) as the kernel's own kunit_parser.py
    reads ``text``, run from the unpacked tree in a child Python."""
    script = """
import sys
sys.path.insert(0, sys.argv[1])
import kunit_parser
test = kunit_parser.parse_run_tests(open(sys.argv[2]).read().splitlines())
names = {"SUCCESS": "pass", "FAILURE": "fail", "SKIPPED": "skip"}
for suite in test.subtests:
    print("@@S", suite.name, names.get(suite.status.name, suite.status.name))
    for case in suite.subtests:
        print("@@C", case.name, names.get(case.status.name, case.status.name))
"""
    out: list[tuple[str, str, list[tuple[str, str]]]] = []
    res = subprocess.run([sys.executable, "-c", script, str(tree / "tools/testing/kunit"),
                          str(FIXTURE)], capture_output=True, text=True, check=True)
    # The parser prints its own progress on stdout: keep only our lines.
    for line in res.stdout.splitlines():
        if not line.startswith("@@"):
            continue
        kind, rest = line[2:].split(" ", 1)
        name, status = rest.rsplit(" ", 1)
        if kind == "S":
            out.append((name, status, []))
        elif kind == "C" and out:
            out[-1][2].append((name, status))
    return out


FIXTURE = paths.PROJECT / "tests" / "fixtures" / "ktap" / "params-caller.log"


def test_ktap_reading_matches_the_kernels_parser(built: None) -> None:
    """Our KTAP reader and tools/testing/kunit/kunit_parser.py agree on every
    suite and case of a console log with parameterized cases and
    PRINTK_CALLER prefixes."""
    tree = kernel.find_tree(kernel.kernel_paths())
    assert tree is not None
    text = FIXTURE.read_text()
    ours = [(s.name, s.status, [(c.name, c.status) for c in s.cases])
            for s in ktap.parse(text).suites]
    assert ours == _kernel_parser_view(tree, text)
