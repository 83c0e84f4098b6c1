"""GKI checks on the real thing: kconfiglib (with our compatibility layer) on
the 6.12 Kconfig tree, our built kernels' .config and a running target's
/proc/config.gz; the KMI symbol check on our built modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gcma.build import kconfig, kernel, modules
from gcma.checks import kmi
from gcma.checks.kconfig_tree import load_tree

from .conftest import Target

pytestmark = pytest.mark.e2e


def gcma(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gcma", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _settings(path: Path) -> dict[str, str]:
    """CONFIG_ lines and "is not set" lines, without the header comments."""
    return {sym: req.value for sym, req in kconfig.parse_config(path.read_text()).items()}


def test_kconfiglib_reproduces_the_kernel_config_symbol_for_symbol(built: None, variant: str,
                                                                   tmp_path: Path) -> None:
    kp = kernel.kernel_paths(variant)
    tree = kernel.find_tree(kp)
    assert tree is not None
    config = kp.build / ".config"
    kconf = load_tree(tree, "arm64", config=config)
    kconf.write_config(str(tmp_path / "again"))
    want, got = _settings(config), _settings(tmp_path / "again")
    assert len(want) > 1500
    assert got == want, {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                         if want.get(k) != got.get(k)}


def test_kconfig_check_passes_on_our_kernel_and_explains_a_broken_one(built: None,
                                                                      tmp_path: Path) -> None:
    ok = gcma("kconfig", "check")
    assert ok.returncode == 0, ok.stderr
    assert "all 9 options are as the modules need" in ok.stdout
    broken = tmp_path / "config"
    text = (kernel.kernel_paths().build / ".config").read_text()
    broken.write_text(text.replace("CONFIG_CMA=y\n", "# CONFIG_CMA is not set\n"))
    res = gcma("kconfig", "check", "--config", str(broken))
    assert res.returncode == 4, res.stderr
    assert "CONFIG_CMA=n  WANTED y" in res.stdout
    assert "its dependencies are met; it is simply not set (add CONFIG_CMA=y)" in res.stdout
    # DMA_CMA=y is still in the file, but the build would drop it: said, with why.
    assert "CONFIG_DMA_CMA=n  WANTED y" in res.stdout
    assert "DMA_CMA (kernel/dma/Kconfig:" in res.stdout
    assert "depends on HAVE_DMA_CONTIGUOUS [=y] && CMA [=n]" in res.stdout
    assert "unmet: CMA [=n]" in res.stdout
    assert "Traceback" not in res.stderr


def test_kconfig_check_reads_a_running_target(target: Target) -> None:
    res = gcma("kconfig", "check", "--target", target.emulated.name)
    assert res.returncode == 0, res.stderr
    assert f"target {target.emulated.name} (/proc/config.gz)" in res.stdout


def test_symbol_check_on_our_modules(built: None, tmp_path: Path) -> None:
    res = gcma("modules", "symbols", "--write-list", str(tmp_path / "vendor.list"))
    assert res.returncode == 0, res.stderr
    assert "gcma_area.ko:" in res.stdout and "gcma_heap.ko:" in res.stdout
    listed = kmi.read_symbol_list(tmp_path / "vendor.list")
    assert {"dma_buf_export", "dma_heap_add", "gcma_alloc_range"} <= listed
    # A GKI list without one symbol the heap needs: named, and a failure.
    short = tmp_path / "short.list"
    short.write_text("".join(line for line in (tmp_path / "vendor.list").read_text()
                             .splitlines(keepends=True) if line.strip() != "dma_heap_add"))
    res = gcma("modules", "symbols", "--check", str(short))
    assert res.returncode == 4
    assert f"dma_heap_add: not in {short} (used by gcma_heap.ko)" in res.stdout
    # Against a kernel that lacks the GCMA exports (symvers without them).
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("".join(line for line in (kernel.kernel_paths().build / "Module.symvers")
                               .read_text().splitlines(keepends=True) if "gcma_" not in line))
    res = gcma("modules", "symbols", "--symvers", str(symvers))
    assert res.returncode == 4
    assert "gcma_alloc_range: not exported by" in res.stdout
    assert modules.dist_dir().exists()
