from gcma import paths
from gcma.checks import ktap

GOOD = """\
[    1.000000] KTAP version 1
[    1.000001] 1..2
[    1.000002]     KTAP version 1
[    1.000003]     # Subtest: cleancache
[    1.000004]     # module: cleancache_kunit
[    1.000005]     1..2
[    1.000006]     ok 1 cc_test_store_restore
[    1.000007]     ok 2 cc_test_lru_reuse
[    1.000008] # cleancache: pass:2 fail:0 skip:0 total:2
[    1.000009] ok 1 cleancache
[    1.000010]     KTAP version 1
[    1.000011]     # Subtest: gcma
[    1.000012]     1..1
[    1.000013]     ok 1 gcma_test_register
[    1.000014] ok 2 gcma
"""


def test_all_passing() -> None:
    report = ktap.parse(GOOD)
    assert report.ok
    assert [s.name for s in report.suites] == ["cleancache", "gcma"]
    assert report.totals() == {"suites": 2, "cases": 3, "pass": 3, "fail": 0, "skip": 0}
    assert report.problems() == []


def test_failure_and_skip_are_not_ok() -> None:
    text = GOOD.replace("    ok 2 cc_test_lru_reuse", "    not ok 2 cc_test_lru_reuse") \
               .replace("ok 1 gcma_test_register", "ok 1 gcma_test_register # SKIP no area")
    report = ktap.parse(text)
    assert not report.ok
    assert report.totals()["fail"] == 1 and report.totals()["skip"] == 1
    assert "cleancache.cc_test_lru_reuse: fail" in report.problems()
    assert "gcma.gcma_test_register: skip no area" in report.problems()


def test_crash_mid_suite_is_caught_by_the_plan() -> None:
    cut = GOOD.split("[    1.000007]")[0]
    report = ktap.parse(cut)
    assert not report.ok
    assert "2 suites planned, 0 reported" in report.problems()


def test_no_output() -> None:
    report = ktap.parse("[    0.1] Booting Linux\n")
    assert not report.ok
    assert report.problems() == ["no KTAP output"]


PARAMS = (paths.PROJECT / "tests" / "fixtures" / "ktap" / "params-caller.log").read_text()


def test_parameterized_cases_and_printk_caller_prefix() -> None:
    """A parameterized case nests its parameters one level deeper and counts
    as one case; lines carry CONFIG_PRINTK_CALLER's "[    T1]" too."""
    report = ktap.parse(PARAMS)
    assert report.planned_suites == 2
    assert [(s.name, s.planned, s.status) for s in report.suites] == \
        [("cleancache", 3, "pass"), ("gcma", 2, "fail")]
    assert [(c.name, c.status) for c in report.suites[0].cases] == [
        ("cc_test_store_restore", "pass"), ("cc_test_orders", "pass"),
        ("cc_test_invalidate", "pass")]
    assert [(c.name, c.status) for c in report.suites[1].cases] == [
        ("gcma_test_register", "pass"), ("gcma_test_sizes", "fail")]
    assert report.problems() == ["gcma.gcma_test_sizes: fail"]
    # Without the failure, the report is ok: no "None cases planned".
    passing = PARAMS.replace("not ok 2 32 pages", "ok 2 32 pages") \
        .replace("not ok 2 gcma_test_sizes", "ok 2 gcma_test_sizes") \
        .replace("not ok 2 gcma", "ok 2 gcma")
    assert ktap.parse(passing).ok, ktap.parse(passing).problems()
