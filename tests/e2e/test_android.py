"""The Android images on the emulated target: the vendor_boot ramdisk fragment
appended to the initramfs (as the bootloader concatenates vendor ramdisks),
the vendor_dlkm erofs image as a disk; modules loaded from each with
``modprobe -d`` in its modules.load order, as Android's init does."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gcma.android import images, manifest
from gcma.build import modules
from gcma.report import parse_kv
from gcma.targets.emulated import Artefacts, EmulatedTarget

from .test_heaps import AREAS


def test_vendor_images_hold_what_depmod_makes(built: None, tmp_path: Path) -> None:
    m = manifest.load()
    dist = modules.dist_dir()
    ramdisk = images.read_cpio(images.vendor_ramdisk(m, dist, tmp_path / "r.cpio").read_bytes())
    files = {n: d for n, (mode, d) in ramdisk.items() if stat.S_ISREG(mode)}
    first = [mod.ko for mod in m.stage("vendor_ramdisk")]
    assert files["lib/modules/modules.load"].decode().split() == first
    for ko in first:
        assert files[f"lib/modules/{ko}"] == (dist / ko).read_bytes()
    assert "lib/modules/modules.dep" in files and "lib/modules/modules.alias" in files
    # The area driver's device-tree alias, as depmod writes it.
    assert "alias of:N*T*Cgcma,area gcma_area" in files["lib/modules/modules.alias"].decode()
    assert not [n for n in files if n.endswith(".ko") and not n.startswith("lib/modules/")]


def test_vendor_dlkm_image_loads_on_the_emulated_target(built: None, variant: str,
                                                        tmp_path: Path) -> None:
    m = manifest.load()
    dist = modules.dist_dir(variant=variant)
    ramdisk = images.vendor_ramdisk(m, dist, tmp_path / "vendor_ramdisk.cpio")
    dlkm = images.vendor_dlkm(m, dist, tmp_path / "vendor_dlkm.img")  # fsck.erofs inside
    art = Artefacts.default(variant)
    initrd = tmp_path / "initramfs+vendor_ramdisk"
    # Page-aligned, as a bootloader lays out vendor ramdisks: the kernel skips
    # the zeros between archives, but reads the next one only where it is
    # aligned (an unaligned one is "invalid magic" and unpacking stops).
    first = art.initrd.read_bytes()
    initrd.write_bytes(first + b"\0" * (-len(first) % 4096) + ramdisk.read_bytes())
    art.initrd = initrd
    art.disks = (*art.disks, dlkm)
    emulated = EmulatedTarget(f"pytest-{os.getpid()}-{variant}-dlkm")
    shell = emulated.start(art, timeout=300, extra_cmdline="gcma.skip=gcma_area,gcma_heap")
    try:
        assert "gcma_" not in shell.check("cat /proc/modules")
        load = "sed 's/\\.ko$//' {0}/lib/modules/modules.load"
        # kmod's modprobe (busybox's shell would run its own applet, which has no -d).
        # First stage: the vendor ramdisk's modules, from /lib/modules.
        shell.check(f"/sbin/modprobe -d / -S . -a $({load.format('')})")
        assert shell.check("ls /dev/dma_heap").split().count("camera") == 0
        # Then vendor_dlkm, mounted as Android mounts it.
        disk = f"/dev/vd{chr(ord('a') + len(art.disks) - 1)}"
        shell.check(f"mkdir -p /vendor_dlkm && mount -t erofs -o ro {disk} /vendor_dlkm")
        assert shell.check("ls /vendor_dlkm/lib/modules").split() == sorted(
            ["gcma_heap.ko", "modules.alias", "modules.alias.bin", "modules.builtin.alias.bin",
             "modules.builtin.bin", "modules.dep", "modules.dep.bin", "modules.devname",
             "modules.load", "modules.softdep", "modules.symbols", "modules.symbols.bin"])
        shell.check(f"/sbin/modprobe -d /vendor_dlkm -S . -a $({load.format('/vendor_dlkm')})")
        loaded = [ln.split()[0] for ln in shell.check("cat /proc/modules").splitlines()]
        # /proc/modules lists the newest first.
        assert loaded.index("gcma_heap") < loaded.index("gcma_area"), loaded
        heaps = shell.check("ls /dev/dma_heap").split()
        assert set(AREAS) <= set(heaps), heaps
        for area in AREAS:
            row = parse_kv(shell.check(f"heap_alloc -s 4M -n 2 {area}"))
            assert row["ok"] == "2", row
    finally:
        shell.close()
        emulated.stop()
