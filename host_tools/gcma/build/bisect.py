"""Every prefix of the patch series builds: ``gcma kernel bisect-build``.

A series is bisectable when the kernel builds after each patch, not only
after the last. This builds, in a tree of its own (``out/bisect-kernel``),
the kernel with patches 1..k for every k in turn. The tree keeps the record
of what is applied, so each step applies one more patch and recompiles only
what it touches. Config symbols that a later patch introduces are requested
by our fragments but cannot exist yet: they are the only ones not verified.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gcma import paths, runner
from gcma.build import kernel, patches
from gcma.build.toolchain import Toolchain
from gcma.errors import CommandFailed, UserError

_NEW_SYMBOL = re.compile(r"^\+(?:menu)?config\s+(\w+)", re.MULTILINE)


@dataclass
class Step:
    patch: str
    ok: bool
    seconds: float
    error: str = ""


def introduced_symbols(patch: patches.Patch) -> set[str]:
    """CONFIG_ symbols a patch adds to Kconfig."""
    return {f"CONFIG_{m}" for m in _NEW_SYMBOL.findall(patch.path.read_text(errors="replace"))}


def bisect_paths() -> kernel.KernelPaths:
    root = paths.out_dir() / "bisect-kernel"
    return kernel.KernelPaths(root, root / "src")


def run(tarball: Path = kernel.DEFAULT_TARBALL, *, variant: str = kernel.DEFAULT_VARIANT,
        patch_dir: Path | None = None, tc: Toolchain | None = None) -> list[Step]:
    """Build every prefix of the series; stops at the first that fails."""
    patch_dir = patch_dir or paths.PROJECT / "gki" / "patches"
    series = patches.read_series(patch_dir)
    if not series:
        raise UserError(f"{patch_dir}/series names no patch")
    kp = bisect_paths()
    steps: list[Step] = []
    for k, patch in enumerate(series, 1):
        later: set[str] = set()
        for p in series[k:]:
            later |= introduced_symbols(p)
        runner.info(f"bisect-build: {k}/{len(series)} {patch.name}")
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="gcma-series-") as tmp:
            prefix = Path(tmp)
            for p in series[:k]:
                (prefix / p.name).symlink_to(p.path)
            (prefix / "series").write_text("".join(f"{p.name}\n" for p in series[:k]))
            try:
                kernel.build(tarball, variant=variant, patch_dir=prefix, tc=tc, kp=kp,
                             unchecked=frozenset(later))
            except (CommandFailed, UserError) as err:
                steps.append(Step(patch.name, False, time.monotonic() - t,
                                  str(err).splitlines()[0]))
                break
        steps.append(Step(patch.name, True, time.monotonic() - t))
    return steps
