"""A newc cpio writer, so the initramfs needs no root (device nodes) and is
reproducible (fixed owner and mtime)."""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the archive, no leading "/"
    mode: int  # full st_mode (type | permissions)
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(ino: int, entry: Entry, nlink: int) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = [ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0,
              entry.rdev[0], entry.rdev[1], len(name), 0]
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + name
    return head + b"\0" * (-len(head) % 4)


def archive(entries: list[Entry]) -> bytes:
    out = bytearray()
    for ino, entry in enumerate(entries, 1):
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += _header(ino, entry, nlink)
        out += entry.data + b"\0" * (-len(entry.data) % 4)
    out += _header(0, Entry("TRAILER!!!", 0), 1)
    return bytes(out)


def entries_from_tree(root: Path, prefix: str = "") -> list[Entry]:
    """Files, folders and symlinks under ``root``, parents before children."""
    result = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            full = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(prefix, rel_dir, name))
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                result.append(Entry(rel, stat.S_IFLNK | 0o777, os.readlink(full).encode()))
            elif stat.S_ISDIR(st.st_mode):
                result.append(Entry(rel, stat.S_IFDIR | stat.S_IMODE(st.st_mode)))
            elif stat.S_ISREG(st.st_mode):
                result.append(Entry(rel, stat.S_IFREG | stat.S_IMODE(st.st_mode),
                                    full.read_bytes()))
    return result


def write_gz(path: Path, entries: list[Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No name or time in the gzip header: the same entries give the same bytes
    # whatever the output is called and whenever it is written.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 compresslevel=6, mtime=0) as f:
        f.write(archive(entries))
