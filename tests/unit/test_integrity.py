"""integrity.run against a scripted target (FakeTransport): how it reads
sha256sum, cc_mutate and the counters, and that a failure keeps its report."""

from __future__ import annotations

import pytest

from gcma.checks import integrity
from gcma.errors import CheckFailed
from gcma.targets.transport import CommandResult

from .fakes import FakeTransport, ok


def _target(erofs_bad: bool, log: str = "") -> FakeTransport:
    reads = {"n": 0}

    def reply(cmd: str) -> CommandResult:
        if cmd.startswith(f"cd {integrity.CLEANCACHE} && grep ."):
            # Each read of the counters sees 10 more stores and 4 more
            # restores and 6 more misses than the last: a 40% hit rate.
            n = reads["n"]
            reads["n"] += 1
            values = {name: 0 for name in integrity.COUNTERS}
            values.update(stored=10 * n, restored=4 * n, missed=6 * n, cached=7)
            return ok("\n".join(f"{k}:{v}" for k, v in values.items()))
        if "sha256sum -c" in cmd:
            if erofs_bad and "/erofs" in cmd:
                return CommandResult(cmd, 1, "a.bin: OK\nb.bin: FAILED\n",
                                     "sha256sum: WARNING: 1 computed checksum did NOT match")
            return ok("a.bin: OK\nb.bin: OK\n")
        if cmd.startswith("cc_mutate"):
            return ok("change=1 offset=0 len=4096\nverified_reads=40 mismatches=0 failures=0\n")
        if cmd.startswith(f"cat {integrity.STRESS_PARAMS}/"):
            return ok("0\n" if cmd.endswith("bad_pages") else "5\n")
        if cmd == "dmesg":
            return ok(log)
        return ok()

    return FakeTransport(default=reply)


def test_clean_run_reports_every_phase() -> None:
    t = _target(erofs_bad=False)
    report = integrity.run(t, rounds=2)
    phases = {p["name"]: p for p in report["phases"]}  # type: ignore[attr-defined]
    assert list(phases) == ["ext4", "erofs", "ext4-1k", "ext4-mutations"]
    assert phases["ext4"]["verified_reads"] == 4 and phases["ext4"]["mismatches"] == 0
    assert phases["ext4"]["stored"] == 10 and phases["ext4"]["hit_rate"] == 0.4
    assert phases["ext4-mutations"]["verified_reads"] == 40
    assert report["verified_reads"] == 3 * 4 + 40 and report["mismatches"] == 0
    assert report["admission"] == "workingset"
    # The stress module is always unloaded, and admission put back.
    assert any(c.startswith("rmmod gcma_stress") for c, _ in t.commands)


def test_mismatch_fails_with_its_report() -> None:
    with pytest.raises(CheckFailed) as info:
        integrity.run(_target(erofs_bad=True), rounds=3)
    report = info.value.report
    assert report is not None
    assert report["mismatches"] == 3
    assert report["failures"] == ["erofs: 3 mismatches"]
    assert "erofs: 3 mismatches" in str(info.value)


def test_kernel_log_finding_fails_the_run() -> None:
    log = "[    5.1] WARNING: CPU: 1 PID: 9 at mm/cleancache.c:100 cc_store+0x1/0x2\n"
    with pytest.raises(CheckFailed) as info:
        integrity.run(_target(erofs_bad=False, log=log), rounds=1)
    assert info.value.report is not None
    assert info.value.report["kernel_log_findings"] == ["warning: " + log.strip()]
