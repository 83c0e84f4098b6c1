"""Hostile input and data-leak checks on the emulated target: malformed heap
requests, exhaustion, buffer lifetime abuse, fuzzed device-tree values,
module reload cycles, leaks between users of an area, permissions, and host
tools facing a hung target. Each case says what it must get; every one ends
with the areas' accounting back to empty."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from gcma.checks import bgloop, fuzz, integrity
from gcma.targets.emulated import EmulatedTarget, process_alive
from gcma.targets.transport import Transport

from .conftest import Target, heap_stats, pool_stat, wait_for
from .test_heaps import AREAS, MIB, _boot_with_fixture, assert_rejected_once_each

CASE = re.compile(r"^case=(\S+) want=(\S+) got=(\S+) (ok|FAIL)$", re.M)


def _cases(output: str) -> dict[str, tuple[str, str]]:
    """heap_hostile's cases: name -> (want, got)."""
    return {m.group(1): (m.group(2), m.group(3)) for m in CASE.finditer(output)}


@pytest.fixture(autouse=True)
def _free_failures_before(request: pytest.FixtureRequest) -> None:
    """The areas' failed-free counts as the test starts (earlier tests may
    pin pages on purpose): _assert_areas_empty checks that none are new."""
    target = request.getfixturevalue("target") if "target" in request.fixturenames else None
    _FAILURES_BEFORE.clear()
    if target is not None:
        _FAILURES_BEFORE.update(fuzz.free_failures(target.shell))


_FAILURES_BEFORE: dict[str, int] = {}


def _assert_areas_empty(t: Transport) -> None:
    """Nothing allocated, nothing waiting to be freed, every page donated,
    and no free failed during the test."""
    assert fuzz.settle(t, failures_before=_FAILURES_BEFORE) == []
    for area, size in AREAS.items():
        stats = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                 t.check(f"cat /sys/kernel/debug/gcma_heap/{area}").splitlines())}
        assert stats["bytes_in_use"] == "0" and stats["area_pending_pages"] == "0", stats
        donated = int(t.check(f"cat /sys/kernel/mm/cleancache/pools/{area}/donated"))
        assert donated == size // 4096, (area, donated)


@pytest.mark.parametrize("area", sorted(AREAS))
def test_malformed_requests_get_the_right_errno(target: Target, area: str) -> None:
    res = target.shell.run(f"heap_hostile ioctl {area}")
    cases = _cases(res.stdout)
    assert len(cases) == 28, res.stdout
    assert [n for n, (want, got) in cases.items() if want != got] == [], res.stdout
    assert res.ok and res.stdout.rstrip().endswith("cases=28 failed=0"), res.stdout
    # Short structs whose fd could not be returned were freed at exit, and a
    # buffer whose fd could not be copied out was freed at once.
    _assert_areas_empty(target.shell)


def test_thousands_of_allocations_to_exhaustion_then_recovery(target: Target) -> None:
    res = target.shell.run("heap_hostile exhaust video", timeout=300)
    cases = _cases(res.stdout)
    assert res.ok, res.stdout
    pages = AREAS["video"] // 4096
    assert f"area-full: held={pages} " in res.stdout, res.stdout
    assert cases["area-full"] == ("ENOMEM", "ENOMEM")
    assert cases["fd-limit"] == ("EMFILE", "EMFILE")
    assert cases["area-full-then-one-buffer"] == ("ok", "ok")
    assert heap_stats(target, "video")["area_peak_pages"] == str(pages)
    _assert_areas_empty(target.shell)


def test_buffer_lifetime_abuse(target: Target) -> None:
    res = target.shell.run("heap_hostile lifetime camera", timeout=300)
    assert res.ok and res.stdout.rstrip().endswith("cases=6 failed=0"), res.stdout
    # Each of 20 closes was seen by the user thread (EBADF), mid-work, and
    # no word it wrote through the mapping went wrong.
    figures = dict(kv.split("=") for kv in
                   next(ln for ln in res.stdout.splitlines() if ln.startswith("ebadf=")).split())
    assert int(figures["ebadf"]) >= 20 and figures["missed"] == "0", figures
    assert figures["bad_words"] == "0" and figures["other"] == "0", figures
    # The fd left in flight went with its socket (checked in the program).
    assert _cases(res.stdout)["fd-in-flight-freed"] == ("ok", "ok")
    _assert_areas_empty(target.shell)


def test_a_secret_never_reaches_the_next_user(target: Target) -> None:
    """Process one fills the whole of each area with a secret and frees it;
    process two takes the whole of every area and finds zeros only."""
    secret = f"GCMA-SECRET-{os.getpid()}-{time.monotonic_ns()}"
    t = target.shell
    for area in AREAS:
        res = t.run(f"heap_hostile fill {area} {secret}", timeout=300)
        assert res.ok and f"filled_mib={AREAS[area] >> 20}" in res.stdout, res.stdout
    res = t.run(f"heap_hostile scan {secret} {' '.join(AREAS)}", timeout=600)
    assert res.ok, res.stdout
    for area, size in AREAS.items():
        assert f"heap={area} scanned_mib={size >> 20} nonzero_bytes=0 token_copies=0" \
            in res.stdout, res.stdout
    _assert_areas_empty(t)


@pytest.mark.usefixtures("admit_all")
def test_file_bytes_cached_in_an_area_never_reach_a_buffer(target: Target) -> None:
    """A file's pages evicted into cleancache sit in the areas' pages; every
    area allocated whole must show none of them, and the file must still
    read back right (its cached copies are dropped, not written anywhere)."""
    token = f"GCMA-FILE-{os.getpid()}-{time.monotonic_ns()}"
    t = target.shell
    # /slow has room to spare (/data is nearly full of fixture files).
    path = "/slow/hostile-leak.bin"
    heaps = [*AREAS, "cma-guarantee"]
    t.check(f"yes {token} | head -c {24 << 20} > {path}; sync", timeout=300)
    try:
        digest = t.check(f"sha256sum {path}").split()[0]
        t.check("echo 1 > /proc/sys/vm/drop_caches")
        cached = {h: pool_stat(target, h, "cached") for h in heaps}
        assert sum(cached.values()) >= (16 << 20) // 4096, cached
        res = t.run(f"heap_hostile scan {token} {' '.join(heaps)}", timeout=600)
        assert res.ok, res.stdout
        sizes = {**AREAS, "cma-guarantee": 128 * MIB}
        for heap in heaps:
            # The whole of it: a partial scan would prove less.
            assert f"heap={heap} scanned_mib={sizes[heap] // MIB} nonzero_bytes=0 " \
                   "token_copies=0" in res.stdout, res.stdout
            # Every cached page was taken back by the allocations.
            assert pool_stat(target, heap, "cached") == 0
        assert t.check(f"sha256sum {path}").split()[0] == digest
    finally:
        t.run(f"rm -f {path}")
    _assert_areas_empty(t)


# arm64 kernel addresses: ffff... with 48-bit VAs, fff0... with 52-bit (LPA2,
# which QEMU's -cpu max has). Either way 16 hex digits starting fff.
KERNEL_ADDRESS = re.compile(r"\b(0x)?fff[0-9a-f]{13}\b", re.I)
# Module parameters only: /sys/module/<m>/sections is the kernel's own
# (root-only, and addresses by design).
OUR_FILES = ("/sys/kernel/mm/cleancache", "/sys/module/cleancache/parameters",
             "/sys/module/gcma_area/parameters", "/sys/module/gcma_heap/parameters",
             "/sys/bus/platform/drivers/gcma_area", "/sys/kernel/debug/gcma_heap")


def test_statistics_show_no_kernel_address_and_knobs_are_root_only(target: Target) -> None:
    t = target.shell
    areas = "/sys/kernel/gcma_area"
    files = t.check(f"find {' '.join(OUR_FILES)} {areas} -type f 2>/dev/null; true").split()
    assert len(files) > 30, files
    # Read as root, who sees the most (write-only files just fail to read).
    contents = t.check("for f in " + " ".join(files) + "; do echo \"== $f\"; "
                       "cat $f 2>/dev/null; done; true")
    assert contents.count("== ") == len(files)
    assert [m.group(0) for m in KERNEL_ADDRESS.finditer(contents)] == [], contents
    # Every writable file is writable by root only, and refuses another user.
    writable = t.check(f"find {' '.join(OUR_FILES)} {areas} -type f -perm /222 "
                       "2>/dev/null; true").split()
    assert any(f.endswith("/donate") for f in writable), writable
    assert any(f.endswith("/admit_all") for f in writable), writable
    for f in writable:
        mode, owner = t.check(f"stat -L -c '%a %u' {f}").split()
        assert int(mode, 8) & 0o022 == 0 and owner == "0", (f, mode, owner)
    for f in (w for w in writable if w.endswith(("/donate", "/admit_all"))):
        res = t.run(f"run_as_uid 2000 sh -c 'echo 0 > {f}'")
        assert not res.ok and "Permission denied" in res.stderr, (f, res)
    assert t.check("cat /sys/kernel/gcma_area/camera/donate").strip() == "1"


def test_heap_device_nodes_are_root_only(target: Target) -> None:
    """The kernel's default, kept on purpose (see README, "Who may allocate"):
    0600 root:root; Android's ueventd sets the mode for its users."""
    t = target.shell
    for area in AREAS:
        assert t.check(f"stat -c '%a %u %g' /dev/dma_heap/{area}").strip() == "600 0 0"
        res = t.run(f"run_as_uid 2000 heap_alloc -s 4K -n 1 {area}")
        assert not res.ok and "Permission denied" in res.stdout + res.stderr, res


CHURN = "/tmp/gcma-churn"


@pytest.mark.usefixtures("admit_all")
def test_many_processes_and_threads_on_two_areas_while_page_cache_churns(
        target: Target) -> None:
    """heap_fuzz in 3 processes of 3 threads on both areas while a loop reads
    the data disks and drops the page cache, round after round: every round
    stores pages into the areas (admit_all) that the fuzz's allocations take
    back."""
    t = target.shell
    stored = int(t.check("cat /sys/kernel/mm/cleancache/stored"))
    bgloop.start(t, CHURN, "cat /data/*.bin /erofs/*.bin > /dev/null; "
                           "echo 1 > /proc/sys/vm/drop_caches")
    try:
        report = fuzz.run(t, list(AREAS), seed=20261128, seconds=30, procs=3, threads=3)
    finally:
        rounds, stopped = bgloop.stop(t, CHURN, wait_s=120)
    assert stopped and rounds >= 1, (rounds, stopped)
    assert report.ok and report.steps > 1000, report
    # The churn stored into the areas while the fuzz allocated from them
    # (whether a random allocation landed on a cached page is chance).
    assert int(t.check("cat /sys/kernel/mm/cleancache/stored")) > stored
    _assert_areas_empty(t)


def test_page_cache_stays_right_while_the_heaps_are_allocated(target: Target) -> None:
    """The integrity run (every read checked against its sha256) while
    userspace allocates all along from the areas gcma_stress does not use
    (video, and the CMA pool backed by GCMA), on each kernel variant (the
    debug one has lockdep, DEBUG_VM and fault injection)."""
    report = integrity.run(target.shell, rounds=1, admit_all=True,
                           heap_load=("video", "cma-guarantee"))
    assert report["mismatches"] == 0
    load = report["heap_load"]
    assert load["rounds"] > 0 and load["failures"] == [], load  # type: ignore[index]
    _assert_areas_empty(target.shell)


FUZZED_AREAS = {
    "gcma-area-y-cells": "memory-region has a bad reg",
    "gcma-area-y-huge": "not all of it is mapped System RAM",
    "gcma-area-y-labelempty": "name empty or too long",
    "gcma-area-y-labellong": "name empty or too long",
    "gcma-area-y-labellist": "label is not one string",
    "gcma-area-y-labelnovalue": "label is not one string",
    "gcma-area-y-labelnum": "label is not one string",
    "gcma-area-y-labelzero": "label is not one string",
    "gcma-area-y-regionempty": "memory-region is not one phandle",
    "gcma-area-y-regionnum": "memory-region does not point to a node",
    "gcma-area-y-regionshortstr": "memory-region does not point to a node",
    "gcma-area-y-regionstr": "memory-region is not one phandle",
    "gcma-area-y-regiontwo": "memory-region is not one phandle",
    "gcma-area-y-regstr": "memory-region has a bad reg",
    "gcma-area-y-sizehuge": "memory-region is not reserved memory",
    "gcma-area-y-sizestr": "memory-region is not reserved memory",
    # of_address_to_resource() refuses a range that wraps.
    "gcma-area-y-wrap": "memory-region has a bad reg",
}


def test_fuzzed_device_tree_values_are_rejected(built: None, variant: str) -> None:
    # Malformed on purpose: dtc's warnings about it are silenced.
    with _boot_with_fixture(variant, "fuzzed-areas", strict=False) as shell:
        assert_rejected_once_each(shell.check("dmesg"), FUZZED_AREAS,
                                  "gcma_area: /gcma-area-y-")
        heaps = shell.check("ls /dev/dma_heap").split()
        assert not [h for h in heaps if h.startswith("y-")], heaps
        for area in AREAS:
            assert "ok=2" in shell.check(f"heap_alloc -s 4M -n 2 {area}")


def test_unloading_under_a_live_buffer_is_refused_and_loses_nothing(target: Target) -> None:
    """A live buffer holds gcma_heap (its refcount), and the area cannot
    stop lending. (gcma_heap is permanent and holds gcma_area anyway, so
    the rmmods are refused with or without the buffer: they are checked
    for being harmless.)"""
    t = target.shell
    refcnt = "/sys/module/gcma_heap/refcnt"
    idle = int(t.check(f"cat {refcnt}"))
    t.check("rm -f /tmp/hold.release && heap_hostile hold camera /tmp/hold.release "
            "> /tmp/hold.out 2>&1 & echo $! > /tmp/hold.pid")
    try:
        t.check("i=0; until grep -q holding= /tmp/hold.out || [ $i -ge 300 ]; do "
                "sleep 0.1; i=$((i+1)); done; grep -q holding= /tmp/hold.out", timeout=60)
        assert int(t.check(f"cat {refcnt}")) > idle
        for module in ("gcma_heap", "gcma_area"):
            res = t.run(f"rmmod {module}")
            assert not res.ok and "rmmod" in res.stderr + res.stdout, res
        res = t.run("echo 0 > /sys/kernel/gcma_area/camera/donate")
        assert not res.ok and "busy" in res.stderr.lower(), res
    finally:
        t.check("touch /tmp/hold.release; i=0; "
                "while kill -0 $(cat /tmp/hold.pid) 2>/dev/null && [ $i -lt 300 ]; do "
                "sleep 0.1; i=$((i+1)); done", timeout=60)
        t.run("echo 1 > /sys/kernel/gcma_area/camera/donate")
    assert "case=hold want=ok got=ok ok" in t.check("cat /tmp/hold.out")
    assert int(t.check(f"cat {refcnt}")) == idle
    assert "gcma_heap" in t.check("cat /proc/modules")
    _assert_areas_empty(t)


def test_area_module_reloads_a_hundred_times(bare_target: Target) -> None:
    t = bare_target.shell
    module = "/lib/modules/gcma/gcma_area.ko"
    pages = sum(AREAS.values()) // 4096

    def meminfo() -> dict[str, int]:
        return {k.rstrip(":"): int(v) for k, v, *_ in
                (ln.split() for ln in t.check("cat /proc/meminfo").splitlines())}

    # One warm-up cycle: the first load's one-time allocations are not drift.
    t.check(f"insmod {module} && rmmod gcma_area")
    before = meminfo()
    res = t.run(f"i=0; while [ $i -lt 100 ]; do insmod {module} || exit 1; "
                "d=$(cat /sys/kernel/mm/cleancache/donated); "
                f"[ $d -eq {pages} ] || {{ echo cycle $i donated $d; exit 1; }}; "
                "rmmod gcma_area || exit 1; "
                "[ $(cat /sys/kernel/mm/cleancache/donated) -eq 0 ] || exit 1; "
                "i=$((i+1)); done; echo cycles=$i", timeout=900)
    assert res.ok and "cycles=100" in res.stdout, res.stdout + res.stderr
    after = meminfo()
    assert t.check("ls /sys/kernel/mm/cleancache/pools").split() == []
    # Nothing kept per cycle: 100 cycles cost well under a page each. Not on
    # KASAN kernels, whose quarantine holds freed objects back on purpose:
    # there kmemleak (at the fixture's end) is the leak check.
    if bare_target.variant != "kasan":
        assert after["SUnreclaim"] - before["SUnreclaim"] < 400, (before, after)
        assert before["MemFree"] - after["MemFree"] < 4096, (before, after)
    # And it still works after all that.
    t.check(f"insmod {module} && insmod /lib/modules/gcma/gcma_heap.ko")
    assert "ok=2" in t.check("heap_alloc -s 4M -n 2 camera")


def _gcma(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gcma", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_a_target_hanging_at_boot_fails_within_its_timeout(built: None) -> None:
    """Init never says ready: the start gives up at its timeout with one
    clear message and exit 3, and no QEMU is left behind."""
    name = f"pytest-{os.getpid()}-hang-boot"
    t0 = time.monotonic()
    res = _gcma("target", "start", "--name", name, "--timeout", "40",
                "--append", "rdinit=/bin/busybox -- sleep 3600", timeout=150)
    took = time.monotonic() - t0
    assert res.returncode == 3, res
    assert "Traceback" not in res.stderr
    assert "not ready after 40s; last console lines" in res.stderr, res.stderr
    assert took < 40 + 60, took
    target = EmulatedTarget(name)
    assert target.state() is None
    # Nothing runs with that target's console file any more.
    assert subprocess.run(["pgrep", "-f", str(target.console)],
                          capture_output=True).returncode == 1


def test_a_target_hanging_mid_command_fails_within_its_timeout(built: None) -> None:
    """The target freezes (QEMU stopped) under a running command: the
    command ends at its timeout with a clear message and exit 3."""
    name = f"pytest-{os.getpid()}-hang-run"
    assert _gcma("target", "start", "--name", name, timeout=300).returncode == 0
    target = EmulatedTarget(name)
    state = target.state()
    assert state is not None
    pid = int(state["pid"])
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gcma", "target", "shell", "--name",
                                 name, "--timeout", "20", "--",
                                 "touch /tmp/running; sleep 5; echo done"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Frozen only once the command runs on the target.
        assert wait_for(lambda: _gcma("target", "shell", "--name", name, "--",
                                         "test -e /tmp/running", timeout=60).returncode == 0,
                           60)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, (out, err)
        # Either the timeout or a dead link ends it: one line, no traceback.
        assert "timed out after 20" in err or "connection dropped" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert time.monotonic() - t0 < 20 + 30
        assert "done" not in out
    finally:
        os.kill(pid, signal.SIGCONT)
        target.stop()
    assert not process_alive(pid)
