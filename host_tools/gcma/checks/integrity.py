"""Page-cache integrity under cleancache, on a running target.

Files on ext4 (/data, and /data1k with 1 KiB blocks) and erofs (/erofs) with
known sha256 sums are read in rounds inside a memory cgroup small enough that
their pages are evicted into
cleancache and restored on the next round, while the gcma_stress module keeps
allocating ranges of the area that lends cleancache its pages. Then
``cc_mutate`` changes ext4 files in every way a file can change and checks
every read. Every read is verified; the counters of each phase are the
differences of /sys/kernel/mm/cleancache/ across it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from gcma.checks import bgloop, klog
from gcma.errors import CheckFailed, UserError
from gcma.targets.transport import Transport

CLEANCACHE = "/sys/kernel/mm/cleancache"
STRESS_PARAMS = "/sys/module/gcma_stress/parameters"
CGROUP = "/sys/fs/cgroup/gcma-reader"
ADMIT_ALL = "/sys/module/cleancache/parameters/admit_all"
COUNTERS = ("stored", "restored", "missed", "invalidated", "reclaimed", "recalled",
            "skipped", "cached")


@dataclass
class Phase:
    name: str
    verified_reads: int = 0
    mismatches: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        looked = self.counters.get("restored", 0) + self.counters.get("missed", 0)
        return self.counters.get("restored", 0) / looked if looked else 0.0


def counters(t: Transport, names: tuple[str, ...] = COUNTERS) -> dict[str, int]:
    """The global cleancache counters ``names``, read in one command."""
    out = t.check(f"cd {CLEANCACHE} && grep . {' '.join(names)}")
    return {k: int(v) for k, v in (line.split(":", 1) for line in out.split())}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] if k != "cached" else after[k] for k in after}


def make_cgroup(t: Transport, cgroup: str, memory_limit: str) -> None:
    """A memory cgroup whose limit makes reclaim evict what its tasks read."""
    t.check(f"mkdir -p {cgroup} && echo +memory > /sys/fs/cgroup/cgroup.subtree_control"
            f" && echo {memory_limit} > {cgroup}/memory.max")


def in_cgroup(command: str, cgroup: str = CGROUP) -> str:
    """``command`` as a shell that first moves itself into ``cgroup``."""
    return f"sh -c 'echo $$ > {cgroup}/cgroup.procs && {command}'"


def _bulk(t: Transport, name: str, mount: str, rounds: int) -> Phase:
    phase = Phase(name)
    before = counters(t)
    for _ in range(rounds):
        res = t.run(in_cgroup(f"cd {mount} && sha256sum -c MANIFEST.sha256"), timeout=900)
        phase.verified_reads += res.stdout.count(": OK") + res.stdout.count(": FAILED")
        phase.mismatches += res.stdout.count(": FAILED")
        if not res.ok and not phase.mismatches:
            raise CheckFailed(f"{name}: sha256sum failed: {res.stderr.strip()[-500:]}")
    phase.counters = _delta(before, counters(t))
    return phase


def set_admit_all(t: Transport, on: bool) -> None:
    """Cleancache's admission: every clean folio (on), or only those with a
    record of reuse (off, the kernel's default)."""
    t.check(f"echo {int(on)} > {ADMIT_ALL}")


HEAP_LOAD = "/tmp/gcma-heap-load"


def _start_heap_load(t: Transport, heaps: tuple[str, ...]) -> None:
    """Userspace allocations in a loop beside the readers: each round takes
    8 MiB buffers from every heap (pages holding cached copies come back
    while the files are read) and checks that they read zero."""
    names = " ".join(shlex.quote(h) for h in heaps)
    bgloop.start(t, HEAP_LOAD, f"for h in {names}; do "
                 f"heap_alloc -s 8M -n 4 $h > {HEAP_LOAD}/last 2>&1 || "
                 f"cat {HEAP_LOAD}/last >> {HEAP_LOAD}/failures; done")


def _stop_heap_load(t: Transport) -> dict[str, object]:
    """Ask the loop to finish its round; one that does not within a minute is
    killed, and that is a failure of the run."""
    rounds, stopped = bgloop.stop(t, HEAP_LOAD, wait_s=60)
    failures = t.run(f"cat {HEAP_LOAD}/failures 2>/dev/null").stdout.strip().splitlines()
    if not stopped:
        failures.append("the allocation loop did not stop within a minute (killed)")
    return {"rounds": rounds, "failures": failures}


def run(t: Transport, rounds: int = 3, memory_limit: str = "48M",
        stress_area: str = "camera", admit_all: bool = False,
        heap_load: tuple[str, ...] = ()) -> dict[str, object]:
    """Run every phase; raises :class:`CheckFailed` on any mismatch.

    The bulk phases read under the given admission policy; the mutation phase
    always stores everything, since it evicts pages it just wrote. With
    ``heap_load``, those heaps are allocated from userspace all along too."""
    if stress_area in heap_load:
        raise UserError(f"--heap-load {stress_area}: gcma_stress holds that area; "
                        "load another heap")
    make_cgroup(t, CGROUP, memory_limit)
    t.check(f"insmod /lib/modules/gcma-tests/gcma_stress.ko area={stress_area}")
    load: dict[str, object] = {}
    try:
        if heap_load:
            _start_heap_load(t, heap_load)
        set_admit_all(t, admit_all)
        phases = [_bulk(t, "ext4", "/data", rounds), _bulk(t, "erofs", "/erofs", rounds),
                  _bulk(t, "ext4-1k", "/data1k", rounds)]
        set_admit_all(t, True)
        before = counters(t)
        res = t.run(f"cc_mutate /data/mutations {rounds}", timeout=900)
        values = dict(w.split("=", 1) for w in res.stdout.split() if "=" in w
                      and w.split("=", 1)[0] in ("verified_reads", "mismatches", "failures"))
        if "verified_reads" not in values or values.get("failures") != "0":
            raise CheckFailed(f"cc_mutate did not complete: {res.stdout[-1500:]}"
                              f"{res.stderr[-500:]}")
        mutations = Phase("ext4-mutations", int(values["verified_reads"]),
                          int(values["mismatches"]), _delta(before, counters(t)))
        phases.append(mutations)
        stress = {k: int(t.check(f"cat {STRESS_PARAMS}/{k}"))
                  for k in ("allocs", "pages_allocated", "alloc_failures", "bad_pages")}
    finally:
        try:
            if heap_load:
                load = _stop_heap_load(t)
        finally:
            t.run(f"rmmod gcma_stress; echo 0 > {ADMIT_ALL}")
    report: dict[str, object] = {
        "admission": "all" if admit_all else "workingset",
        "phases": [{"name": p.name, "verified_reads": p.verified_reads,
                    "mismatches": p.mismatches, "hit_rate": round(p.hit_rate, 3),
                    **p.counters} for p in phases],
        "verified_reads": sum(p.verified_reads for p in phases),
        "mismatches": sum(p.mismatches for p in phases),
        "gcma_stress": stress,
        "heap_load": load,
        "mutation_log": [line for line in res.stdout.splitlines() if line.startswith(
            ("change=", "MISMATCH", "FAIL"))],
    }
    findings = klog.scan(t.check("dmesg"))
    report["kernel_log_findings"] = [f"{f.kind}: {f.line}" for f in findings]
    bad = [f"{p.name}: {p.mismatches} mismatches" for p in phases if p.mismatches]
    bad += [f"kernel log: {f.kind}: {f.line}" for f in findings]
    if stress["bad_pages"]:
        bad.append(f"gcma_stress: {stress['bad_pages']} bad pages")
    if load.get("failures"):
        bad.append(f"heap load: {'; '.join(load['failures'])[:500]}")  # type: ignore[arg-type]
    report["failures"] = bad
    if bad:
        raise CheckFailed("page-cache integrity: " + "; ".join(bad), report)
    return report
