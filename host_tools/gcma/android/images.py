"""The module images Android flashes: a vendor_boot ramdisk fragment (cpio)
for the first-stage modules, and a vendor_dlkm erofs image for the rest.

Both have Android's flat layout, ``lib/modules/`` with the ``.ko`` files,
``modules.load`` (the manifest's load order), and ``modules.dep``,
``modules.alias`` and ``modules.softdep`` made by running the real
``depmod`` on the modules of that image, as the Android build does (its
``.bin`` indexes too, which kmod's modprobe reads). The manifest keeps a
module and its dependencies in one stage, so depmod of one image sees them
all. Our modules are all vendor_dlkm; a manifest without first-stage
modules has no vendor_ramdisk image (a user error that says so).
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tempfile
from pathlib import Path

from gcma import paths, runner
from gcma.android.manifest import Manifest, Module
from gcma.build import cpio
from gcma.errors import UserError

#: depmod needs a version directory; Android's build uses the same dummy.
DEPMOD_VERSION = "0.0"
#: Files depmod makes that the images keep (the text ones Android's
#: libmodprobe reads, the .bin ones kmod's modprobe reads).
DEPMOD_FILES = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
                "modules.softdep", "modules.symbols", "modules.symbols.bin",
                "modules.builtin.bin", "modules.builtin.alias.bin", "modules.devname")
#: erofs images are made reproducible: fixed time and owner.
EPOCH = "0"
UUID = "6763ab4d-0000-4000-8000-00000000d1c3"


def images_dir() -> Path:
    return paths.out_dir() / "images"


def _depmod(version: Path, order: list[str], log: Path) -> None:
    """depmod over the modules in ``version`` (root/lib/modules/<version>),
    with the files it reads besides them (empty ones keep it quiet)."""
    (version / "modules.order").write_text("".join(f"{ko}\n" for ko in order))
    (version / "modules.builtin").write_text("")
    (version / "modules.builtin.modinfo").write_text("")
    log.parent.mkdir(parents=True, exist_ok=True)
    runner.run(["depmod", "-b", str(version.parents[2]), DEPMOD_VERSION], log=log)


def _stage(manifest: Manifest, stage: str, dist: Path, dest: Path) -> list[Module]:
    """dest/lib/modules/ with the stage's modules and depmod's files."""
    mods = manifest.stage(stage)
    if not mods:
        raise UserError(f"{manifest.path}: no module has stage {stage}: no {stage} image")
    missing = [m.ko for m in mods if not (dist / m.ko).is_file()]
    if missing:
        raise UserError(f"{dist}: no {', '.join(missing)} (build the modules first: "
                        "gcma modules build)")
    top = dest / "lib" / "modules"
    version = top / DEPMOD_VERSION
    version.mkdir(parents=True)
    for m in mods:
        shutil.copyfile(dist / m.ko, version / m.ko)
    order = [m.ko for m in mods]
    _depmod(version, order, paths.logs_dir() / f"image-{stage}.log")
    for ko in order:
        os.replace(version / ko, top / ko)
    for name in DEPMOD_FILES:
        if (version / name).exists():
            os.replace(version / name, top / name)
    shutil.rmtree(version)
    (top / "modules.load").write_text("".join(f"{ko}\n" for ko in order))
    if manifest.options(stage):
        (top / "modules.options").write_text(manifest.options(stage))
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            os.chmod(Path(root) / d, 0o755)
        for f in files:
            os.chmod(Path(root) / f, 0o644)
    return mods


def vendor_ramdisk(manifest: Manifest, dist: Path, out: Path | None = None) -> Path:
    """A newc cpio of the vendor_ramdisk modules (uncompressed: the boot image
    tool compresses the whole vendor ramdisk)."""
    out = out or images_dir() / "vendor_ramdisk-gcma.cpio"
    with tempfile.TemporaryDirectory(prefix="gcma-ramdisk-") as tmp:
        _stage(manifest, "vendor_ramdisk", dist, Path(tmp))
        entries = cpio.entries_from_tree(Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cpio.archive(entries))
    runner.info(f"image: {out} ({len(entries)} entries, {out.stat().st_size // 1024} KiB)")
    return out


def vendor_dlkm(manifest: Manifest, dist: Path, out: Path | None = None) -> Path:
    """An erofs image of the vendor_dlkm modules, checked with fsck.erofs."""
    out = out or images_dir() / "vendor_dlkm-gcma.img"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = paths.logs_dir() / "image-vendor_dlkm.log"
    with tempfile.TemporaryDirectory(prefix="gcma-dlkm-") as tmp:
        _stage(manifest, "vendor_dlkm", dist, Path(tmp))
        out.unlink(missing_ok=True)
        runner.run(["mkfs.erofs", "--all-root", f"-T{EPOCH}", f"-U{UUID}", str(out), tmp],
                   log=log)
    runner.run(["fsck.erofs", str(out)], log=log)
    runner.info(f"image: {out} ({out.stat().st_size // 1024} KiB, fsck.erofs clean)")
    return out


LZ4_LEGACY = b"\x02\x21\x4c\x18"


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == LZ4_LEGACY:
        raise UserError(f"{path} is lz4-compressed: give it uncompressed "
                        f"(lz4 -dc {path} > initramfs.cpio)")
    if data[:6] != b"070701":
        raise UserError(f"{path}: not a newc cpio (plain or gzip)")
    return data


def merged_ramdisk(manifest: Manifest, dist: Path, base: Path, out: Path) -> Path:
    """``base`` (a vendor ramdisk or GKI initramfs with Android's flat
    lib/modules) with every manifest module added: its modules.load gets ours
    after its own, and depmod runs again on the whole set. For a Cuttlefish,
    whose vendor ramdisk modules the initramfs replaces."""
    try:
        entries = read_cpio(_decompressed(base))
    except ValueError as exc:
        raise UserError(f"{base}: {exc}") from None
    top = "lib/modules/"
    if f"{top}modules.load" not in entries:
        raise UserError(f"{base}: no lib/modules/modules.load (not a vendor ramdisk)")
    with tempfile.TemporaryDirectory(prefix="gcma-merge-") as tmp:
        mods_dir = Path(tmp) / "lib" / "modules" / DEPMOD_VERSION
        mods_dir.mkdir(parents=True)
        theirs = entries[f"{top}modules.load"][1].decode().split()
        for name, (_, data) in entries.items():
            if name.startswith(top) and name.endswith(".ko") and "/" not in name[len(top):]:
                (mods_dir / name[len(top):]).write_bytes(data)
        ours = list(manifest.modules)
        for m in ours:
            if not (dist / m.ko).is_file():
                raise UserError(f"{dist}: no {m.ko} (build the modules first)")
            shutil.copyfile(dist / m.ko, mods_dir / m.ko)
        order = [k for k in theirs if k not in {m.ko for m in ours}] + [m.ko for m in ours]
        _depmod(mods_dir, order, paths.logs_dir() / "image-merge.log")
        made = {f"{top}{f.name}": f.read_bytes() for f in mods_dir.iterdir()
                if f.name in DEPMOD_FILES or f.suffix == ".ko"}
    made[f"{top}modules.load"] = "".join(f"{k}\n" for k in order).encode()
    result = [cpio.Entry(n, mode, data) for n, (mode, data) in entries.items()
              if not (n.startswith(top) and n[len(top):] in (*DEPMOD_FILES, "modules.load"))
              and n not in made]
    result += [cpio.Entry(n, stat.S_IFREG | 0o644, data) for n, data in sorted(made.items())]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cpio.archive(result))
    runner.info(f"image: {out} ({base.name} + {len(ours)} GCMA modules, "
                f"{len(order)} in modules.load)")
    return out


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive: to check what an image holds."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"not a newc cpio at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + 110
        name = data[name_at:name_at + namesize - 1].decode()
        body = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body:body + size])
        pos = body + size + (-size % 4)
        if stat.S_IFMT(mode) == 0:
            raise ValueError(f"entry {name} has no file type")
