"""The series logic, run with the real patch(1) on a small tree."""

from pathlib import Path

import pytest

from gcma.build import patches
from gcma.errors import UserError


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "a.c").write_text("one\ntwo\nthree\n")
    (tree / "b.c").write_text("alpha\nbeta\n")
    return tree


def _patch(pdir: Path, name: str, path: str, old: str, new: str) -> None:
    body = (f"--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,1 @@\n-{old}\n+{new}\n")
    (pdir / name).write_text(f"Subject: {name}\n\n---\n{body}")


def _series(pdir: Path, *names: str) -> list[patches.Patch]:
    (pdir / "series").write_text("# our series\n" + "".join(f"{n}\n" for n in names))
    return patches.read_series(pdir)


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    d = tmp_path / "patches"
    d.mkdir()
    _patch(d, "0001-a.patch", "a.c", "one", "ONE")
    _patch(d, "0002-b.patch", "b.c", "alpha", "ALPHA")
    return d


def test_apply_in_order(tmp_path: Path, pdir: Path) -> None:
    tree = _tree(tmp_path)
    patches.sync(tree, _series(pdir, "0001-a.patch", "0002-b.patch"), "6.12.117",
                 tmp_path / "log")
    assert (tree / "a.c").read_text().startswith("ONE")
    assert (tree / "b.c").read_text().startswith("ALPHA")


def test_resync_is_a_noop_and_changed_patch_is_reapplied(tmp_path: Path, pdir: Path) -> None:
    tree = _tree(tmp_path)
    log = tmp_path / "log"
    patches.sync(tree, _series(pdir, "0001-a.patch", "0002-b.patch"), "v", log)
    a_mtime = (tree / "a.c").stat().st_mtime_ns
    patches.sync(tree, _series(pdir, "0001-a.patch", "0002-b.patch"), "v", log)
    assert (tree / "a.c").stat().st_mtime_ns == a_mtime
    _patch(pdir, "0002-b.patch", "b.c", "alpha", "Alpha")
    patches.sync(tree, _series(pdir, "0001-a.patch", "0002-b.patch"), "v", log)
    assert (tree / "b.c").read_text().startswith("Alpha\n")
    assert (tree / "a.c").stat().st_mtime_ns == a_mtime, "unchanged patch was reapplied"


def test_dropping_a_patch_reverts_it(tmp_path: Path, pdir: Path) -> None:
    tree = _tree(tmp_path)
    log = tmp_path / "log"
    patches.sync(tree, _series(pdir, "0001-a.patch", "0002-b.patch"), "v", log)
    patches.sync(tree, _series(pdir, "0001-a.patch"), "v", log)
    assert (tree / "b.c").read_text() == "alpha\nbeta\n"
    assert (tree / "a.c").read_text().startswith("ONE")


def test_patch_that_does_not_apply_is_named_with_version(tmp_path: Path, pdir: Path) -> None:
    tree = _tree(tmp_path)
    _patch(pdir, "0003-bad.patch", "b.c", "gamma", "GAMMA")
    series = _series(pdir, "0001-a.patch", "0003-bad.patch")
    with pytest.raises(UserError, match=r"patch 0003-bad.patch does not apply to Linux 6\.12\.117"):
        patches.sync(tree, series, "6.12.117", tmp_path / "log")
    assert (tree / "b.c").read_text() == "alpha\nbeta\n", "failed patch left changes"
    # The good patch before it stays applied and recorded.
    patches.sync(tree, _series(pdir, "0001-a.patch"), "6.12.117", tmp_path / "log")
    assert (tree / "a.c").read_text().startswith("ONE")


def test_series_errors(tmp_path: Path, pdir: Path) -> None:
    (pdir / "series").write_text("0001-a.patch\n0001-a.patch\n")
    with pytest.raises(UserError, match="listed twice"):
        patches.read_series(pdir)
    (pdir / "series").write_text("missing.patch\n")
    with pytest.raises(UserError, match="no such patch"):
        patches.read_series(pdir)
    assert patches.read_series(tmp_path / "nowhere") == []
