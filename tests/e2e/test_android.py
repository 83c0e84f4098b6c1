"""The Android module image on the emulated target: the vendor_dlkm erofs
image we build, mounted as a disk, its modules loaded the way Android's init
does (``android-modload``: modules.load order, modules.options, modules.dep
through kmod's modprobe; ``--strict`` for first-stage init, where the first
failure stops the boot).

A device must boot whatever its device tree says: without our nodes, with
every node rejected, or with a bad ``source``, both modules still load (each
logs one line) and the strict loader reports no failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from gcma import paths
from gcma.android import images, manifest
from gcma.build import dt, modules
from gcma.report import parse_kv
from gcma.targets.emulated import Artefacts
from gcma.targets.machine import VIRT
from gcma.targets.transport import Transport

from .conftest import clean_boot
from .test_heaps import AREAS

#: What depmod leaves beside the modules in the image.
IMAGE_FILES = sorted(["gcma_area.ko", "gcma_heap.ko", "modules.alias", "modules.alias.bin",
                      "modules.builtin.alias.bin", "modules.builtin.bin", "modules.dep",
                      "modules.dep.bin", "modules.devname", "modules.load", "modules.softdep",
                      "modules.symbols", "modules.symbols.bin"])


@contextmanager
def _dlkm_target(variant: str, tmp_path: Path, images_: dict[str, Path],
                 dtb: Path | None = None) -> Iterator[Transport]:
    """A target booted without our modules (rcS skips them), each image of
    ``images_`` mounted read-only on its mount point as Android mounts
    vendor_dlkm. Its kernel log must stay clean for the whole test."""
    art = Artefacts.default(variant)
    if dtb is not None:
        art.dtb = dtb
    first = len(art.disks)
    art.disks = (*art.disks, *images_.values())
    with clean_boot(f"pytest-{os.getpid()}-{variant}-{tmp_path.name[-20:]}", art,
                    extra_cmdline="gcma.skip=gcma_area,gcma_heap") as shell:
        assert "gcma_" not in shell.check("cat /proc/modules")
        for i, mount in enumerate(images_):
            disk = f"/dev/vd{chr(ord('a') + first + i)}"
            shell.check(f"mkdir -p {mount} && mount -t erofs -o ro {disk} {mount}")
        yield shell


def _loaded(shell: Transport) -> list[str]:
    """Our modules in /proc/modules, oldest first."""
    mods = [ln.split()[0] for ln in shell.check("cat /proc/modules").splitlines()]
    return [m for m in reversed(mods) if m.startswith("gcma_")]


def test_vendor_dlkm_image_loads_on_the_emulated_target(built: None, variant: str,
                                                        tmp_path: Path) -> None:
    m = manifest.load()
    dlkm = images.vendor_dlkm(m, modules.dist_dir(variant=variant),
                              tmp_path / "vendor_dlkm.img")  # fsck.erofs inside
    with _dlkm_target(variant, tmp_path, {"/vendor_dlkm": dlkm}) as shell:
        top = "/vendor_dlkm/lib/modules"
        assert shell.check(f"ls {top}").split() == IMAGE_FILES
        assert shell.check(f"cat {top}/modules.load").split() == ["gcma_area.ko",
                                                                    "gcma_heap.ko"]
        # depmod saw both in one image: the dependency is written down.
        assert "gcma_heap.ko: gcma_area.ko" in shell.check(f"cat {top}/modules.dep")
        # The vendor_dlkm loader, by name only: modules.dep brings gcma_area.
        out = shell.check("android-modload /vendor_dlkm gcma_heap")
        assert out.splitlines()[-1] == "android-modload: loaded gcma_heap", out
        assert _loaded(shell) == ["gcma_area", "gcma_heap"]
        heaps = shell.check("ls /dev/dma_heap").split()
        assert set(AREAS) <= set(heaps), heaps
        for area in AREAS:
            row = parse_kv(shell.check(f"heap_alloc -s 4M -n 2 {area}"))
            assert row["ok"] == "2", row


def _no_area_lines(log: str) -> list[str]:
    """Our modules' lines of the kernel log (not the kernel's taint notice)."""
    return [ln.split("] ", 1)[-1] for ln in log.splitlines()
            if ("gcma_area: " in ln or "gcma_heap: " in ln) and "taints kernel" not in ln]


@pytest.mark.parametrize("case", ["no-areas", "all-rejected"])
def test_a_device_without_a_usable_area_boots(built: None, variant: str, tmp_path: Path,
                                              case: str) -> None:
    """First-stage init's strict loader (as on a Cuttlefish, where every
    module is first-stage) over our image: no failure, one line each. With
    all-rejected, a bad ``source`` in modules.options is tried first."""
    m = manifest.load()
    dist = modules.dist_dir(variant=variant)
    mounts = {"/vendor_dlkm": images.vendor_dlkm(m, dist, tmp_path / "vendor_dlkm.img")}
    overlays = [] if case == "no-areas" else [
        paths.PROJECT / "tests" / "fixtures" / "dt" / f"{case}.dtso"]
    dtb = dt.build(VIRT, overlays, name=f"virt-{case}")
    if case == "all-rejected":
        bad = manifest.Manifest(m.path, [replace(mod, params={"source": "nosuch"})
                                         if mod.name == "gcma_area" else mod
                                         for mod in m.modules], m.heaps)
        mounts["/bad_source"] = images.vendor_dlkm(bad, dist, tmp_path / "bad_source.img")
    with _dlkm_target(variant, tmp_path, mounts, dtb=dtb) as shell:
        if case == "all-rejected":
            res = shell.run("android-modload --strict /bad_source gcma_area")
            assert res.ok and "FAILED" not in res.stdout, res.stdout + res.stderr
            assert _loaded(shell) == ["gcma_area"]
            # The bad source is the one line: no node was looked at.
            assert _no_area_lines(shell.check("dmesg")) == [
                "gcma_area: source=nosuch: rejected: use dt or reserve_mem; no area"]
            shell.check("rmmod gcma_area && dmesg -c >/dev/null")
        res = shell.run("android-modload --strict /vendor_dlkm")
        assert res.ok, res.stdout + res.stderr
        assert res.stdout.splitlines() == ["android-modload: loaded gcma_area",
                                          "android-modload: loaded gcma_heap"], res.stdout
        assert _loaded(shell) == ["gcma_area", "gcma_heap"]
        rejected = [] if case == "no-areas" else [
            "gcma_area: /gcma-area-nolabel: rejected: no label",
            "gcma_area: /gcma-area-nomap: rejected: memory-region is no-map "
            "(GCMA needs it mapped)"]
        # One line per node, in the order their devices were probed, then
        # one line from each module.
        lines = _no_area_lines(shell.check("dmesg"))
        assert sorted(lines[:-2]) == rejected and lines[-2:] == [
            "gcma_area: no usable area (source=dt): nothing lent, no heap",
            "gcma_heap: no area: no heap"], lines
        assert int(shell.check("cat /sys/kernel/mm/cleancache/donated")) == 0
        heaps = shell.check("ls /dev/dma_heap").split()
        assert not set(heaps) & {"camera", "video", "nomap"}, heaps
