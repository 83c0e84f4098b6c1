"""Source checks that need the kernel tree: checkpatch, the Android branch builds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gcma import paths
from gcma.build import kernel, modules, rootfs
from gcma.build.toolchain import Toolchain

from .conftest import Target

MODULE_SOURCES = sorted(
    [*paths.PROJECT.glob("vendor_modules/*.[ch]"),
     *paths.PROJECT.glob("device_tests/kmod/*.[ch]"),
     *paths.PROJECT.glob("tests/fixtures/modules/*.[ch]")])
PATCHES = sorted(paths.PROJECT.glob("gki/patches/*.patch"))


def _tree() -> Path:
    tree = kernel.find_tree(kernel.kernel_paths())
    assert tree is not None, "kernel tree not unpacked"
    return tree


@pytest.mark.parametrize("source", MODULE_SOURCES + PATCHES,
                         ids=lambda p: str(p.relative_to(paths.PROJECT)))
def test_checkpatch_strict_clean(built: None, source: Path) -> None:
    args = ["--no-tree", "--strict", "--quiet", "--show-types"]
    if source.suffix != ".patch":
        args.append("--file")
    res = subprocess.run(["perl", str(_tree() / "scripts/checkpatch.pl"), *args, str(source)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout


#: The Android common kernel branches we compile-test against: their
#: include/linux/dma-heap.h is a fixture, their GCMA API the common one, and
#: their struct dma_buf_attachment has dma_map_attrs.
ANDROID_BRANCHES = {
    "android14-6.1": ["GCMA_HEAP_FLAGS=ulong", "GCMA_DMA_MAP_ATTRS=y"],
    "android15-6.6": ["GCMA_DMA_MAP_ATTRS=y"],
    "android16-6.12": ["GCMA_DMA_MAP_ATTRS=y"],
}
FIXTURES = paths.PROJECT / "tests" / "fixtures" / "android"


def _android_headers(branch: str, dest: Path) -> Path:
    """The branch's headers, to put before the kernel's own."""
    include = dest / "include"
    shutil.copytree(FIXTURES / "common" / "include", include)
    shutil.copytree(FIXTURES / branch / "include", include, dirs_exist_ok=True)
    # dma-buf.h is ours but for Android's field: add it to a copy.
    text = (_tree() / "include/linux/dma-buf.h").read_text()
    anchor = "struct dma_buf_attachment {\n"
    assert anchor in text
    (include / "linux/dma-buf.h").write_text(
        text.replace(anchor, anchor + "\tunsigned long dma_map_attrs;\n", 1))
    return include


@pytest.mark.parametrize("branch", sorted(ANDROID_BRANCHES))
def test_vendor_modules_build_against_android_branch(built: None, tmp_path: Path,
                                                     branch: str) -> None:
    """gcma_compat.h's Android variant, compiled against each branch's API."""
    work = tmp_path / "vendor_modules"
    shutil.copytree(paths.PROJECT / "vendor_modules", work)
    include = _android_headers(branch, tmp_path)
    kdir = kernel.kernel_paths().build
    features = modules.kernel_features(kdir, include=include)
    assert features == ANDROID_BRANCHES[branch]
    tc = Toolchain(use_ccache=False)
    # Headers before the kernel's own: NOSTDINC_FLAGS comes first on the line.
    res = subprocess.run(
        ["make", "-C", str(kdir), f"M={work}", *tc.make_vars(), "GCMA_API=android",
         *features, f"NOSTDINC_FLAGS=-nostdinc -I{include}", "W=1",
         "gcma_area.o", "gcma_heap.o"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **tc.env()})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "warning:" not in res.stdout + res.stderr, res.stderr[-3000:]
    # The Android build must really have used the Android calls.
    symbols = subprocess.run([tc.tool("nm"), "-u", str(work / "gcma_area.o")],
                             capture_output=True, text=True, check=True).stdout
    assert "register_gcma_area" in symbols and "gcma_register_area" not in symbols


def test_android_branch_fixtures_catch_a_wrong_prototype(built: None, tmp_path: Path) -> None:
    """Without GCMA_HEAP_FLAGS=ulong, android14-6.1's allocate() does not match:
    the compile test above can fail."""
    work = tmp_path / "vendor_modules"
    shutil.copytree(paths.PROJECT / "vendor_modules", work)
    include = _android_headers("android14-6.1", tmp_path)
    tc = Toolchain(use_ccache=False)
    res = subprocess.run(
        ["make", "-C", str(kernel.kernel_paths().build), f"M={work}", *tc.make_vars(),
         "GCMA_API=android", f"NOSTDINC_FLAGS=-nostdinc -I{include}", "gcma_heap.o"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **tc.env()})
    assert "incompatible-pointer-types" in res.stdout + res.stderr


def test_device_programs_build_and_run_with_ndk_style_flags(target: Target,
                                                            tmp_path: Path) -> None:
    """The on-target programs under the hardening an Android NDK build uses:
    each builds warning-free as a position-independent executable, and the
    allocation programs run on the target built so."""
    log = tmp_path / "build.log"
    programs = rootfs.build_device_tests(paths.PROJECT / "device_tests", tmp_path / "ndk", log,
                                         rootfs.NDK_CFLAGS)
    assert {p.name for p in programs} >= {"heap_alloc", "heap_stress", "pressure"}
    for prog in programs:
        header = prog.read_bytes()[:20]
        # ELF, 64-bit, little-endian, ET_DYN (a PIE), EM_AARCH64.
        assert header[:6] == b"\x7fELF\x02\x01", prog
        assert int.from_bytes(header[16:18], "little") == 3, f"{prog.name} is not a PIE"
        assert int.from_bytes(header[18:20], "little") == 183, prog
    for name in ("heap_alloc", "heap_stress"):
        target.shell.push(tmp_path / "ndk" / name, f"/tmp/ndk-{name}")
        target.shell.check(f"chmod +x /tmp/ndk-{name}")
    row = target.shell.check("/tmp/ndk-heap_alloc -s 1M -n 2 camera")
    assert "ok=2" in row and "not_zero=0" in row and "bad_data=0" in row, row
    res = target.shell.run("/tmp/ndk-heap_stress -H camera -s 1M -n 2 -o /tmp/ndk.jsonl")
    assert res.exit_status == 0, res
    assert len(target.shell.check("cat /tmp/ndk.jsonl").splitlines()) == 2
