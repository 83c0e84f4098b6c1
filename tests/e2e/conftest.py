"""End-to-end fixtures: build once (a no-op when up to date), boot the emulated
target once per kernel variant (default, and debug with lockdep and DEBUG_VM),
run every target test on each, and check the kernel log after every test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from gcma.build import dt, kernel, pipeline
from gcma.checks import integrity, klog
from gcma.errors import TargetError
from gcma.targets.emulated import Artefacts, EmulatedTarget
from gcma.targets.machine import Machine
from gcma.targets.ssh import SshTransport
from gcma.targets.transport import Transport


@dataclass
class Target:
    emulated: EmulatedTarget
    shell: SshTransport
    variant: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


#: GCMA_TEST_VARIANTS=default runs the target tests on one variant only (for
#: quick local runs); CI runs them on default and debug; the nightly run
#: (./build.sh nightly) on kasan.
VARIANTS = [v for v in os.environ.get("GCMA_TEST_VARIANTS", "").split(",") if v] \
    or list(kernel.CI_VARIANTS)


@pytest.fixture(scope="session")
def built() -> None:
    pipeline.build_all(variants=tuple(VARIANTS))


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    """Poll ``check`` until it is true or ``seconds`` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@contextmanager
def clean_boot(name: str, art: Artefacts, extra_cmdline: str = "",
               machine: Machine | None = None) -> Iterator[SshTransport]:
    """A target of its own for one test, stopped at the end; its kernel log
    (dmesg and the console) must stay clean for the whole test."""
    emulated = EmulatedTarget(name)
    shell = emulated.start(art, machine=machine, timeout=300, extra_cmdline=extra_cmdline)
    try:
        yield shell
        problems = klog.scan(shell.check("dmesg")) + klog.scan(
            emulated.console.read_text(errors="replace"))
        assert problems == [], problems
    finally:
        shell.close()
        emulated.stop()


def _booted(name: str, variant: str, art: Artefacts, extra_cmdline: str = "",
            clear_kmemleak: bool = False) -> Iterator[Target]:
    """A target for a fixture: stopped at the end, and failed if kmemleak
    (kernels with it) finds leaks after its tests."""
    emulated = EmulatedTarget(name)
    shell = emulated.start(art, timeout=300, extra_cmdline=extra_cmdline)
    leaks = ""
    if clear_kmemleak:  # what boot left is not the test's
        shell.run(f"test -w {KMEMLEAK} && echo clear > {KMEMLEAK}")
    try:
        yield Target(emulated, shell, variant)
        leaks = kmemleak_report(shell)
    finally:
        shell.close()
        emulated.stop()
    if leaks:
        pytest.fail(f"kmemleak after {name}'s tests:\n{leaks[:4000]}", pytrace=False)


@pytest.fixture(scope="session")
def target(built: None, variant: str) -> Iterator[Target]:
    yield from _booted(f"pytest-{os.getpid()}-{variant}", variant, Artefacts.default(variant))


KMEMLEAK = "/sys/kernel/debug/kmemleak"


def kmemleak_report(shell: Transport) -> str:
    """What kmemleak finds after the session (kernels with it: kasan). Two
    scans: an object must look unreferenced twice to be reported."""
    if not shell.run(f"test -w {KMEMLEAK}").ok:
        return ""
    for _ in range(2):
        shell.check(f"echo scan > {KMEMLEAK}", timeout=600)
    return shell.check(f"cat {KMEMLEAK}", timeout=60).strip()


@dataclass
class LogMark:
    """Where a target's logs stood when a test started."""

    target: Target
    dmesg_lines: int
    console_bytes: int


def log_mark(target: Target) -> LogMark:
    console = target.emulated.console
    return LogMark(target, len(target.shell.check("dmesg").splitlines()),
                   console.stat().st_size if console.exists() else 0)


def kernel_problems(mark: LogMark) -> list[str]:
    """What the kernel reported (oops, BUG, WARN, lockdep...) since ``mark``,
    in dmesg and on the console (which also has what dmesg lost to a crash)."""
    t = mark.target
    where = t.emulated.name
    try:
        lines = t.shell.check("dmesg", timeout=60).splitlines()
    except TargetError as exc:
        return [f"{where}: target unreachable after the test: {exc}"]
    found = klog.scan("\n".join(lines[mark.dmesg_lines:]))
    with open(t.emulated.console, "rb") as f:
        f.seek(mark.console_bytes)
        found += klog.scan(f.read().decode(errors="replace"))
    return sorted({f"{where}: {f.kind}: {f.line}" for f in found})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail any test during which the kernel of any target it uses (the session
    target, a bare one, a second one...) reported a problem. Each test sees
    only what was logged while it ran, so one early warning fails one test."""
    funcargs = getattr(item, "funcargs", {})
    marks = {id(v): log_mark(v) for v in funcargs.values() if isinstance(v, Target)}
    result = yield
    problems = [p for m in marks.values() for p in kernel_problems(m)]
    if problems:
        pytest.fail("kernel log reports problems:\n" + "\n".join(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test (a timeout included) carries the console tail of each of
    its targets."""
    report: pytest.TestReport = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Target):
                report.sections.append((f"console tail: {value.emulated.name}",
                                        value.emulated.console_tail(60)))
    return report


@pytest.fixture
def admit_all(target: Target) -> Iterator[None]:
    """Cleancache stores every clean folio evicted during the test, not only
    those with a record of reuse: for tests that evict to store on demand."""
    integrity.set_admit_all(target.shell, True)
    try:
        yield
    finally:
        integrity.set_admit_all(target.shell, False)


@pytest.fixture
def bare_target(built: None, variant: str) -> Iterator[Target]:
    """A target that does not load the vendor modules, with a reserve_mem region
    (1 MiB aligned: the heap aligns 1 MiB buffers to 1 MiB, so 8 of them fit
    in 8 MiB only from an aligned base; with 4 KiB alignment the kernel may
    place it so that 7 do)."""
    yield from _booted(f"pytest-{os.getpid()}-{variant}-bare", variant,
                       Artefacts.default(variant, dt.NO_GUARANTEE_DTB),
                       "gcma.skip=gcma_area,gcma_heap reserve_mem=8M:1M:rmtest",
                       clear_kmemleak=True)


@pytest.fixture
def gcma_pin(target: Target) -> Iterator[None]:
    """The gcma_pin test kmod: a kernel user that can keep a page reference."""
    target.shell.check("insmod /lib/modules/gcma-tests/gcma_pin.ko")
    try:
        yield
    finally:
        target.shell.check("echo 1 > /sys/kernel/debug/gcma_pin/unpin && rmmod gcma_pin")


def pool_stat(target: Target, pool: str, counter: str) -> int:
    """A cleancache pool's counter (a GCMA area's pool is named after it)."""
    return int(target.shell.check(f"cat /sys/kernel/mm/cleancache/pools/{pool}/{counter}"))


def heap_stats(target: Target, heap: str) -> dict[str, str]:
    """gcma_heap's debugfs statistics of ``heap``, key: value."""
    text = target.shell.check(f"cat /sys/kernel/debug/gcma_heap/{heap}")
    return dict(line.split(": ", 1) for line in text.splitlines())
