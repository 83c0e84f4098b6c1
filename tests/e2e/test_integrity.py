"""Page-cache integrity with cleancache on ext4 and erofs while GCMA ranges
are allocated and freed underneath."""

from __future__ import annotations

import pytest

from gcma.checks import integrity

from .conftest import Target


def test_no_stale_or_lost_data(target: Target) -> None:
    donated_before = int(target.shell.check("cat /sys/kernel/mm/cleancache/donated"))
    # Every clean folio stored: the most copies, the most chances to go stale.
    report = integrity.run(target.shell, rounds=2, admit_all=True)  # raises on any mismatch
    assert report["admission"] == "all"
    phases = {p["name"]: p for p in report["phases"]}  # type: ignore[attr-defined]
    assert report["mismatches"] == 0
    for name in ("ext4", "erofs", "ext4-1k"):
        assert phases[name]["verified_reads"] > 0
        assert phases[name]["stored"] > 0, phases[name]
        assert phases[name]["restored"] > 0, phases[name]
    # gcma_stress took pages holding cached data back while the files were read.
    assert phases["ext4"]["recalled"] + phases["erofs"]["recalled"] > 0
    mutations = phases["ext4-mutations"]
    assert mutations["verified_reads"] == 14 * 2 * 3
    assert mutations["stored"] > 0 and mutations["restored"] > 0
    assert mutations["invalidated"] > 0
    assert len(report["mutation_log"]) == 14  # type: ignore[arg-type]
    assert all(line.endswith(" ok") for line in report["mutation_log"])  # type: ignore[union-attr]
    stress = report["gcma_stress"]
    assert stress["allocs"] > 0 and stress["bad_pages"] == 0  # type: ignore[index]
    # Unloading the consumer unregistered its area: every page came back.
    assert int(target.shell.check("cat /sys/kernel/mm/cleancache/donated")) == donated_before


def test_cleancache_sysfs(target: Target) -> None:
    names = set(target.shell.check("ls /sys/kernel/mm/cleancache").split())
    assert set(integrity.COUNTERS) | {"donated", "pools"} <= names


def _cc(target: Target, counter: str) -> int:
    return int(target.shell.check(f"cat /sys/kernel/mm/cleancache/{counter}"))


@pytest.mark.usefixtures("admit_all")
def test_copies_of_linked_files_survive_inode_eviction(target: Target) -> None:
    """Copies are keyed by (inode number, generation): evicting the inode of
    a file that is still linked keeps them, and the next instance of the
    inode restores from them. Unlinking the file drops them."""
    path = "/data/file010.bin"
    # Every page of the file goes to cleancache (fadvise drains the per-CPU
    # LRU batches that drop_caches skips), so the inode has no page cache
    # left; then the dcache and icache shrinkers evict the dentry and inode.
    evict = "; ".join(["echo 2 > /proc/sys/vm/drop_caches"] * 3)
    want = target.shell.check(f"sha256sum {path} && sync && cc_race evict {path}").split()[0]
    target.shell.check(evict)
    restored = _cc(target, "restored")
    assert target.shell.check(f"sha256sum {path}").split()[0] == want
    # 2 MiB: most of its 512 pages come back from cleancache, not the disk.
    assert _cc(target, "restored") - restored >= 256

    victim = "/data/evict-victim"
    target.shell.check(f"cp {path} {victim} && sync && cat {victim} > /dev/null"
                       f" && cc_race evict {victim} && {evict}")
    cached = _cc(target, "cached")
    invalidated = _cc(target, "invalidated")
    target.shell.check(f"rm {victim} && {evict}")
    assert _cc(target, "invalidated") - invalidated >= 256
    assert _cc(target, "cached") <= cached - 256


def test_admission_stores_a_page_evicted_twice(target: Target) -> None:
    """By default a page evicted for the first time (here: written, then
    evicted) passes through cleancache; evicted again soon after, it is
    stored. (A loop larger than memory and the pools is never stored:
    ``gcma bench stream``.)"""
    t = target.shell
    src = "/data/" + t.check("ls /data | grep -m1 '.bin$'").strip()
    path = "/data/admission-test.bin"
    pages = int(t.check(f"stat -c %s {src}")) // 4096
    assert t.check(f"cat {integrity.ADMIT_ALL}").strip() == "N"
    try:
        t.check(f"cp {src} {path} && sync")
        before = _cc(target, "stored")
        t.check(f"cc_race evict {path}")
        assert _cc(target, "stored") - before == 0
        before = _cc(target, "stored")
        t.check(f"cat {path} > /dev/null && cc_race evict {path}")
        assert _cc(target, "stored") - before >= pages * 9 // 10
        assert t.check(f"cmp {src} {path} && echo same").strip() == "same"
    finally:
        t.run(f"rm -f {path}")
