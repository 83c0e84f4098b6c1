"""The kernel's own Kconfig tree, evaluated with kconfiglib: why is an option off?

``olddefconfig`` turns off an option whose dependencies are not met and says
nothing. :func:`check` evaluates each option the project needs against a
``.config`` (a file, or a target's ``/proc/config.gz``) and, for each one that
is off, gives the unmet part of its ``depends on`` expression with every
term's value, as menuconfig's help does, one level deeper for the terms that
are off themselves.

kconfiglib 14.1.0 (the last PyPI release) predates Linux 5.13, whose
``init/Kconfig`` marks MODULES with a bare ``modules`` line instead of
``option modules``. :class:`CompatKconfig` rewrites exactly that line as it
reads the tree, which kconfiglib then parses as it always did (it takes
MODULES for the modules symbol anyway). Nothing else is changed: the test
suite proves the result by loading our kernel's ``.config`` and writing it
back, symbol for symbol identical.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kconfiglib

from gcma.build import kconfig
from gcma.errors import UserError

#: The bare ``modules`` property of Linux >= 5.13 (init/Kconfig, MODULES).
_BARE_MODULES = re.compile(r"(?m)^([ \t]+)modules[ \t]*$")
#: The compiler each architecture's Kconfig is evaluated with by default.
DEFAULT_CC = {"arm64": "aarch64-linux-gnu-gcc", "x86_64": "gcc"}


class CompatKconfig(kconfiglib.Kconfig):
    """kconfiglib.Kconfig that also reads the bare ``modules`` keyword."""

    def _open(self, filename: str, mode: str) -> Any:
        f = super()._open(filename, mode)
        if "r" not in mode:  # write_config() and friends
            return f
        # A .config has no indented lines, so only Kconfig files are touched.
        with f:
            text = f.read()
        return io.StringIO(_BARE_MODULES.sub(r"\1option modules", text))


@contextmanager
def _kbuild_env(tree: Path, arch: str, cc: str) -> Iterator[None]:
    """The environment the kernel's Makefile gives kconfig: Kconfig's
    $(shell,...) probes the compiler, so CC must be the one that builds."""
    if shutil.which(cc) is None:
        raise UserError(f"compiler {cc} not found: Kconfig probes it (name another with --cc)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()
    cross = cc[:-3] if cc.endswith("-gcc") else ""
    srcarch = {"x86_64": "x86"}.get(arch, arch)  # arch/x86/Kconfig serves both x86s
    env = {"srctree": str(tree), "ARCH": arch, "SRCARCH": srcarch, "CC": cc,
           "LD": f"{cross}ld", "CROSS_COMPILE": cross, "HOSTCC": "gcc", "HOSTCXX": "g++",
           "CC_VERSION_TEXT": version[0] if version else "", "RUSTC": "rustc",
           "BINDGEN": "bindgen", "KERNELVERSION": "", "LLVM": ""}
    if "clang" in cc:  # a GKI build: LLVM=1
        env.update(LLVM="1", LD="ld.lld", CROSS_COMPILE="")
    saved = {k: os.environ.get(k) for k in env}
    cwd = Path.cwd()
    os.environ.update(env)
    os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_tree(tree: Path, arch: str = "arm64", cc: str | None = None,
              config: Path | None = None) -> kconfiglib.Kconfig:
    """Parse ``tree``'s Kconfig for ``arch``; load ``config`` into it if given."""
    tree = tree.resolve()  # both are used after a chdir into the tree
    config = config.resolve() if config is not None else None
    if not (tree / "Kconfig").is_file():
        raise UserError(f"{tree}: no Kconfig at the top; not a kernel source tree")
    with _kbuild_env(tree, arch, cc or DEFAULT_CC.get(arch, "gcc")):
        try:
            kconf = CompatKconfig("Kconfig", warn_to_stderr=False)
            if config is not None:
                kconf.load_config(str(config))
        except (kconfiglib.KconfigError, OSError) as exc:
            raise UserError(f"{tree}: kconfiglib cannot read this Kconfig tree or "
                            f"config: {str(exc).strip()}") from None
    return kconf


def _sc_with_value(sc: Any) -> str:
    if isinstance(sc, kconfiglib.Symbol) and sc.is_constant:
        return sc.name
    if isinstance(sc, kconfiglib.Symbol) and not sc.nodes:
        return f"{sc.name} [undefined]"
    name = sc.name if isinstance(sc, kconfiglib.Symbol) else "<choice>"
    return f"{name} [={sc.str_value or 'n'}]"


def _selected_by(rev_dep: Any, most: int = 3) -> str:
    terms = kconfiglib.split_expr(rev_dep, kconfiglib.OR)
    shown = " || ".join(f"({_expr(t)})" if len(terms) > 1 else _expr(t) for t in terms[:most])
    return shown + (f" || ... ({len(terms) - most} more)" if len(terms) > most else "")


def _expr(expr: Any) -> str:
    return kconfiglib.expr_str(expr, _sc_with_value)


@dataclass
class Finding:
    symbol: str
    wanted: str
    got: str
    source: str  # where the request comes from (fragment:line)
    why: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.wanted == self.got


def _why_off(kconf: kconfiglib.Kconfig, name: str, depth: int = 0) -> list[str]:
    """Lines saying why ``name`` cannot be on: its unmet dependencies, each
    term with its value, and (one level down) why those terms are off."""
    sym = kconf.syms.get(name)
    pad = "  " * depth
    if sym is None or not sym.nodes:
        return [f"{pad}{name} is not defined by this kernel's Kconfig"
                + (" (the GCMA patch series is not applied)"
                   if name in ("GCMA", "CLEANCACHE") else "")]
    lines: list[str] = []
    node = sym.nodes[0]
    where = f"{node.filename}:{node.linenr}"
    if kconfiglib.expr_value(sym.direct_dep) == 0:
        lines.append(f"{pad}{name} ({where}) depends on {_expr(sym.direct_dep)}")
        unmet = [t for t in kconfiglib.split_expr(sym.direct_dep, kconfiglib.AND)
                 if kconfiglib.expr_value(t) == 0]
        for term in unmet:
            lines.append(f"{pad}  unmet: {_expr(term)}")
            if depth < 1 and isinstance(term, kconfiglib.Symbol) and not term.is_constant:
                lines += _why_off(kconf, term.name, depth + 2)
    elif not any(n.prompt and kconfiglib.expr_value(n.prompt[1]) for n in sym.nodes) \
            and sym.rev_dep is kconf.n:
        lines.append(f"{pad}{name} ({where}) has no prompt here; only a select can turn it "
                     f"on, and nothing selects it")
    else:
        lines.append(f"{pad}{name} ({where}): its dependencies are met; it is simply not set "
                     f"(add CONFIG_{name}=y)")
    if sym.rev_dep is not kconf.n and depth == 0:
        lines.append(f"{pad}  selected by: {_selected_by(sym.rev_dep)}")
    return lines


def check(kconf: kconfiglib.Kconfig, config: dict[str, str],
          wanted: dict[str, kconfig.Request]) -> list[Finding]:
    """Each wanted option: its value, and why it is not as wanted.

    The value is kconfiglib's, after loading ``config`` (CONFIG_X -> value) as
    olddefconfig would: a hand-edited .config that turns off a dependency
    shows what the build would really get. Options this Kconfig does not
    define keep the file's value."""
    findings = []
    for full, req in sorted(wanted.items()):
        name = full.removeprefix("CONFIG_")
        sym = kconf.syms.get(name)
        got = config.get(full, kconfig.NOT_SET)
        if sym is not None and sym.nodes:
            got = sym.str_value or kconfig.NOT_SET
        finding = Finding(full, req.value, got, req.source)
        if not finding.ok:
            if req.value in ("y", "m") and got == kconfig.NOT_SET:
                finding.why = _why_off(kconf, name)
            elif got == "m" and req.value == "y":
                finding.why = [f"{name} is a module here; built in needs its dependencies "
                               f"built in: {_expr(sym.direct_dep) if sym else '?'}"]
        findings.append(finding)
    return findings

