"""End-to-end fixtures: build once (a no-op when up to date), boot the emulated
target once per kernel variant (default, and debug with lockdep and DEBUG_VM),
run every target test on each, and check the kernel log after every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gcma import integrity, kernel, klog, pipeline
from gcma.ssh import SshTransport
from gcma.target import Artefacts, EmulatedTarget


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
#: quick local runs); CI runs them on all.
VARIANTS = [v for v in os.environ.get("GCMA_TEST_VARIANTS", "").split(",") if v] \
    or kernel.variants()


@pytest.fixture(scope="session")
def built() -> None:
    pipeline.build_all(variants=tuple(VARIANTS))


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def target(built: None, variant: str) -> Iterator[Target]:
    emulated = EmulatedTarget(f"pytest-{os.getpid()}-{variant}")
    shell = emulated.start(Artefacts.default(variant), timeout=300)
    try:
        yield Target(emulated, shell, variant)
    finally:
        shell.close()
        emulated.stop()


def _kernel_problems(target: Target, since: int) -> list[str]:
    lines = target.shell.check("dmesg").splitlines()
    found = klog.scan("\n".join(lines[since:]))
    found += klog.scan(target.emulated.console.read_text(errors="replace"))
    return sorted({f"{f.kind}: {f.line}" for f in found})


@pytest.fixture(autouse=True)
def kernel_log_is_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which the kernel reported an oops, BUG, WARN, lockdep..."""
    if "target" not in request.fixturenames:
        yield
        return
    target: Target = request.getfixturevalue("target")
    since = len(target.shell.check("dmesg").splitlines())
    yield
    problems = _kernel_problems(target, since)
    if problems:
        pytest.fail("kernel log reports problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def admit_all(target: Target) -> Iterator[None]:
    """Cleancache stores every clean folio evicted during the test, not only
    those with a record of reuse: for tests that evict to store on demand."""
    integrity.set_admit_all(target.shell, True)
    try:
        yield
    finally:
        integrity.set_admit_all(target.shell, False)


def heap_stats(target: Target, heap: str) -> dict[str, str]:
    """gcma_heap's debugfs statistics of ``heap``, key: value."""
    text = target.shell.check(f"cat /sys/kernel/debug/gcma_heap/{heap}")
    return dict(line.split(": ", 1) for line in text.splitlines())
