"""GCMA under fault injection: freeing a buffer allocates nothing, so it
succeeds while every slab and page allocation of the freeing task may fail,
and no range is lost (debug variant: FAILSLAB and FAIL_PAGE_ALLOC)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gcma.build import dt
from gcma.report import parse_kv
from gcma.targets.emulated import Artefacts, EmulatedTarget

from .conftest import Target, heap_stats, pool_stat

MIB = 1 << 20
DEBUGFS = "/sys/kernel/debug"
#: Only the task that sets /proc/self/make-it-fail sees failures.
INJECT = {"task-filter": "Y", "probability": "50", "interval": "1", "times": "-1",
          "space": "0", "verbose": "0", "ignore-gfp-wait": "N"}


@pytest.fixture
def fault_injection(target: Target) -> Iterator[None]:
    if not target.shell.run(f"test -d {DEBUGFS}/failslab").ok:
        pytest.skip(f"{target.variant} kernel has no fault injection (the debug variant has)")
    saved: dict[str, str] = {}
    for attr in ("failslab", "fail_page_alloc"):
        for key, value in INJECT.items():
            path = f"{DEBUGFS}/{attr}/{key}"
            if not target.shell.run(f"test -e {path}").ok:
                continue
            saved[path] = target.shell.check(f"cat {path}").strip()
            target.shell.check(f"echo {value} > {path}")
    yield
    # Backwards: probability goes back to 0 before the task filter is lifted,
    # or every task of the system would see failures in between.
    for path, value in reversed(saved.items()):
        target.shell.check(f"echo {value} > {path}")


def test_free_under_allocation_failures_loses_nothing(target: Target,
                                                      fault_injection: None) -> None:
    assert target.shell.check(f"cat {DEBUGFS}/failslab/times").strip() == "-1"
    # One 128 MiB buffer (the whole camera area), freed with failures on.
    res = target.shell.run("heap_alloc -H -F -s 128M -n 1 camera", timeout=600)
    held = parse_kv(res.stdout.splitlines()[0])
    assert held["held"] == "1", res.stdout
    assert res.ok, res.stdout + res.stderr
    assert heap_stats(target, "camera")["bytes_in_use"] == "0"
    # Every range came back: the whole area can be allocated again.
    again = parse_kv(target.shell.check("heap_alloc -H -s 128M -n 1 camera"))
    assert again["held"] == "1", again
    assert heap_stats(target, "camera")["bytes_in_use"] == "0"
    donated = pool_stat(target, "camera", "donated")
    assert donated == 128 * MIB // 4096


@pytest.fixture
def bare_debug_target(built: None, variant: str) -> Iterator[Target]:
    """A target that boots without the vendor modules loaded."""
    emulated = EmulatedTarget(f"pytest-{os.getpid()}-{variant}-bare-faults")
    shell = emulated.start(Artefacts.default(variant, dt.NO_GUARANTEE_DTB), timeout=300,
                           extra_cmdline="gcma.skip=gcma_area,gcma_heap")
    try:
        if not shell.run("test -e /proc/self/fail-nth").ok:
            pytest.skip(f"{variant} kernel has no fault injection (the debug variant has)")
        yield Target(emulated, shell, variant)
    finally:
        shell.close()
        emulated.stop()


def _heaps_work(t: Target) -> list[str]:
    """The GCMA heaps that exist; each must allocate, map and free."""
    heaps = [h for h in t.shell.check("ls /dev/dma_heap").split()
             if h not in ("system", "linux,cma")]
    for heap in heaps:
        row = parse_kv(t.shell.check(f"heap_alloc -s 1M -n 1 {heap}"))
        assert row["ok"] == "1", row
    return heaps


def test_heap_module_init_failures_leave_only_working_heaps(bare_debug_target: Target) -> None:
    """Each step of gcma_heap's init fails in turn (its inject_init_failure
    parameter, built with FAULT_INJECTION): the steps before any heap is
    added leave nothing behind; once one heap is added the module loads, and
    a heap that could not be added is said so. Every /dev/dma_heap node that
    exists works."""
    t = bare_debug_target
    t.shell.check("insmod /lib/modules/gcma/gcma_area.ko")
    # Steps: the heap array, the camera heap, the video heap, the device.
    for step in (1, 2, 3, 4):
        res = t.shell.run(f"insmod /lib/modules/gcma/gcma_heap.ko inject_init_failure={step}")
        assert not res.ok, step
        assert _heaps_work(t) == [], step
        assert "gcma_heap" not in t.shell.check("cat /proc/modules")
        assert not t.shell.run("test -e /sys/kernel/debug/gcma_heap").ok, step
    # Step 5: adding the camera heap fails; video is added, and stays.
    t.shell.check("insmod /lib/modules/gcma/gcma_heap.ko inject_init_failure=5")
    assert _heaps_work(t) == ["video"]
    assert "gcma_heap: camera: no heap (-12)" in t.shell.check("dmesg")
