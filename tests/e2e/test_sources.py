"""Source checks that need the kernel tree: checkpatch, the Android GCMA API build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gcma import kernel, paths
from gcma.toolchain import Toolchain

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


def test_vendor_modules_build_against_android_gcma_api(built: None, tmp_path: Path) -> None:
    """gcma_compat.h's Android branch, compiled against a header with Android's API."""
    work = tmp_path / "vendor_modules"
    shutil.copytree(paths.PROJECT / "vendor_modules", work)
    fake = paths.PROJECT / "tests" / "fixtures" / "android_gcma" / "include"
    tc = Toolchain(use_ccache=False)
    kdir = kernel.kernel_paths().build
    # Headers before the kernel's own: NOSTDINC_FLAGS comes first on the line.
    res = subprocess.run(
        ["make", "-C", str(kdir), f"M={work}", *tc.make_vars(), "GCMA_API=android",
         f"NOSTDINC_FLAGS=-nostdinc -I{fake}", "W=1", "gcma_area.o", "gcma_heap.o"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **tc.env()})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "warning:" not in res.stdout + res.stderr
    assert (work / "gcma_area.o").exists() and (work / "gcma_heap.o").exists()
    # The Android build must really have used the Android calls.
    symbols = subprocess.run([tc.tool("nm"), "-u", str(work / "gcma_area.o")],
                             capture_output=True, text=True, check=True).stdout
    assert "register_gcma_area" in symbols and "gcma_register_area" not in symbols
