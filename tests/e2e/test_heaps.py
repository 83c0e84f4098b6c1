"""The vendor modules on the emulated target: areas, heaps, errors, lifetime."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gcma import paths
from gcma.build import dt
from gcma.checks import klog
from gcma.report import parse_kv
from gcma.targets.emulated import Artefacts
from gcma.targets.machine import VIRT, Machine
from gcma.targets.transport import Transport

from .conftest import Target, clean_boot, heap_stats, pool_stat

MIB = 1 << 20
AREAS = {"camera": 128 * MIB, "video": 64 * MIB}


def test_modules_loaded_in_order_and_heaps_exist(target: Target) -> None:
    console = target.emulated.console.read_text()
    assert console.index("loaded gcma_area.ko") < console.index("loaded gcma_heap.ko")
    heaps = target.shell.check("ls /dev/dma_heap").split()
    assert {"camera", "video", "linux,cma", "system"} <= set(heaps)
    for area, size in AREAS.items():
        assert pool_stat(target, area, "donated") == size // 4096


def test_kernel_dmabuf_heap_selftest(target: Target) -> None:
    res = target.shell.run("dmabuf-heap", timeout=600)
    heaps = target.shell.check("ls /dev/dma_heap").split()
    results: dict[str, list[str]] = {}
    current = None
    for line in res.stdout.splitlines():
        if m := re.match(r"# Testing heap: (\S+)", line):
            current = m.group(1)
            results[current] = []
        elif current and re.match(r"(not )?ok \d+", line):
            results[current].append(line)
    assert set(results) == set(heaps), res.stdout[-2000:]
    for heap, lines in results.items():
        assert len(lines) == 11, (heap, lines)
        bad = [ln for ln in lines if ln.startswith("not ok") or "# SKIP" in ln.upper()]
        assert not bad, (heap, bad)
    totals = re.search(r"# Totals: pass:(\d+) fail:(\d+) xfail:\d+ xpass:\d+ skip:(\d+)",
                       res.stdout)
    assert totals and totals.groups() == (str(11 * len(heaps)), "0", "0"), res.stdout[-500:]
    assert res.ok


@pytest.mark.parametrize("area", sorted(AREAS))
def test_exhaust_area_then_everything_comes_back(target: Target, area: str) -> None:
    expect = AREAS[area] // (16 * MIB)
    for _ in range(2):
        row = parse_kv(target.shell.check(f"heap_alloc -H -s 16M -n {expect + 1} {area}"))
        assert row["held"] == str(expect) and row["error"] == "ENOMEM", row
    row = parse_kv(target.shell.check(f"heap_alloc -H -s 1M -n {AREAS[area] // MIB} {area}"))
    assert row["held"] == str(AREAS[area] // MIB) and row["error"] == "none", row
    assert pool_stat(target, area, "donated") == AREAS[area] // 4096


@pytest.mark.usefixtures("admit_all")
def test_allocation_takes_cached_pages_back(target: Target) -> None:
    """Pages lent to cleancache come back at once when the whole area is allocated."""
    target.shell.check("cat /data/*.bin /erofs/*.bin > /dev/null && "
                       "echo 1 > /proc/sys/vm/drop_caches")
    cached = pool_stat(target, "camera", "cached")
    recalled = pool_stat(target, "camera", "recalled")
    assert cached > 0
    row = parse_kv(target.shell.check("heap_alloc -s 128M -n 1 camera", timeout=300))
    assert row["ok"] == "1" and row["not_zero"] == "0", row
    assert pool_stat(target, "camera", "recalled") - recalled == cached
    assert pool_stat(target, "camera", "cached") == 0
    # Freed, the range is donated again, all of it.
    assert pool_stat(target, "camera", "donated") == AREAS["camera"] // 4096


def test_bad_requests_fail_with_the_right_errno(target: Target) -> None:
    res = target.shell.run("heap_alloc -e camera video linux,cma")
    assert res.ok, res.stdout
    assert res.stdout.count(" ok\n") == 12


def test_heap_statistics(target: Target) -> None:
    target.shell.check("heap_alloc -s 1M -n 3 video")
    stats = heap_stats(target, "video")
    assert int(stats["allocations"]) >= 3
    assert stats["bytes_in_use"] == "0"
    assert int(stats["peak_bytes"]) >= MIB
    assert re.fullmatch(r"<\d+:\d+( <\d+:\d+)*", stats["latency_us"])


AREA_SYSFS = ("donate", "total_kib", "used_kib", "peak_kib", "largest_free_kib",
              "alloc_pages_success", "alloc_pages_fail", "alloc_us", "pending_pages",
              "free_failures")


def _area_sysfs(target: Target, area: str) -> dict[str, int]:
    base = f"/sys/kernel/gcma_area/{area}"
    out = target.shell.check(f"cd {base} && for f in *; do echo $f=$(cat $f); done")
    return {k: int(v) for k, v in parse_kv(out).items()}


def test_area_sysfs_statistics(target: Target) -> None:
    """/sys/kernel/gcma_area/<area>/, for user builds without debugfs."""
    before = _area_sysfs(target, "video")
    assert sorted(before) == sorted(AREA_SYSFS)
    assert before["total_kib"] == AREAS["video"] // 1024
    assert before["donate"] == 1
    assert before["used_kib"] == 0 and before["pending_pages"] == 0
    assert before["largest_free_kib"] == before["total_kib"]
    target.shell.check("heap_alloc -s 1M -n 3 video")
    target.shell.check("heap_alloc -H -s 48M -n 2 video")  # the second one fails
    after = _area_sysfs(target, "video")
    assert after["alloc_pages_success"] - before["alloc_pages_success"] == 3 * 256 + 48 * 256
    assert after["alloc_pages_fail"] - before["alloc_pages_fail"] == 48 * 256
    assert after["peak_kib"] >= 48 * 1024
    assert after["alloc_us"] > before["alloc_us"]
    assert after["used_kib"] == 0 and after["largest_free_kib"] == after["total_kib"]


def _bound_areas(shell: Transport) -> list[str]:
    out = shell.check("ls /sys/bus/platform/drivers/gcma_area")
    return sorted(d for d in out.split() if d.startswith("gcma-area-"))


def test_area_devices_are_bound_and_autoload(target: Target) -> None:
    """gcma_area is the platform driver of gcma,area nodes: each area's device
    is bound and links to its statistics, and the module's alias matches the
    nodes' modalias (what ueventd and modprobe use)."""
    assert _bound_areas(target.shell) == ["gcma-area-camera", "gcma-area-video"]
    dev = "/sys/bus/platform/devices/gcma-area-camera"
    assert int(target.shell.check(f"cat {dev}/gcma_area/total_kib")) == AREAS["camera"] // 1024
    modalias = target.shell.check(f"cat {dev}/modalias").strip()
    assert modalias.endswith("Cgcma,area"), modalias
    ko = paths.out_dir() / "modules" / target.variant / "vendor_modules" / "dist" / "gcma_area.ko"
    aliases = subprocess.run(["modinfo", "-F", "alias", str(ko)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert any(fnmatch.fnmatchcase(modalias, alias)
               for alias in aliases), (modalias, aliases)


def test_unload_is_refused_and_harmless(target: Target) -> None:
    res = target.shell.run("rmmod gcma_heap")
    assert not res.ok
    res = target.shell.run("rmmod gcma_area")
    assert not res.ok
    modules = target.shell.check("cat /proc/modules")
    assert "gcma_heap" in modules and "gcma_area" in modules
    assert parse_kv(target.shell.check("heap_alloc -s 4M -n 2 camera"))["ok"] == "2"


def test_area_module_unload_returns_every_page(bare_target: Target) -> None:
    t = bare_target.shell
    assert t.check("ls /sys/kernel/mm/cleancache/pools").split() == []
    for _ in range(2):
        t.check("insmod /lib/modules/gcma/gcma_area.ko")
        assert int(t.check("cat /sys/kernel/mm/cleancache/donated")) == 49152
        assert _bound_areas(t) == ["gcma-area-camera", "gcma-area-video"]
        t.check("rmmod gcma_area")
        assert int(t.check("cat /sys/kernel/mm/cleancache/donated")) == 0
        assert not t.run("test -e /sys/bus/platform/drivers/gcma_area").ok
        assert not t.run("test -e /sys/bus/platform/devices/gcma-area-camera/gcma_area").ok
        assert t.check("ls /sys/kernel/mm/cleancache/pools").split() == []
    log = t.check("dmesg")
    assert log.count("camera: returned to reserved memory") == 2
    assert log.count("video: returned to reserved memory") == 2


def test_reserve_mem_source(bare_target: Target) -> None:
    t = bare_target.shell
    t.check("insmod /lib/modules/gcma/gcma_area.ko source=reserve_mem names=rmtest,nosuch")
    t.check("insmod /lib/modules/gcma/gcma_heap.ko")
    assert "reserve_mem:nosuch: rejected: no such reserve_mem region" in t.check("dmesg")
    assert t.check("ls /dev/dma_heap").split().count("rmtest") == 1
    row = parse_kv(t.check("heap_alloc -H -s 1M -n 9 rmtest"))
    assert row["held"] == "8" and row["error"] == "ENOMEM", row


BAD_AREAS = {
    "gcma-area-x-badchar": "name has characters other than [a-z0-9_.,-]",
    "gcma-area-x-cma": "memory-region is already a CMA pool",
    "gcma-area-x-dangling": "memory-region does not point to a node",
    "gcma-area-x-duplabel": "name already used by another area",
    "gcma-area-x-nolabel": "no label",
    "gcma-area-x-nomap": "memory-region is no-map (GCMA needs it mapped)",
    "gcma-area-x-nophandle": "no memory-region",
    "gcma-area-x-notchild": "memory-region is not a child of /reserved-memory",
    "gcma-area-x-outside": "not all of it is mapped System RAM",
    "gcma-area-x-overlap": "overlaps another area",
    "gcma-area-x-overnomap": "not all of it is mapped System RAM",
    "gcma-area-x-owned": "memory-region is also /x-owner-device's",
    "gcma-area-x-ramoops": "memory-region has a compatible: it is that driver's",
    "gcma-area-x-slash": "name has characters other than [a-z0-9_.,-]",
    "gcma-area-x-system": "name already used by a kernel heap",
    "gcma-area-x-unaligned": "base or size not page aligned",
    "gcma-area-x-zero": "zero size",
}


@contextmanager
def _boot_with_fixture(variant: str, fixture: str, machine: Machine = VIRT,
                       strict: bool = True) -> Iterator[Transport]:
    """A target whose DT is ours plus tests/fixtures/dt/<fixture>.dtso. Its
    kernel log must stay clean for the whole test, bad nodes or not."""
    dtb = dt.build(machine, [paths.PROJECT / "dts" / "virt-gcma.dtso",
                             paths.PROJECT / "tests" / "fixtures" / "dt" / f"{fixture}.dtso"],
                   name=f"virt-gcma-{fixture}", check_ram=False, strict=strict)
    art = Artefacts.default(variant)
    art.dtb = dtb
    with clean_boot(f"pytest-{os.getpid()}-{variant}-{fixture}", art, machine=machine) as shell:
        yield shell


def assert_rejected_once_each(log: str, expected: dict[str, str], marker: str) -> None:
    """Each node of ``expected`` has exactly one log line, ending with its
    reason; and no other line with ``marker`` (one line per bad node)."""
    ours = [ln for ln in log.splitlines() if marker in ln]
    for node, reason in expected.items():
        lines = [ln for ln in ours if f"gcma_area: /{node}: " in ln]
        assert len(lines) == 1, (node, ours)
        assert lines[0].endswith(f"rejected: {reason}"), lines[0]
    assert len(ours) == len(expected), ours


def test_bad_device_tree_nodes_are_rejected(built: None, variant: str) -> None:
    with _boot_with_fixture(variant, "bad-areas") as shell:
        log = shell.check("dmesg")
        assert_rejected_once_each(log, BAD_AREAS, "rejected")
        assert "gcma_area: /gcma-area-x-guarantee: left to CMA: " \
               "/reserved-memory/guarantee@6f400000 has guarantee" in log
        heaps = shell.check("ls /dev/dma_heap").split()
        # CMA took the guarantee node: its heap comes from the CMA heap.
        assert "guarantee@6f400000" in heaps
        assert sorted(h for h in heaps if h not in (
            "system", "linux,cma", "guarantee@6f400000")) == ["camera", "dynamic", "video"]
        for area in (*AREAS, "dynamic"):
            assert parse_kv(shell.check(f"heap_alloc -s 4M -n 2 {area}"))["ok"] == "2"
        # Rejected nodes stay unbound.
        assert _bound_areas(shell) == ["gcma-area-camera", "gcma-area-dynamic",
                                       "gcma-area-video"]
        # The dynamic region sits where the kernel placed it, inside alloc-ranges.
        placed = re.search(r"gcma_area: /gcma-area-dynamic: area dynamic, (0x[0-9a-f]+) ", log)
        assert placed and 0x7c000000 <= int(placed.group(1), 16) <= 0x7dc00000, log
        assert klog.scan(log) == []


@pytest.mark.parametrize("how", ["vmap", "map"])
def test_kernel_user_sees_the_buffer(target: Target, gcma_pin: None, how: str) -> None:
    """A driver that imports a buffer and vmaps it reads what user space wrote,
    and user space reads what it wrote back. With ``map``, the driver first
    maps it for its device to write into (DMA_FROM_DEVICE, the first device
    mapping, which the heap cleans the buffer for): the device sees one
    contiguous range of the buffer's size, and nothing user space wrote is
    lost."""
    for size in ("4K", "1M", "5M", "16M"):
        row = parse_kv(target.shell.check(f"heap_alloc -K {how} -s {size} camera"))
        assert row["error"] == "none", row
    assert heap_stats(target, "camera")["bytes_in_use"] == "0"


def _whole_area_allocates(target: Target, area: str) -> bool:
    row = parse_kv(target.shell.check(f"heap_alloc -H -s {AREAS[area] // MIB}M -n 1 {area}"))
    return row["held"] == "1"


def test_free_of_a_referenced_range_is_retried(target: Target, gcma_pin: None) -> None:
    """A driver keeps a reference to a page of a released buffer: GCMA cannot take
    the range back, and the area keeps retrying until the reference goes. No
    range is lost."""
    t = target.shell
    row = parse_kv(t.check("heap_alloc -K pin -s 16M camera"))
    assert row["error"] == "none", row
    assert t.check("cat /sys/kernel/debug/gcma_pin/pinned").strip() == "1"
    stats = heap_stats(target, "camera")
    # The buffer is gone; its range is still the area's, waiting.
    assert stats["bytes_in_use"] == "0"
    assert 0 < int(stats["area_pending_pages"]) <= 16 * MIB // 4096, stats
    # Retries go in chunks of 512 pages: only the chunk of the held page waits.
    t.check("for i in $(seq 40); do "
            "grep -q '^area_pending_pages: 512$' /sys/kernel/debug/gcma_heap/camera && break; "
            "sleep 0.5; done")
    assert heap_stats(target, "camera")["area_pending_pages"] == "512"
    sysfs = _area_sysfs(target, "camera")
    assert sysfs["pending_pages"] == 512 and sysfs["free_failures"] >= 2, sysfs
    # The held page is the area's first: the rest is one free run.
    assert sysfs["largest_free_kib"] == AREAS["camera"] // 1024 - 2048, sysfs
    assert not _whole_area_allocates(target, "camera")
    assert "retrying" in t.check("dmesg | grep 'gcma_area: camera:' | tail -n 3")
    t.check("echo 1 > /sys/kernel/debug/gcma_pin/unpin")
    # The retry backs off up to 10 s; give it a few rounds.
    t.check("for i in $(seq 60); do "
            "grep -q '^area_pending_pages: 0$' /sys/kernel/debug/gcma_heap/camera && break; "
            "sleep 0.5; done")
    assert heap_stats(target, "camera")["area_pending_pages"] == "0"
    assert _whole_area_allocates(target, "camera")
    assert pool_stat(target, "camera", "donated") == AREAS["camera"] // 4096


def test_carveout_mode_is_the_same_area_without_donation(target: Target,
                                                         gcma_pin: None) -> None:
    """Writing 0 to an idle area's ``donate`` takes every page back from
    cleancache: the area is a plain carve-out (the benchmark's floor), whose
    buffers still come zeroed and whose referenced ranges still wait for a
    retry. Switching is refused while any page is allocated or pending."""
    t = target.shell
    area = "/sys/kernel/gcma_area/camera"
    pages = AREAS["camera"] // 4096
    assert pool_stat(target, "camera", "donated") == pages
    assert t.run(f"echo maybe > {area}/donate").exit_status != 0
    t.check(f"echo 0 > {area}/donate")
    try:
        assert t.check(f"cat {area}/donate").strip() == "0"
        assert pool_stat(target, "camera", "donated") == 0
        row = parse_kv(t.check("heap_alloc -s 16M -n 4 camera"))
        assert row["ok"] == "4" and row["not_zero"] == "0" and row["bad_data"] == "0", row
        assert pool_stat(target, "camera", "donated") == 0

        row = parse_kv(t.check("heap_alloc -K pin -s 1M camera"))
        assert row["error"] == "none", row
        assert _area_sysfs(target, "camera")["pending_pages"] > 0
        res = t.run(f"echo 1 > {area}/donate")
        assert res.exit_status != 0 and "busy" in res.stderr.lower(), res
        t.check("echo 1 > /sys/kernel/debug/gcma_pin/unpin")
        t.check(f"for i in $(seq 60); do grep -q '^0$' {area}/pending_pages && break; "
                "sleep 0.5; done")
        assert _area_sysfs(target, "camera")["pending_pages"] == 0
    finally:
        t.check(f"echo 1 > {area}/donate")
    assert pool_stat(target, "camera", "donated") == pages
    assert t.check(f"cat {area}/donate").strip() == "1"


def test_region_in_a_memory_hole_is_rejected(built: None, variant: str) -> None:
    """With -m 1000, RAM ends inside a memory section: pfn_valid() holds in the
    hole after it, but a region there is not RAM and must not become an area."""
    with _boot_with_fixture(variant, "hole-area", Machine(memory_mib=1000)) as shell:
        log = shell.check("dmesg")
        assert "gcma_area: /gcma-area-x-hole: rejected: not all of it is mapped System RAM" \
            in log, [ln for ln in log.splitlines() if "gcma" in ln]
        assert "x-hole" not in shell.check("ls /dev/dma_heap").split()
        assert parse_kv(shell.check("heap_alloc -s 4M -n 2 camera"))["ok"] == "2"
        assert klog.scan(log) == []



@pytest.mark.parametrize("check", ["mmap", "fork"])
def test_buffer_lifetime(target: Target, check: str) -> None:
    res = target.shell.run(f"heap_abuse {check} camera")
    assert res.ok and res.stdout.rstrip().endswith("result=ok"), res.stdout + res.stderr
    if check == "mmap":
        kv = parse_kv(" ".join(res.stdout.split()))
        assert kv["map_private"] == "EINVAL" and kv["past_end_map"] == "EINVAL", kv
    assert heap_stats(target, "camera")["bytes_in_use"] == "0"


def test_threads_allocate_while_gcma_stress_works_the_area(target: Target) -> None:
    """Four threads allocate and free on the camera heap while gcma_stress
    allocates and frees ranges of the same area from the kernel."""
    t = target.shell
    t.check("insmod /lib/modules/gcma-tests/gcma_stress.ko area=camera whole_every=0 "
            "max_pages=1024")
    try:
        res = t.run("heap_abuse threads camera 4", timeout=120)
    finally:
        t.check("rmmod gcma_stress")
    assert res.ok and res.stdout.rstrip().endswith("result=ok"), res.stdout + res.stderr
    assert int(parse_kv(res.stdout)["allocs"]) > 0
    params = "/sys/module/gcma_stress/parameters"
    assert not t.run(f"test -d {params}").ok
    stats = heap_stats(target, "camera")
    assert stats["bytes_in_use"] == "0" and stats["area_pending_pages"] == "0", stats
    assert _whole_area_allocates(target, "camera")


def test_sigkill_during_big_allocations_loses_nothing(target: Target) -> None:
    t = target.shell
    for delay in ("0.05", "0.2", "0.5"):
        t.run(f"heap_alloc -s 128M -n 50 camera > /dev/null & sleep {delay}; kill -9 $!; wait",
              timeout=120)
    stats = heap_stats(target, "camera")
    assert stats["bytes_in_use"] == "0" and stats["area_pending_pages"] == "0", stats
    assert _whole_area_allocates(target, "camera")
    assert pool_stat(target, "camera", "donated") == AREAS["camera"] // 4096


def test_tracepoints_follow_each_allocation(target: Target) -> None:
    tracing = "/sys/kernel/tracing"
    t = target.shell
    if not t.run(f"test -d {tracing}/events || mount -t tracefs nodev {tracing}").ok:
        pytest.skip(f"the {target.variant} kernel has no tracefs (the debug variant has)")
    assert t.run(f"test -d {tracing}/events/gcma_heap").ok, "gcma_heap has no events"
    t.check(f"echo > {tracing}/trace && echo 1 > {tracing}/events/gcma_heap/enable")
    try:
        t.check("heap_alloc -s 1M -n 2 video && heap_alloc -e video")
    finally:
        t.check(f"echo 0 > {tracing}/events/gcma_heap/enable")
    events = [parse_kv(ln.split(": gcma_heap_", 1)[1]) | {"event": ln.split(": gcma_heap_")[1]
              .split(":")[0]} for ln in t.check(f"cat {tracing}/trace").splitlines()
              if ": gcma_heap_" in ln]
    kinds = [e["event"] for e in events]
    # Two good allocations and their frees, then the huge one that fails.
    assert kinds == ["alloc_start", "alloc_finish", "free"] * 2 + \
        ["alloc_start", "alloc_finish"], kinds
    for start, finish, free in (events[0:3], events[3:6]):
        assert start["name"] == "video" and start["count"] == "256" and start["align"] == "8"
        assert finish["errorno"] == "0" and finish["pfn"] == free["pfn"] != "0x0", events
        assert int(finish["latency_ns"]) > 0 and free["count"] == "256"
    assert events[7]["errorno"] == "-12", events[7]
