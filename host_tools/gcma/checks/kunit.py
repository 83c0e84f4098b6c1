"""Run the kernel's built-in KUnit suites on the emulated target.

They are built in with CONFIG_KUNIT_DEFAULT_ENABLED off, so an ordinary
boot skips them; a boot with ``kunit.enable=1`` runs them before init, and
their KTAP lands on the console.
"""

from __future__ import annotations

import json
import re

from gcma import paths, runner
from gcma.build import dt, kernel
from gcma.checks import klog, ktap
from gcma.errors import CheckFailed, GcmaError
from gcma.targets.emulated import Artefacts, EmulatedTarget

# GCMA's line for an area it lends to cleancache.
_LENT = re.compile(r"gcma: (\S+): \d+ pages at pfn \S+ lent to cleancache")


def run(name: str = "kunit", timeout: float = 600.0, filter_glob: str = "",
        variant: str = kernel.DEFAULT_VARIANT) -> ktap.Report:
    target = EmulatedTarget(name)
    cmdline = "kunit.enable=1" + (f" kunit.filter_glob={filter_glob}" if filter_glob else "")
    boot_error: GcmaError | None = None
    try:
        # The default DTB: its guaranteed CMA area is a GCMA pool from
        # boot on, and the suites keep pools of their own beside it.
        target.start(Artefacts.default(variant, dt.DEFAULT_DTB), timeout=timeout,
                     extra_cmdline=cmdline).close()
    except GcmaError as exc:
        # A crash or a hang in a suite: the report says what ran before it.
        boot_error = exc
    finally:
        console = target.console.read_text(errors="replace") if target.console.exists() else ""
        target.stop()
    report = ktap.parse(console)
    crashes = klog.scan(console)
    # Pools lent before the suites began, beside which they ran.
    before = console.split("KTAP version", 1)[0]
    pools = sorted({m.group(1) for m in _LENT.finditer(before)})
    out = paths.out_dir() / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kunit-{variant}.json").write_text(json.dumps(
        {"totals": report.totals(), "problems": report.problems(),
         "boot_error": str(boot_error) if boot_error else None,
         "other_pools": pools,
         "kernel_log_findings": [f"{f.kind}: {f.line}" for f in crashes],
         "suites": [{"name": s.name, "status": s.status, "planned": s.planned,
                     "cases": [c.__dict__ for c in s.cases]} for s in report.suites]},
        indent=2) + "\n")
    t = report.totals()
    runner.info(f"kunit: {t['suites']} suites, {t['cases']} cases: {t['pass']} passed, "
                f"{t['fail']} failed, {t['skip']} skipped")
    if boot_error:
        raise boot_error
    problems = report.problems() + [f"kernel log: {f.kind}: {f.line}" for f in crashes]
    if problems or not report.ok:
        raise CheckFailed("KUnit: " + "; ".join(problems or ["not ok"]))
    return report
