"""Root filesystem of the emulated target.

* An initramfs: arm64 busybox, dropbear (ssh) and sftp-server from Debian's
  arm64 packages with the libraries they need, the vendor modules with their
  modules.load, the device_tests programs (static), the start-up scripts and
  the host's public key.
* A data disk: an ext4 image of deterministic data files with a sha256
  manifest, for page-cache workloads.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from gcma import paths, runner
from gcma.build import cpio, kernel
from gcma.errors import InfraError, UserError

#: Debian arm64 packages unpacked into the guest (with their library deps).
GUEST_PACKAGES = ("busybox-static", "dropbear-bin", "openssh-sftp-server", "libc6",
                  "libgcc-s1", "libcrypt1", "libtomcrypt1", "libtommath1", "libgmp10",
                  "zlib1g",
                  # kmod's modprobe, for "modprobe -d" from a vendor_dlkm image
                  # (busybox's has no -d); its other tools stay busybox's.
                  "kmod", "libkmod2", "liblzma5", "libssl3", "libzstd1")
#: What we do not need from those packages.
_PRUNE = ("usr/share", "usr/lib/aarch64-linux-gnu/gconv", "etc", "usr/lib/aarch64-linux-gnu/audit",
          "usr/bin/getconf", "usr/bin/ldd", "usr/bin/iconv", "usr/bin/locale",
          "usr/bin/localedef", "usr/bin/getent", "usr/bin/zdump", "usr/sbin/iconvconfig",
          "bin/lsmod", "sbin/depmod", "sbin/insmod", "sbin/lsmod", "sbin/modinfo",
          "sbin/rmmod", "lib/modprobe.d")
CROSS_CC = "aarch64-linux-gnu-gcc"
#: apt-get download of the guest packages, s.
DOWNLOAD_TIMEOUT = 1200.0

GUEST_FILES = paths.PROJECT / "host_tools" / "gcma" / "guest"


def rootfs_dir() -> Path:
    return paths.out_dir() / "rootfs"


def ssh_key() -> Path:
    """The host's private key for the target (generated once per out/)."""
    key = paths.out_dir() / "target" / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        runner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gcma-host",
                    "-f", key])
    return key


def fetch_packages(log: Path) -> list[Path]:
    """arm64 .debs of GUEST_PACKAGES, downloaded once into the cache."""
    debs_dir = paths.cache_dir() / "debs-arm64"
    debs_dir.mkdir(parents=True, exist_ok=True)
    debs = []
    missing = []
    for pkg in GUEST_PACKAGES:
        found = sorted(debs_dir.glob(f"{pkg}_*_arm64.deb"))
        if found:
            debs.append(found[-1])
        else:
            missing.append(pkg)
    if missing:
        res = runner.run(["apt-get", "download", *(f"{p}:arm64" for p in missing)],
                         cwd=debs_dir, log=log, check=False, timeout=DOWNLOAD_TIMEOUT)
        if res.returncode != 0:
            raise InfraError("cannot download arm64 packages " + " ".join(missing)
                             + f" (is the arm64 architecture added? ./build.sh setup); log: {log}")
        for pkg in missing:
            found = sorted(debs_dir.glob(f"{pkg}_*_arm64.deb"))
            if not found:
                raise InfraError(f"apt-get download gave no {pkg} .deb")
            debs.append(found[-1])
    return debs


def programs_dir() -> Path:
    """Compiled on-target programs, kept across initramfs builds."""
    return paths.out_dir() / "device_tests"


#: How the on-target programs are built for the emulated target.
DEVICE_CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-static")
#: The hardening an Android NDK build applies by default (position-independent
#: executable, stack protector, fortified libc calls, format checks, full
#: RELRO, no executable stack): the programs must build, and run, with them
#: too. Static PIE stands in for the NDK's dynamic bionic executables.
NDK_CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-fPIE", "-static-pie",
              "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-Wformat",
              "-Werror=format-security", "-Wl,-z,relro", "-Wl,-z,now",
              "-Wl,-z,noexecstack", "-Wl,--build-id=sha1")


def build_device_tests(src: Path, dest: Path, log: Path,
                       cflags: tuple[str, ...] = DEVICE_CFLAGS) -> list[Path]:
    """Each device_tests/*.c is one static arm64 program (the *.h beside them
    are shared); rebuilt when it or a header is newer."""
    dest.mkdir(parents=True, exist_ok=True)
    programs = []
    headers = max((h.stat().st_mtime for h in src.glob("*.h")), default=0.0)
    for source in sorted(src.glob("*.c")):
        binary = dest / source.stem
        newest = max(source.stat().st_mtime, headers)
        if not binary.exists() or binary.stat().st_mtime < newest:
            runner.run([CROSS_CC, *cflags, "-o", binary, source], log=log)
        programs.append(binary)
    return programs


#: Kernel selftests built from the kernel tree for the target: (source, name).
KERNEL_SELFTESTS = (("tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c", "dmabuf-heap"),)


def build_kernel_selftests(dest: Path, log: Path,
                           variant: str = kernel.DEFAULT_VARIANT) -> list[Path]:
    """The kernel's own selftests we run, cross-built static against its UAPI."""
    kp = kernel.kernel_paths(variant)
    tree = kernel.find_tree(kp)
    if tree is None or not kp.headers.exists():
        raise UserError("kernel tree or UAPI headers missing: build the kernel first")
    dest.mkdir(parents=True, exist_ok=True)
    built = []
    for source, name in KERNEL_SELFTESTS:
        binary = dest / name
        if not binary.exists() or binary.stat().st_mtime < (tree / source).stat().st_mtime:
            runner.run([CROSS_CC, "-O2", "-static", "-I", tree / "tools/testing/selftests",
                        "-I", kp.headers, "-o", binary, tree / source], log=log)
        built.append(binary)
    return built


def _missing_libraries(staging: Path, elf: Path) -> list[str]:
    out = runner.output(["readelf", "-d", str(elf)])
    missing = []
    for line in out.splitlines():
        if "(NEEDED)" in line:
            lib = line.split("[", 1)[1].rstrip("]")
            if not any((staging / d / lib).exists()
                       for d in ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu")):
                missing.append(lib)
    return missing


def _link(staging: Path, path: str, target: str) -> None:
    link = staging / path
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def initramfs_path(variant: str = kernel.DEFAULT_VARIANT) -> Path:
    suffix = "" if variant == kernel.DEFAULT_VARIANT else f"-{variant}"
    return rootfs_dir() / f"initramfs{suffix}.cpio.gz"


def build_initramfs(modules_dist: Path | None = None,
                    test_modules_dist: Path | None = None,
                    variant: str = kernel.DEFAULT_VARIANT) -> Path:
    """Vendor modules go to /lib/modules/gcma (loaded at boot, in
    modules.load order), scenario modules to /lib/modules/gcma-tests."""
    root = rootfs_dir()
    log = paths.logs_dir() / "rootfs.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    staging = root / f"initramfs-{variant}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for deb in fetch_packages(log):
        runner.run(["dpkg-deb", "-x", deb, staging], log=log)
    for prune in _PRUNE:
        target = staging / prune
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_symlink() or target.exists():
            target.unlink()
    # Debian 12 is not merged-/usr inside .debs: give the usual paths.
    if not (staging / "lib").exists():
        _link(staging, "lib", "usr/lib")
    for d in ("proc", "sys", "dev", "tmp", "run", "data", "root/.ssh", "etc/init.d",
              "etc/dropbear", "var/log", "usr/bin", "usr/sbin", "sbin"):
        (staging / d).mkdir(parents=True, exist_ok=True)
    _link(staging, "var/run", "../run")
    _link(staging, "bin/sh", "busybox")
    _link(staging, "init", "bin/busybox")
    _link(staging, "sbin/init", "../bin/busybox")
    # dropbear looks for the sftp server where Debian's openssh puts it.
    sftp = "usr/lib/openssh/sftp-server"
    if not (staging / sftp).exists():
        raise InfraError(f"{sftp} missing from openssh-sftp-server")
    _link(staging, "usr/libexec/sftp-server", f"/{sftp}")
    _link(staging, "usr/lib/sftp-server", f"/{sftp}")
    for elf in (staging / "usr/sbin/dropbear", staging / sftp, staging / "bin/kmod"):
        missing = _missing_libraries(staging, elf)
        if missing:
            raise InfraError(f"{elf.name} needs libraries not in GUEST_PACKAGES: {missing}")

    shutil.copy(GUEST_FILES / "rcS", staging / "etc/init.d/rcS")
    (staging / "etc/init.d/rcS").chmod(0o755)
    shutil.copy(GUEST_FILES / "inittab", staging / "etc/inittab")
    shutil.copy(GUEST_FILES / "android-modload", staging / "usr/sbin/android-modload")
    (staging / "usr/sbin/android-modload").chmod(0o755)
    (staging / "etc/passwd").write_text("root::0:0:root:/root:/bin/sh\n")
    (staging / "etc/group").write_text("root:x:0:\n")
    (staging / "etc/shells").write_text("/bin/sh\n")
    (staging / "root").chmod(0o700)
    (staging / "root/.ssh").chmod(0o700)
    pub = ssh_key().with_suffix(".pub").read_bytes()
    (staging / "root/.ssh/authorized_keys").write_bytes(pub)
    (staging / "root/.ssh/authorized_keys").chmod(0o600)

    adbd = programs_dir() / "gcma-adbd"
    adbd.parent.mkdir(parents=True, exist_ok=True)
    if not adbd.exists() or adbd.stat().st_mtime < (GUEST_FILES / "gcma-adbd.c").stat().st_mtime:
        runner.run([CROSS_CC, *DEVICE_CFLAGS, "-o", adbd, GUEST_FILES / "gcma-adbd.c"], log=log)
    shutil.copy2(adbd, staging / "usr/sbin/gcma-adbd")
    programs = build_device_tests(paths.PROJECT / "device_tests", programs_dir(), log)
    programs += build_kernel_selftests(programs_dir() / variant, log, variant)
    for program in programs:
        shutil.copy2(program, staging / "usr/bin" / program.name)
    for dist, where in ((modules_dist, "gcma"), (test_modules_dist, "gcma-tests")):
        if dist is not None and (dist / "modules.load").exists():
            dest = staging / "lib/modules" / where
            dest.mkdir(parents=True, exist_ok=True)
            for f in dist.iterdir():
                shutil.copy2(f, dest / f.name)

    entries = [cpio.Entry("dev", stat.S_IFDIR | 0o755),
               cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
               cpio.Entry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))]
    entries += [e for e in cpio.entries_from_tree(staging) if e.name != "dev"]
    image = initramfs_path(variant)
    cpio.write_gz(image, entries)
    runner.info(f"rootfs: {image} ({image.stat().st_size // 1024} KiB)")
    return image


def make_data_files(dest: Path, count: int, size: int, seed: int = 0x6C6D) -> dict[str, str]:
    """Deterministic pseudo-random files; returns name -> sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    manifest = {}
    for i in range(count):
        name = f"file{i:03d}.bin"
        data = rng.randbytes(size)
        (dest / name).write_bytes(data)
        manifest[name] = hashlib.sha256(data).hexdigest()
    (dest / "MANIFEST.sha256").write_text(
        "".join(f"{digest}  {name}\n" for name, digest in sorted(manifest.items())))
    return manifest


def _data_image(name: str, count: int, size: int, seed: int,
                make: Callable[[Path, Path], list[str | Path]]) -> Path:
    """An image of ``count`` generated files, rebuilt only when they change."""
    root = rootfs_dir()
    image = root / name
    # The command, with placeholder paths, is part of what the image depends on.
    spec = json.dumps({"count": count, "size": size, "seed": seed,
                       "command": [str(a) for a in make(Path("FILES"), Path("IMAGE"))]})
    spec_file = root / f"{name}.json"
    if image.exists() and spec_file.exists() and spec_file.read_text().strip() == spec:
        return image
    files = root / f"{name}.d"
    if files.exists():
        shutil.rmtree(files)
    make_data_files(files, count, size, seed)
    image.unlink(missing_ok=True)
    runner.run(make(files, image), log=paths.logs_dir() / "rootfs.log")
    shutil.rmtree(files)
    spec_file.write_text(spec + "\n")
    runner.info(f"rootfs: data disk {image}")
    return image


def build_data_disk(count: int = 48, size: int = 2 << 20, image_mib: int = 160) -> Path:
    """ext4 image (4 KiB blocks) of ``count`` files of ``size`` bytes, for /data."""
    if count * size > (image_mib - 16) << 20:
        raise UserError(f"{count} files of {size} bytes do not fit a {image_mib} MiB image")
    return _data_image("data.ext4", count, size, 0x6C6D, lambda files, image: [
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "gcma-data", "-E", "root_owner=0:0",
        "-d", files, image, f"{image_mib}M"])


def build_data1k_disk(count: int = 32, size: int = 2 << 20, image_mib: int = 96) -> Path:
    """ext4 image with 1 KiB blocks, for /data1k: blocks smaller than a page
    make folios that are partly uptodate, which cleancache must never fill."""
    return _data_image("data1k.ext4", count, size, 0x1C1C, lambda files, image: [
        "mkfs.ext4", "-q", "-F", "-b", "1024", "-L", "gcma-data1k", "-E", "root_owner=0:0",
        "-d", files, image, f"{image_mib}M"])


def build_slow_disk(count: int = 144, size: int = 2 << 20, image_mib: int = 512) -> Path:
    """ext4 image for /slow, the disk QEMU throttles (see target.DATA_DISKS):
    ``count`` files (288 MiB) that the benchmark's churn reads, larger than
    its reader's memory, and room where the writeback pressure keeps pages
    dirty."""
    if count * size > (image_mib - 160) << 20:
        raise UserError(f"{count} files of {size} bytes leave no room for writeback "
                        f"in a {image_mib} MiB image")
    return _data_image("slow.ext4", count, size, 0x510E, lambda files, image: [
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "gcma-slow", "-E", "root_owner=0:0",
        "-d", files, image, f"{image_mib}M"])


def build_erofs_disk(count: int = 32, size: int = 2 << 20) -> Path:
    """Uncompressed erofs image of ``count`` files of ``size`` bytes, for /erofs."""
    return _data_image("data.erofs", count, size, 0xE50F, lambda files, image: [
        "mkfs.erofs", image, files])
