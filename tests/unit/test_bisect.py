"""gcma kernel bisect-build: which config symbols a patch introduces."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from gcma.build import bisect, kernel, patches
from gcma.errors import UserError


def test_introduced_symbols_are_the_added_kconfig_entries(tmp_path: Path) -> None:
    patch = tmp_path / "0001-x.patch"
    patch.write_text(
        "--- a/mm/Kconfig\n+++ b/mm/Kconfig\n@@ -1,3 +1,9 @@\n"
        " config CMA\n"            # context: not introduced here
        "+config GCMA\n+\tbool \"x\"\n"
        "+menuconfig FOO_MENU\n"
        "-config GONE\n"           # removed, not introduced
        "+\thelp\n+\t  config WORDS in help text do not count\n")
    series = [patches.Patch(patch.name, patch, "0")]
    assert bisect.introduced_symbols(series[0]) == {"CONFIG_GCMA", "CONFIG_FOO_MENU"}


def test_real_series_introduces_our_symbols() -> None:
    found: set[str] = set()
    for p in patches.read_series(bisect.paths.PROJECT / "gki" / "patches"):
        found |= bisect.introduced_symbols(p)
    assert {"CONFIG_CLEANCACHE", "CONFIG_GCMA", "CONFIG_CLEANCACHE_KUNIT_TEST"} <= found


def _kernel_tarball(tmp_path: Path, name: str = "linux.tar") -> Path:
    src = tmp_path / "linux-x"
    (src / "mm").mkdir(parents=True, exist_ok=True)
    (src / "Makefile").write_text("# empty\n")
    tarball = tmp_path / name
    with tarfile.open(tarball, "w") as tar:
        tar.add(src, arcname="linux-x")
    return tarball


def test_unpacking_the_bisect_tree_keeps_the_variants_builds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bisect tree has a source of its own: unpacking it must not remove
    the build folders of the kernel variants, which share another source."""
    monkeypatch.setenv("GCMA_OUT", str(tmp_path / "out"))
    tarball = _kernel_tarball(tmp_path)
    variant_build = kernel.kernel_paths().build
    variant_build.mkdir(parents=True)
    (variant_build / "vmlinux").write_text("built\n")
    kp = bisect.bisect_paths()
    kp.build.mkdir(parents=True)
    (kp.build / "stale.o").write_text("old\n")

    tree = kernel.unpack(tarball, kp, tmp_path / "log")
    assert (tree / "Makefile").is_file()
    assert (variant_build / "vmlinux").is_file()
    assert not (kp.build / "stale.o").exists()


def test_a_bad_tarball_removes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong --source is a user error, and the tree and builds that exist stay."""
    monkeypatch.setenv("GCMA_OUT", str(tmp_path / "out"))
    kp = kernel.kernel_paths()
    tree = kernel.unpack(_kernel_tarball(tmp_path), kp, tmp_path / "log")
    kp.build.mkdir(parents=True)
    (kp.build / "vmlinux").write_text("built\n")
    not_tar = tmp_path / "notes.tar.xz"
    not_tar.write_text("not an archive\n")
    other = tmp_path / "other"
    (other / "docs").mkdir(parents=True)
    not_kernel = tmp_path / "other.tar"
    with tarfile.open(not_kernel, "w") as tar:
        tar.add(other, arcname="other")
    for bad, message in ((not_tar, "not a readable tar archive"),
                         (not_kernel, "not a kernel source archive")):
        with pytest.raises(UserError, match=message):
            kernel.unpack(bad, kp, tmp_path / "log")
        assert (tree / "Makefile").is_file()
        assert (kp.build / "vmlinux").is_file()
        assert not kp.src_parent.with_name(kp.src_parent.name + ".new").exists()
