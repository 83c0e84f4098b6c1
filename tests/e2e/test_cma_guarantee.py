"""CMA with "guarantee" (kernel patches 0006 and 0007): the default target's DT
has a CMA pool backed by GCMA beside the plain one, and the stock CMA heap
serves it as /dev/dma_heap/cma-guarantee."""

from __future__ import annotations

import pytest

from gcma.report import parse_kv

from .conftest import Target, pool_stat

MIB = 1 << 20
AREA = "cma-guarantee"
PAGES = 128 * MIB // 4096
CMA_SYSFS = "/sys/kernel/mm/cma"


def _cma(target: Target, area: str, attr: str) -> int:
    return int(target.shell.check(f"cat '{CMA_SYSFS}/{area}/{attr}'"))


def _whole_area_held(target: Target) -> bool:
    row = parse_kv(target.shell.check(f"heap_alloc -H -s 128M -n 1 {AREA}", timeout=300))
    return row["held"] == "1"


def test_guarantee_pool_is_gcma_backed_and_has_a_heap(target: Target) -> None:
    t = target.shell
    log = t.check("dmesg")
    assert "Reserved memory: created guaranteed CMA memory pool at" in log
    assert f"gcma: {AREA}: {PAGES} pages at pfn" in log
    assert _cma(target, AREA, "gcma") == 1
    assert _cma(target, "linux,cma", "gcma") == 0
    assert {AREA, "linux,cma"} <= set(t.check("ls /dev/dma_heap").split())
    # GCMA lent every page to cleancache; the buddy allocator has none of them.
    assert pool_stat(target, AREA, "donated") == PAGES
    # The vendor area module left the node to CMA: no gcma,area binds it.
    assert AREA not in t.check("ls /sys/kernel/gcma_area").split()


@pytest.mark.usefixtures("admit_all")
def test_allocation_drops_cached_copies_and_zeroes(target: Target) -> None:
    """The whole pool is allocated through the stock CMA heap while it caches
    file pages: the copies are dropped, the buffer comes back zeroed, and on
    release every page is lent again."""
    t = target.shell
    t.check("cat /data/*.bin /erofs/*.bin > /dev/null && echo 1 > /proc/sys/vm/drop_caches")
    cached = pool_stat(target, AREA, "cached")
    recalled = pool_stat(target, AREA, "recalled")
    success = _cma(target, AREA, "alloc_pages_success")
    assert cached > 0
    row = parse_kv(t.check(f"heap_alloc -s 128M -n 2 {AREA}", timeout=300))
    assert row["ok"] == "2" and row["not_zero"] == "0", row
    assert pool_stat(target, AREA, "recalled") - recalled == cached
    assert _cma(target, AREA, "alloc_pages_success") - success == 2 * PAGES
    assert pool_stat(target, AREA, "donated") == PAGES


def test_release_of_a_referenced_range_is_deferred_not_lost(target: Target,
                                                            gcma_pin: None) -> None:
    """A driver keeps a reference to a page of a released CMA heap buffer. GCMA
    cannot take that page back, so cma_release() leaves the range allocated and
    retries it in 512-page chunks: all but the held page's chunk come back at
    once, the rest once the reference is dropped."""
    t = target.shell
    released = _cma(target, AREA, "release_pages_success")
    row = parse_kv(t.check(f"heap_alloc -K pin -s 16M {AREA}"))
    assert row["error"] == "none", row
    assert t.check("cat /sys/kernel/debug/gcma_pin/pinned").strip() == "1"
    assert "not taken back (-16); release deferred" in t.check(f"dmesg | grep 'cma: {AREA}:'")
    want = released + 16 * MIB // 4096 - 512
    t.check(f"for i in $(seq 40); do [ $(cat '{CMA_SYSFS}/{AREA}/release_pages_success') "
            f"-ge {want} ] && break; sleep 0.5; done")
    assert _cma(target, AREA, "release_pages_success") == want
    assert not _whole_area_held(target)
    t.check("echo 1 > /sys/kernel/debug/gcma_pin/unpin")
    want += 512
    # The retry backs off up to 10 s; give it a few rounds.
    t.check(f"for i in $(seq 60); do [ $(cat '{CMA_SYSFS}/{AREA}/release_pages_success') "
            f"-ge {want} ] && break; sleep 0.5; done")
    assert _cma(target, AREA, "release_pages_success") == want
    assert _whole_area_held(target)
    assert pool_stat(target, AREA, "donated") == PAGES
