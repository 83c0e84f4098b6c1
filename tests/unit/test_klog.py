from gcma import klog

BAD = {
    "warning": "[    3.1] WARNING: CPU: 0 PID: 1 at mm/cma.c:106 cma_init_reserved_areas+0x1/0x2",
    "oops": "[    3.2] Internal error: Oops: 0000000096000004 [#1] SMP",
    "panic": "[    3.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
    "bug": "[    2.0] BUG: sleeping function called from invalid context at mm/slab.c:1",
    "paging": "[    1.0] Unable to handle kernel paging request at virtual address dead",
    "lockdep": "[    9.9] WARNING: possible circular locking dependency detected",
    "hung": "[  120.0] INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
    "sanitizer": "[    5.0] UBSAN: shift-out-of-bounds in mm/gcma.c:12:3",
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
        # lockdep reports start with WARNING: but the first matching kind wins
        assert findings[0].kind in (kind, "warning"), (kind, findings)
        assert findings[0].line == line.strip()


def test_clean_log_has_no_findings() -> None:
    assert klog.scan(GOOD) == []
