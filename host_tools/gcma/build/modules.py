"""Build vendor modules out of tree, against our kernel or a user's GKI tree.

Outputs, in ``out/modules/<name>/dist``: the ``.ko`` files, ``modules.load``
(dependency order, the order first-stage init loads them in), and per module
``<module>.imports``: each undefined symbol with who provides it (vmlinux,
another of these modules, or a kernel module) and its namespace.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gcma import paths, runner
from gcma.build import kernel
from gcma.build.toolchain import Toolchain, for_kernel_tree
from gcma.errors import InfraError, UserError

#: A module build's step timeout, s.
BUILD_TIMEOUT = 1800.0
#: Build products rsync must not delete when it refreshes the source copy.
_PROTECT = ["*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "*.symvers", "modules.order",
            "*.a", ".*.d", ".tmp_*"]


@dataclass
class ModuleInfo:
    name: str
    path: Path
    depends: list[str]
    imports: list[dict[str, str]] = field(default_factory=list)


def read_symvers(path: Path) -> dict[str, tuple[str, str]]:
    """Module.symvers: symbol -> (provider, namespace)."""
    table: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return table
    for line in path.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 4:
            provider = cols[2].rsplit("/", 1)[-1]
            table[cols[1]] = (provider, cols[4] if len(cols) > 4 else "")
    return table


def load_order(mods: dict[str, list[str]], tiebreak: list[str]) -> list[str]:
    """Dependency order (providers first); ties keep ``tiebreak`` order.

    Dependencies outside ``mods`` (modules of the kernel itself) are ignored.
    """
    rank = {name: i for i, name in enumerate(tiebreak)}
    pending = {name: {d for d in deps if d in mods and d != name} for name, deps in mods.items()}
    order: list[str] = []
    while pending:
        ready = sorted((n for n, deps in pending.items() if not deps),
                       key=lambda n: (rank.get(n, len(rank)), n))
        if not ready:
            raise UserError("module dependency cycle among: " + ", ".join(sorted(pending)))
        name = ready[0]
        order.append(name)
        del pending[name]
        for deps in pending.values():
            deps.discard(name)
    return order


def _modinfo_depends(ko: Path) -> list[str]:
    raw = runner.output(["modinfo", "-F", "depends", str(ko)])
    return [d for d in raw.replace("\n", ",").split(",") if d]


def _undefined(ko: Path, tc: Toolchain) -> list[str]:
    nm = tc.tool("nm") if shutil.which(tc.tool("nm")) else "nm"
    raw = runner.output([nm, "-u", str(ko)])
    return sorted({line.split()[-1] for line in raw.splitlines() if line.strip()})


def gcma_api(kdir: Path) -> str | None:
    """Which GCMA API a kernel tree has: "upstream" (ours), "android" or None."""
    for header in (kdir / "include/linux/gcma.h", kdir / "source/include/linux/gcma.h"):
        if header.exists():
            text = header.read_text(errors="replace")
            if "register_gcma_area" in text:
                return "android"
            if "gcma_register_area" in text:
                return "upstream"
    return None


#: Kernel interfaces that differ between the kernels we support, found in the
#: target tree's headers: (make variable and value, header, regex that means it).
KERNEL_FEATURES: tuple[tuple[str, str, str], ...] = (
    # Before Linux 6.2 (android14-6.1): allocate(heap, len, unsigned long
    # fd_flags, unsigned long heap_flags); u32 and u64 from then on.
    ("GCMA_HEAP_FLAGS=ulong", "include/linux/dma-heap.h", r"unsigned\s+long\s+fd_flags"),
    # Android common kernels add dma_map_attrs to struct dma_buf_attachment.
    ("GCMA_DMA_MAP_ATTRS=y", "include/linux/dma-buf.h", r"\bdma_map_attrs\s*;"),
)


def kernel_features(kdir: Path, include: Path | None = None) -> list[str]:
    """The make variables that describe ``kdir``'s interfaces. ``include``, if
    given, is searched first (an include folder put before the kernel's own)."""
    found = []
    for var, header, pattern in KERNEL_FEATURES:
        rel = header.removeprefix("include/")
        candidates = [include / rel] if include else []
        candidates += [kdir / header, kdir / "source" / header]
        for path in candidates:
            if path.exists():
                if re.search(pattern, path.read_text(errors="replace")):
                    found.append(var)
                break
    return found


def build(src: Path | None = None, kdir: Path | None = None,
          tc: Toolchain | None = None, variant: str = kernel.DEFAULT_VARIANT,
          uses: tuple[Path, ...] = ()) -> dict[str, object]:
    """Build every module under ``src`` (a Kbuild folder) against ``kdir``.

    Without ``kdir``, against our kernel of ``variant``: modules are built per
    kernel variant, since symbol versions (MODVERSIONS) differ between them.
    ``uses`` names other module folders, built before, whose exports these
    modules import (KBUILD_EXTRA_SYMBOLS) and whose headers they include
    (GCMA_VENDOR_INC, for the first).
    """
    src = (src or paths.PROJECT / "vendor_modules").resolve()
    kdir = (kdir or kernel.kernel_paths(variant).build).resolve()
    if not (src / "Kbuild").exists() and not (src / "Makefile").exists():
        raise UserError(f"{src}: no Kbuild or Makefile, not a module source folder")
    if not (kdir / "Module.symvers").exists():
        raise UserError(f"{kdir}: no Module.symvers; build the kernel first "
                        "(gcma kernel build) or name a built tree with --kdir")
    tc = tc or for_kernel_tree(kdir)
    root = _root(src, variant)
    work, dist = root / "build", root / "dist"
    log = paths.logs_dir() / f"modules-{variant}-{src.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    work.mkdir(parents=True, exist_ok=True)
    protect = [f"--filter=P {p}" for p in _PROTECT]
    runner.run(["rsync", "-a", "--delete", *protect, f"{src}/", f"{work}/"], log=log)
    api = gcma_api(kdir)
    extra = ([f"GCMA_API={api}"] if api else []) + kernel_features(kdir)
    symvers = [_root(u.resolve(), variant) / "build" / "Module.symvers" for u in uses]
    if uses:
        extra += [f"KBUILD_EXTRA_SYMBOLS={' '.join(str(s) for s in symvers)}",
                  f"GCMA_VENDOR_INC={uses[0].resolve()}"]
    runner.run(["make", "-C", kdir, f"M={work}", *tc.make_vars(), *extra, f"-j{tc.jobs}",
                "modules"], env=tc.env(), log=log, progress="modules", timeout=BUILD_TIMEOUT)

    order_file = work / "modules.order"
    built = [line.strip() for line in order_file.read_text().splitlines() if line.strip()] \
        if order_file.exists() else []
    kos = [work / (entry[:-2] + ".ko" if entry.endswith(".o") else entry) for entry in built]
    missing = [str(k) for k in kos if not k.exists()]
    if missing:
        raise InfraError("modules.order names modules that were not built: " + ", ".join(missing))

    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    infos: dict[str, ModuleInfo] = {}
    for ko in kos:
        name = ko.stem.replace("-", "_")
        infos[name] = ModuleInfo(name, ko, _modinfo_depends(ko))
    own_symvers = read_symvers(work / "Module.symvers")
    for used in symvers:
        own_symvers.update(read_symvers(used))
    kernel_symvers = read_symvers(kdir / "Module.symvers")
    for info in infos.values():
        for sym in _undefined(info.path, tc):
            provider, ns = own_symvers.get(sym) or kernel_symvers.get(sym) or ("?", "")
            info.imports.append({"symbol": sym, "provider": provider, "namespace": ns})
    order = load_order({n: i.depends for n, i in infos.items()}, list(infos))
    for name in order:
        info = infos[name]
        shutil.copy2(info.path, dist / info.path.name)
        lines = [f"{imp['symbol']}\t{imp['provider']}\t{imp['namespace']}".rstrip()
                 for imp in info.imports]
        (dist / f"{info.path.stem}.imports").write_text("".join(f"{ln}\n" for ln in lines))
    (dist / "modules.load").write_text("".join(f"{infos[n].path.name}\n" for n in order))
    manifest: dict[str, object] = {
        "kdir": str(kdir),
        "src": str(src),
        "gcma_api": api,
        "modules": [{"name": n, "file": infos[n].path.name, "depends": infos[n].depends,
                     "imports": infos[n].imports} for n in order],
    }
    (dist / "modules.json").write_text(json.dumps(manifest, indent=2) + "\n")
    runner.info(f"modules: {len(order)} built from {src} -> {dist}")
    return manifest


def _root(src: Path, variant: str) -> Path:
    return paths.out_dir() / "modules" / variant / src.name


def dist_dir(src: Path | None = None, variant: str = kernel.DEFAULT_VARIANT) -> Path:
    src = (src or paths.PROJECT / "vendor_modules").resolve()
    return _root(src, variant) / "dist"
