"""The kernel pipeline against the real tree (no boot needed)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from gcma import paths
from gcma.build import kernel, modules
from gcma.build.toolchain import Toolchain
from gcma.errors import UserError


def test_metadata_records_inputs(built: None) -> None:
    meta = json.loads((paths.out_dir() / "kernel" / "metadata.json").read_text())
    assert meta["source"]["package"] == "linux-source-6.12"
    assert meta["source"]["package_version"].startswith(meta["source"]["kernel_version"])
    assert len(meta["source"]["sha256"]) == 64
    fragments = sorted(p.name for p in (paths.PROJECT / "gki" / "configs").glob("*.config"))
    assert [f["name"] for f in meta["config"]["fragments"]] == fragments
    assert meta["toolchain"]["cc"].startswith("aarch64-linux-gnu-gcc")
    assert meta["reproducer"].startswith("gcma kernel build --source ")
    assert any(" Image modules" in c for c in meta["commands"])


def test_unchanged_inputs_rebuild_nothing(built: None) -> None:
    kernel.build()
    log = (paths.logs_dir() / "kernel-build.log").read_text()
    compiled = [ln for ln in log.splitlines() if ln.strip().startswith(("CC ", "LD ", "AS "))]
    assert compiled == [], compiled[:10]
    assert "merge_config.sh" not in log


def test_symbol_that_does_not_stick_is_named(built: None, tmp_path: Path) -> None:
    tree = kernel.find_tree(kernel.kernel_paths())
    assert tree is not None
    frag = tmp_path / "bad.config"
    # The CMA heap needs DMA_CMA, which allnoconfig leaves off.
    frag.write_text("CONFIG_DMABUF_HEAPS=y\nCONFIG_DMABUF_HEAPS_CMA=y\n")
    kp = kernel.KernelPaths(tmp_path / "k", tmp_path / "src")
    with pytest.raises(UserError) as info:
        kernel.configure(tree, kp, [frag], [], kernel.tree_version(tree),
                         Toolchain(use_ccache=False), tmp_path / "log")
    message = str(info.value)
    assert f"CONFIG_DMABUF_HEAPS_CMA: requested y ({frag}:2), got not set" in message
    assert "CONFIG_DMABUF_HEAPS:" not in message


def test_exports_are_namespaced_and_imported(built: None) -> None:
    """GCMA's API is in the GCMA namespace and dma-heap's in DMA_BUF_HEAP; the
    vendor modules import both, and their imports lists show it."""
    def imports(module: str) -> dict[str, tuple[str, str]]:
        lines = (modules.dist_dir() / f"{module}.imports").read_text().splitlines()
        return {f[0]: (f[1], f[2] if len(f) > 2 else "") for f in (ln.split("\t")
                                                                   for ln in lines)}
    area = imports("gcma_area")
    for sym in ("gcma_register_area", "gcma_unregister_area", "gcma_alloc_range",
                "gcma_free_range"):
        assert area[sym] == ("vmlinux", "GCMA"), (sym, area.get(sym))
    heap = imports("gcma_heap")
    for sym in ("dma_heap_add", "dma_heap_get_drvdata"):
        assert heap[sym] == ("vmlinux", "DMA_BUF_HEAP"), (sym, heap.get(sym))


def test_image_is_reproducible(built: None) -> None:
    """A relink with nothing changed gives the same Image bytes, and
    metadata.json's hash: no build user, host, time or link counter in it."""
    kp = kernel.kernel_paths()
    before = hashlib.sha256(kp.image.read_bytes()).hexdigest()
    assert json.loads(kp.metadata.read_text())["kernel"]["image_sha256"] == before
    (kp.build / "init" / "version.o").unlink()  # forces a new vmlinux link
    kernel.build()
    log = (paths.logs_dir() / "kernel-build.log").read_text()
    assert "LD      vmlinux" in log
    assert hashlib.sha256(kp.image.read_bytes()).hexdigest() == before
    banner = next(s for s in re.findall(rb"Linux version [^\n\x00]+", kp.image.read_bytes()))
    assert b"(gcma@gcma-build)" in banner and b" #1 SMP " in banner, banner
