"""The initramfs writer, read back with the real cpio(1)."""

import gzip
import os
import stat
import subprocess
from pathlib import Path

from gcma.build import cpio


def test_archive_lists_with_cpio_and_keeps_nodes_and_links(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/busybox").write_bytes(b"\x7fELF" + b"x" * 1001)
    (tree / "bin/busybox").chmod(0o755)
    (tree / "init").symlink_to("bin/busybox")
    entries = [cpio.Entry("dev", stat.S_IFDIR | 0o755),
               cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    entries += cpio.entries_from_tree(tree)
    image = tmp_path / "initramfs.cpio.gz"
    cpio.write_gz(image, entries)
    raw = gzip.decompress(image.read_bytes())
    listing = subprocess.run(["cpio", "-itv"], input=raw, capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    by_name = {line.split()[-1] if "->" not in line else line.split()[-3]: line
               for line in lines}
    assert set(by_name) == {"dev", "dev/console", "bin", "bin/busybox", "init"}
    assert by_name["dev/console"].startswith("crw-------")
    assert "5," in by_name["dev/console"] and " 1 " in by_name["dev/console"]
    assert by_name["bin/busybox"].startswith("-rwxr-xr-x")
    assert by_name["init"].endswith("-> bin/busybox")
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--no-absolute-filenames", "bin/busybox"], input=raw,
                   cwd=out, capture_output=True, check=True)
    assert (out / "bin/busybox").read_bytes() == (tree / "bin/busybox").read_bytes()


def _tree(root: Path, mtime: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_bytes(b"\x7fELF same bytes")
    (root / "bin/tool").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc/conf").write_text("same text\n")
    for path in (root / "bin/tool", root / "etc/conf", root / "bin", root / "etc"):
        os.utime(path, (mtime, mtime))
    return root


def test_archive_is_reproducible(tmp_path: Path) -> None:
    """Two trees that differ only in mtimes (and owners, where we may change
    them) give the same compressed bytes, whatever the output is called."""
    one = _tree(tmp_path / "one", 1_000_000_000)
    two = _tree(tmp_path / "two", 1_700_000_000)
    if os.geteuid() == 0:
        os.chown(two / "etc/conf", 1234, 1234)
    a, b = tmp_path / "a.cpio.gz", tmp_path / "other-name.gz"
    cpio.write_gz(a, cpio.entries_from_tree(one))
    cpio.write_gz(b, cpio.entries_from_tree(two))
    assert a.read_bytes() == b.read_bytes()
    # And it is not trivially so: other contents give other bytes.
    (two / "etc/conf").write_text("other text\n")
    cpio.write_gz(b, cpio.entries_from_tree(two))
    assert a.read_bytes() != b.read_bytes()
