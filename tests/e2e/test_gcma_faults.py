"""GCMA under fault injection: freeing a buffer allocates nothing, so it
succeeds while every slab and page allocation of the freeing task may fail,
and no range is lost (debug variant: FAILSLAB and FAIL_PAGE_ALLOC)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gcma.report import parse_kv

from .conftest import Target

MIB = 1 << 20
DEBUGFS = "/sys/kernel/debug"
#: Only the task that sets /proc/self/make-it-fail sees failures.
INJECT = {"task-filter": "Y", "probability": "50", "interval": "1", "times": "-1",
          "space": "0", "verbose": "0", "ignore-gfp-wait": "N"}


def _heap_stat(target: Target, heap: str, key: str) -> int:
    text = target.shell.check(f"cat {DEBUGFS}/gcma_heap/{heap}")
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no {key} in {text}")


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
    assert _heap_stat(target, "camera", "bytes_in_use") == 0
    # Every range came back: the whole area can be allocated again.
    again = parse_kv(target.shell.check("heap_alloc -H -s 128M -n 1 camera"))
    assert again["held"] == "1", again
    assert _heap_stat(target, "camera", "bytes_in_use") == 0
    donated = int(target.shell.check("cat /sys/kernel/mm/cleancache/pools/camera/donated"))
    assert donated == 128 * MIB // 4096
