"""What cleancache costs, measured as ratios in one boot: ``gcma bench cost``.

1. Page-cache-heavy reads with cleancache built in but no pool registered
   (the target boots with the vendor modules skipped), then the same reads
   after the modules are loaded and their pools registered. Files of every
   data disk are read in a memory cgroup smaller than them, so reclaim
   evicts (and, with pools, stores) pages all the time; a round reads them
   all twice. The ratio is the median round time with pools over the median
   without.
2. A whole-area (128 MiB) GCMA allocation while another CPU streams files
   through the page cache, against the same allocation on an idle system:
   the ratio of the tail latencies (the p99 from 100 allocations on, the
   slowest one below that: never called a p99).

``gcma bench stream`` reads a file larger than the guest's RAM once per
pass, with no pool, then with pools under the default admission (only
folios with a record of reuse are stored) and with every clean folio
admitted: the ratios of the median pass times say what a stream costs.

``gcma bench free-stall`` measures what closing big buffers costs everybody
else on the area: the tail of small allocations while another process
allocates and frees a buffer of most of the area in a loop, over the same
tail on an idle area.

``gcma bench heaps`` puts the three kinds of contiguous memory of one kernel
side by side: the stock CMA heap over plain CMA (``linux,cma``), the same
heap over a CMA pool with "guarantee", backed by GCMA (``cma-guarantee``),
and our vendor heap (``camera``). Each allocates the same buffers on an idle
system, then while another CPU streams a file larger than RAM through the
page cache, which fills free memory, plain CMA's pool included, with
movable page-cache pages. Per heap: successes and the p50/p99/max latency
of both runs, and the ratio of the p99s.

Times come from the target's own clock (/proc/uptime, 10 ms), read on the
target around the timed command in one shell, so ssh adds nothing.
Absolute numbers are TCG emulation; the ratios are the result.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from gcma.checks import integrity
from gcma.errors import CheckFailed
from gcma.report import parse_kv
from gcma.targets.transport import Transport

CGROUP = "/sys/fs/cgroup/gcma-bench"
CLEANCACHE = integrity.CLEANCACHE
COUNTERS = ("stored", "restored", "missed", "donated")
#: Everything on the data disks: ext4 (4K and 1K blocks) and erofs.
FILES = "/data/*.bin /data1k/*.bin /erofs/*.bin"
#: The modules the target boots without, loaded later in this order.
MODULES = ("gcma_area", "gcma_heap")
SKIP_CMDLINE = "gcma.skip=" + ",".join(MODULES)


@dataclass
class ReadPass:
    rounds_s: list[float] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.rounds_s)


def uptime(t: Transport) -> float:
    return float(t.check("cut -d' ' -f1 /proc/uptime").strip())


#: The line timed() adds after the command's output: start and end uptime.
ELAPSED = "gcma-elapsed"


def timed(t: Transport, command: str, timeout: float = 1800) -> float:
    """Seconds ``command`` took by the target's clock, read before and after
    it in the same shell on the target: no round trip to the host inside."""
    out = t.check(f"s=$(cut -d' ' -f1 /proc/uptime); {{ {command}; }} || exit $?; "
                  f"e=$(cut -d' ' -f1 /proc/uptime); echo {ELAPSED} $s $e",
                  timeout=timeout)
    last = out.strip().splitlines()[-1].split() if out.strip() else []
    if len(last) != 3 or last[0] != ELAPSED:
        raise CheckFailed(f"timing {command!r}: no '{ELAPSED}' line in its output")
    return round(float(last[2]) - float(last[1]), 2)


def timed_passes(t: Transport, command: str, passes: int, warm_up: bool) -> ReadPass:
    """``passes`` timed runs of ``command`` (after an untimed one if
    ``warm_up``), with the counters' differences across them."""
    result = ReadPass()
    before = integrity.counters(t, COUNTERS)
    for i in range(passes + warm_up):
        elapsed = timed(t, command)
        if i or not warm_up:
            result.rounds_s.append(elapsed)
    after = integrity.counters(t, COUNTERS)
    result.counters = {k: after[k] - before[k] for k in after if k != "donated"}
    result.counters["donated"] = after["donated"]
    return result


def _read_pass(t: Transport, rounds: int) -> ReadPass:
    """One warm-up round, then ``rounds`` timed ones."""
    return timed_passes(t, integrity.in_cgroup(
        f"cat {FILES} > /dev/null && cat {FILES} > /dev/null", CGROUP), rounds, True)


#: Fewest allocations for which a p99 is claimed; below it the tail
#: statistic is the slowest allocation ("max").
P99_MIN_COUNT = 100


def tail_key(count: int) -> str:
    """The tail statistic ``count`` allocations support: "p99" or "max"."""
    return "p99" if count >= P99_MIN_COUNT else "max"


def _alloc_tail(t: Transport, heap: str, size: str, count: int) -> int:
    """The tail latency (tail_key(count)) of ``count`` allocations, us."""
    res = t.check(f"heap_alloc -s {size} -n {count} {heap}", timeout=1800)
    kv = parse_kv(res.splitlines()[-1])
    if kv.get("ok") != str(count):
        raise CheckFailed(f"heap_alloc on {heap} failed: {res.strip()}")
    return int(kv[f"{tail_key(count)}_us"])


def _tail_idle_and_busy(t: Transport, heap: str, size: str, count: int, load: str,
                        stop: str) -> tuple[int, int]:
    """The allocation tail idle, then while the shell command ``load`` runs
    in the background (``stop`` ends what it started)."""
    idle = _alloc_tail(t, heap, size, count)
    t.check(f"{load} > /dev/null 2>&1 & echo $! > /tmp/gcma-bench-load")
    try:
        busy = _alloc_tail(t, heap, size, count)
    finally:
        t.run(f"kill $(cat /tmp/gcma-bench-load); {stop}; true")
    return idle, busy


def run(t: Transport, rounds: int = 5, memory_limit: str = "64M", heap: str = "camera",
        alloc_size: str = "128M", allocs: int = 20) -> dict[str, dict[str, object]]:
    """Run on a target booted with :data:`SKIP_CMDLINE`; returns the report."""
    if int(t.check(f"cat {CLEANCACHE}/donated")) != 0:
        raise CheckFailed(f"a pool is registered already: boot with {SKIP_CMDLINE}")
    integrity.make_cgroup(t, CGROUP, memory_limit)
    no_pool = _read_pass(t, rounds)
    for mod in MODULES:
        t.check(f"insmod /lib/modules/gcma/{mod}.ko")
    pools = _read_pass(t, rounds)
    if pools.counters["stored"] == 0:
        raise CheckFailed("no page was stored with pools registered: nothing was measured")

    idle_tail, busy_tail = _tail_idle_and_busy(
        t, heap, alloc_size, allocs,
        f"sh -c 'echo $$ > {CGROUP}/cgroup.procs && "
        f"exec sh -c \"while :; do cat {FILES} > /dev/null; done\"'",
        "pkill -f 'cat /data'")
    return {
        "read": {
            "no_pool_s": no_pool.rounds_s,
            "pools_s": pools.rounds_s,
            "ratio_pools_over_no_pool": round(pools.median_s / no_pool.median_s, 3),
            "no_pool_counters": no_pool.counters,
            "pools_counters": pools.counters,
            "memory_limit": memory_limit,
        },
        "alloc": {
            "heap": heap,
            "size": alloc_size,
            "count": allocs,
            "tail": tail_key(allocs),
            "idle_tail_us": idle_tail,
            "streaming_tail_us": busy_tail,
            "ratio_streaming_over_idle": round(busy_tail / idle_tail, 3),
        },
    }


def free_stall(t: Transport, heap: str = "camera", big: str = "112M", small: str = "1M",
               allocs: int = 300) -> dict[str, object]:
    """Run on a target with the vendor modules loaded; returns the report."""
    idle_tail, busy_tail = _tail_idle_and_busy(
        t, heap, small, allocs,
        f"sh -c 'while :; do heap_alloc -H -s {big} -n 1 {heap}; done'",
        "pkill -x heap_alloc")
    return {
        "heap": heap,
        "freed_size": big,
        "timed_size": small,
        "count": allocs,
        "tail": tail_key(allocs),
        "idle_tail_us": idle_tail,
        "freeing_tail_us": busy_tail,
        "ratio_freeing_over_idle": round(busy_tail / idle_tail, 3),
    }


STREAM_FILE = "/data/stream.bin"


def stream(t: Transport, size_mib: int = 1200, passes: int = 3) -> dict[str, object]:
    """Run on a target booted with :data:`SKIP_CMDLINE`; returns the report.

    The file is sparse (the data disk is smaller than the guest's RAM): its
    pages are read without I/O, which leaves cleancache's copying nothing to
    hide behind."""
    if int(t.check(f"cat {CLEANCACHE}/donated")) != 0:
        raise CheckFailed(f"a pool is registered already: boot with {SKIP_CMDLINE}")
    t.check(f"truncate -s {size_mib}M {STREAM_FILE} && sync")
    read = f"cat {STREAM_FILE} > /dev/null"
    no_pool = timed_passes(t, read, passes, False)
    for mod in MODULES:
        t.check(f"insmod /lib/modules/gcma/{mod}.ko")
    integrity.set_admit_all(t, False)
    workingset = timed_passes(t, read, passes, False)
    integrity.set_admit_all(t, True)
    try:
        admit_all = timed_passes(t, read, passes, False)
    finally:
        integrity.set_admit_all(t, False)
    return {
        "size_mib": size_mib,
        "no_pool_s": no_pool.rounds_s,
        "workingset_s": workingset.rounds_s,
        "admit_all_s": admit_all.rounds_s,
        "ratio_workingset_over_no_pool": round(workingset.median_s / no_pool.median_s, 3),
        "ratio_admit_all_over_no_pool": round(admit_all.median_s / no_pool.median_s, 3),
        "workingset_counters": workingset.counters,
        "admit_all_counters": admit_all.counters,
    }


#: The heaps ``gcma bench heaps`` compares, in report order.
COMPARED_HEAPS = ("linux,cma", "cma-guarantee", "camera")


def _alloc_run(t: Transport, heap: str, size: str, count: int) -> dict[str, int]:
    """One heap_alloc run: successes and latencies, failures counted, not raised."""
    # heap_alloc exits 1 when any allocation failed: that is a result here.
    res = t.run(f"heap_alloc -s {size} -n {count} {heap}", timeout=1800)
    lines = res.stdout.strip().splitlines()
    kv = parse_kv(lines[-1]) if lines else {}
    if "ok" not in kv:
        raise CheckFailed(f"heap_alloc on {heap} did not run: {res.stdout.strip()} "
                          f"{res.stderr.strip()}")
    if kv.get("not_zero", "0") != "0" or kv.get("bad_data", "0") != "0":
        raise CheckFailed(f"heap_alloc on {heap} saw wrong data: {res.stdout.strip()}")
    run = {"ok": int(kv["ok"]), "alloc_fail": int(kv["alloc_fail"])}
    for key in ("p50_us", "p99_us", "max_us"):
        if key in kv:
            run[key] = int(kv[key])
    return run


def heaps(t: Transport, size: str = "32M", allocs: int = 20,
          stream_mib: int = 1200) -> dict[str, object]:
    """Run on the default target (vendor modules loaded, the guaranteed CMA
    pool in its DT); returns the report."""
    present = t.check("ls /dev/dma_heap").split()
    missing = [h for h in COMPARED_HEAPS if h not in present]
    if missing:
        raise CheckFailed(f"heaps missing on the target: {', '.join(missing)}")
    t.check(f"truncate -s {stream_mib}M {STREAM_FILE} && sync")
    idle = {h: _alloc_run(t, h, size, allocs) for h in COMPARED_HEAPS}
    t.check(f"sh -c 'while :; do cat {STREAM_FILE}; done' > /dev/null 2>&1 & "
            "echo $! > /tmp/gcma-bench-load")
    try:
        # Let the stream fill free memory before the first allocation.
        t.check("sleep 10")
        busy = {h: _alloc_run(t, h, size, allocs) for h in COMPARED_HEAPS}
    finally:
        t.run("kill $(cat /tmp/gcma-bench-load); pkill -x cat; true")
        t.run(f"rm -f {STREAM_FILE}")
    rows = {}
    key = f"{tail_key(allocs)}_us"
    for h in COMPARED_HEAPS:
        row: dict[str, object] = {"idle": idle[h], "streaming": busy[h]}
        # Only where every allocation of both runs succeeded.
        if (idle[h]["ok"] == busy[h]["ok"] == allocs and idle[h].get(key)
                and key in busy[h]):
            row["ratio_streaming_over_idle_tail"] = round(busy[h][key] / idle[h][key], 3)
        rows[h] = row
    return {"size": size, "count": allocs, "stream_mib": stream_mib,
            "tail": tail_key(allocs), "heaps": rows}
