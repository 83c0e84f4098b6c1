from gcma.checks import klog

BAD = {
    "warning": "[    3.1] WARNING: CPU: 0 PID: 1 at mm/cma.c:106 cma_init_reserved_areas+0x1/0x2",
    "oops": "[    3.2] Internal error: Oops: 0000000096000004 [#1] SMP",
    "panic": "[    3.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
    "bug": "[    2.0] BUG: sleeping function called from invalid context at mm/slab.c:1",
    "paging": "[    1.0] Unable to handle kernel paging request at virtual address dead",
    "lockdep": "[    9.9] WARNING: possible circular locking dependency detected",
    "hung": "[  120.0] INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
    "sanitizer": "[    5.0] UBSAN: shift-out-of-bounds in mm/gcma.c:12:3",
    "bad-page": "[    6.0] BUG: Bad page state in process heap_alloc  pfn:60000",
    "rcu-stall": "[   30.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "list-corruption": "[    7.0] list_add corruption. next->prev should be prev (ffff0001),",
}

#: Reports that start like a generic one but are of a specific kind.
SPECIFIC = {
    "[    5.1] BUG: KASAN: slab-out-of-bounds in cc_store+0x1c/0x40": "sanitizer",
    "[    5.2] BUG: KFENCE: use-after-free read in gcma_free_range+0x10/0x20": "sanitizer",
    "[    9.8] WARNING: suspicious RCU usage": "lockdep",
    "[    6.1] BUG: Bad page map in process cc_race  pte:0 pmd:0": "bad-page",
    # Lockdep switching itself off is a finding: nothing after it is checked.
    "[    1.5] turning off the locking correctness validator.": "lockdep",
}

GOOD = """\
[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]
[    0.0] OF: reserved mem: 0x60000000..0x67ffffff (131072 KiB) map non-reusable camera@60000000
[    0.512000] rcu: Hierarchical SRCU implementation.
[    1.000000] gcma_fixture_user: area camera: camera@60000000 base=0x60000000 size=0x8000000
[    2.000000] debug: BUGS are not found here, warning: lower case words are fine
"""


def test_each_bad_kind_is_found() -> None:
    for kind, line in BAD.items():
        findings = klog.scan(GOOD + line + "\n")
        assert len(findings) == 1, (kind, findings)
        assert findings[0].kind == kind, (kind, findings)
        assert findings[0].line == line.strip()


def test_every_pattern_is_tested() -> None:
    assert {kind for kind, _ in klog.PATTERNS} == set(BAD)


def test_specific_kinds_win_over_generic_prefixes() -> None:
    for line, kind in SPECIFIC.items():
        assert [f.kind for f in klog.scan(line)] == [kind], line


def test_clean_log_has_no_findings() -> None:
    assert klog.scan(GOOD) == []
