"""The cross toolchain and the make variables every kernel-side build uses."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gcma import paths, runner
from gcma.errors import UserError


@dataclass(frozen=True)
class Toolchain:
    arch: str = "arm64"
    cross_compile: str = "aarch64-linux-gnu-"
    llvm: bool = False
    use_ccache: bool = True
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def cc(self) -> str:
        cc = "clang" if self.llvm else f"{self.cross_compile}gcc"
        return f"ccache {cc}" if self.use_ccache and shutil.which("ccache") else cc

    def make_vars(self) -> list[str]:
        """Variables on the make command line (so the echoed line reproduces)."""
        out = [f"ARCH={self.arch}"]
        if self.llvm:
            out.append("LLVM=1")
        elif self.cross_compile:
            out.append(f"CROSS_COMPILE={self.cross_compile}")
        out.append(f"CC={self.cc}")
        return out

    def env(self) -> dict[str, str]:
        """Environment for ccache, and for scripts that read ARCH from it."""
        env = {"ARCH": self.arch}
        if self.cross_compile and not self.llvm:
            env["CROSS_COMPILE"] = self.cross_compile
        if self.use_ccache:
            # The base dir makes cache keys independent of where the checkout is.
            env["CCACHE_DIR"] = str(paths.ccache_dir())
            env["CCACHE_BASEDIR"] = str(paths.out_dir().parent)
            env["CCACHE_NOHASHDIR"] = "1"
        return env

    def tool(self, name: str) -> str:
        """A binutils tool for the target (nm, objcopy...)."""
        if self.llvm:
            return f"llvm-{name}"
        return f"{self.cross_compile}{name}"

    def versions(self) -> dict[str, str]:
        result = {}
        cc = self.cc.split()[-1]
        for label, argv in (("cc", [cc, "--version"]),
                            ("ld", [self.tool("ld") if not self.llvm else "ld.lld", "--version"]),
                            ("make", ["make", "--version"]),
                            ("ccache", ["ccache", "--version"])):
            try:
                result[label] = runner.output(argv).splitlines()[0]
            except Exception:  # noqa: BLE001 - a missing tool is recorded, not fatal here
                result[label] = "not found"
        return result


def for_kernel_tree(kdir: Path) -> Toolchain:
    """The toolchain a kernel tree (ours or a user's GKI) was configured for."""
    config = kdir / ".config"
    if not config.exists():
        raise UserError(f"{kdir} is not a configured kernel build tree (no .config)")
    text = config.read_text()
    if "CONFIG_ARM64=y" in text:
        arch, cross = "arm64", "aarch64-linux-gnu-"
    elif "CONFIG_X86_64=y" in text:
        arch, cross = "x86", "" if os.uname().machine == "x86_64" else "x86_64-linux-gnu-"
    else:
        raise UserError(f"{kdir}: unsupported architecture (only arm64 and x86_64 are known)")
    if os.uname().machine == "aarch64" and arch == "arm64":
        cross = ""
    llvm = "CONFIG_CC_IS_CLANG=y" in text
    return Toolchain(arch=arch, cross_compile=cross, llvm=llvm)
