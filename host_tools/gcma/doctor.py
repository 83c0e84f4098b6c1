"""``gcma doctor``: is everything a later step needs on this machine?

Each requirement names what needs it and the Debian package that provides
it, so a missing one is reported with the command that installs it. This
runs in seconds, before anything takes minutes: a missing QEMU option ROM or
cross libc is reported up front, not after a kernel build.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gcma.errors import InfraError


class EnvironmentIncomplete(InfraError):
    """A tool, file or package that a step needs is missing."""


@dataclass(frozen=True)
class Requirement:
    kind: str  # "command", "file" or "foreign-arch"
    name: str
    package: str
    needed_by: str


def _commands(package: str, needed_by: str, *names: str) -> list[Requirement]:
    return [Requirement("command", n, package, needed_by) for n in names]


#: Everything the build, the root filesystem and the emulated target use.
REQUIREMENTS: tuple[Requirement, ...] = (
    *_commands("make", "kernel build", "make"),
    *_commands("gcc", "kernel build (host tools)", "gcc"),
    *_commands("bc", "kernel build", "bc"),
    *_commands("flex", "kernel build", "flex"),
    *_commands("bison", "kernel build", "bison"),
    *_commands("xz-utils", "kernel source unpack", "xz"),
    *_commands("rsync", "module builds", "rsync"),
    *_commands("ccache", "kernel build", "ccache"),
    *_commands("patch", "kernel patch series", "patch"),
    *_commands("kmod", "module load order", "modinfo"),
    *_commands("util-linux", "emulated target (QEMU dies with its parent)", "setpriv"),
    *_commands("gcc-aarch64-linux-gnu", "kernel and device_tests", "aarch64-linux-gnu-gcc"),
    *_commands("binutils-aarch64-linux-gnu", "kernel build", "aarch64-linux-gnu-ld",
               "aarch64-linux-gnu-nm"),
    *_commands("device-tree-compiler", "DTB build", "dtc", "fdtoverlay", "fdtget"),
    *_commands("qemu-system-arm", "emulated target", "qemu-system-aarch64"),
    *_commands("e2fsprogs", "ext4 data disks", "mkfs.ext4"),
    *_commands("erofs-utils", "erofs data disk", "mkfs.erofs"),
    *_commands("openssh-client", "target ssh key", "ssh-keygen"),
    *_commands("adb", "adb transport (gcma deploy, the emulated target's adb)", "adb"),
    *_commands("perl", "checkpatch in the tests", "perl"),
    Requirement("file", "/usr/sbin/sshd", "openssh-server",
                "the remote-build test's stand-in build server"),
    Requirement("file", "/usr/src/linux-source-6.12.tar.xz", "linux-source-6.12",
                "kernel build"),
    Requirement("file", "/usr/include/libelf.h", "libelf-dev", "kernel build"),
    Requirement("file", "/usr/include/openssl/opensslv.h", "libssl-dev", "kernel build"),
    Requirement("file", "/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu",
                "QEMU's virtio-net device (DTB dump and boot)"),
    Requirement("file", "/usr/aarch64-linux-gnu/include/bits/wordsize.h",
                "libc6-dev-arm64-cross", "device_tests (static arm64 programs)"),
    Requirement("foreign-arch", "arm64", "", "guest packages (apt-get download)"),
)


def _foreign_archs() -> set[str]:
    try:
        out = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                             text=True, check=False).stdout
    except OSError:
        return set()
    return set(out.split())


def missing(requirements: tuple[Requirement, ...] = REQUIREMENTS,
            which: Callable[[str], str | None] = shutil.which,
            exists: Callable[[str], bool] = lambda p: Path(p).exists(),
            foreign_archs: Callable[[], set[str]] = _foreign_archs) -> list[Requirement]:
    """The requirements this machine does not meet."""
    archs: set[str] | None = None
    result = []
    for req in requirements:
        if req.kind == "command":
            ok = which(req.name) is not None
        elif req.kind == "file":
            ok = exists(req.name)
        else:
            if archs is None:
                archs = foreign_archs()
            ok = req.name in archs
        if not ok:
            result.append(req)
    return result


def check(requirements: tuple[Requirement, ...] = REQUIREMENTS,
          which: Callable[[str], str | None] = shutil.which,
          exists: Callable[[str], bool] = lambda p: Path(p).exists(),
          foreign_archs: Callable[[], set[str]] = _foreign_archs) -> int:
    """Raise :class:`EnvironmentIncomplete` listing what is missing and the
    commands that fix it; return the number of requirements checked."""
    lacking = missing(requirements, which, exists, foreign_archs)
    if not lacking:
        return len(requirements)
    lines = []
    for req in lacking:
        what = {"command": "command", "file": "file",
                "foreign-arch": "foreign architecture"}[req.kind]
        source = f" (package {req.package})" if req.package else ""
        lines.append(f"missing {what} {req.name}{source}, needed by {req.needed_by}")
    fixes = []
    if any(r.kind == "foreign-arch" for r in lacking):
        fixes.append("sudo dpkg --add-architecture arm64 && sudo apt-get update")
    packages = sorted({r.package for r in lacking if r.package})
    if packages:
        fixes.append("sudo apt-get install --no-install-recommends " + " ".join(packages))
    raise EnvironmentIncomplete("this machine lacks what the build needs:\n  "
                                + "\n  ".join(lines) + "\nto fix: " + "\n        ".join(fixes)
                                + "\n(./build.sh setup does this on Debian 12)")
