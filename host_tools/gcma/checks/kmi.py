"""KMI checks: may these vendor modules load on that GKI kernel?

A GKI kernel lets an unsigned vendor module use only the symbols in its KMI
symbol list (Android's format: a ``[abi_symbol_list]`` line, then one symbol
per line, ``#`` comments), and of course only symbols the kernel exports
(its ``Module.symvers``). :func:`check` tests every import of every module of
a dist folder against both; :func:`symbol_list` writes the list a GKI build
would need for them (what a vendor adds to its ``android/abi_gki_aarch64_*``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gcma.build.modules import read_symvers
from gcma.errors import UserError

HEADER = "[abi_symbol_list]"


@dataclass(frozen=True)
class Import:
    module: str  # the .ko file
    symbol: str
    provider: str  # vmlinux, a kernel module, or one of the dist's own modules


@dataclass
class Report:
    imports: list[Import]
    #: kernel symbol -> the modules that import it, absent from the list
    not_in_list: dict[str, list[str]] = field(default_factory=dict)
    #: kernel symbol -> the modules that import it, not exported by the kernel
    not_exported: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.not_in_list and not self.not_exported


def read_symbol_list(path: Path) -> set[str]:
    """The symbols of an abi_symbol_list file; an error names the bad line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the symbol list: {exc}") from None
    symbols: set[str] = set()
    section: str | None = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        if section is None:
            raise UserError(f"{path}:{lineno}: {line!r} comes before the {HEADER} line "
                            f"(not an Android symbol list)")
        if not line.replace("_", "a").replace(".", "a").isalnum() or " " in line:
            raise UserError(f"{path}:{lineno}: {line!r} is not a symbol name")
        if section == HEADER:
            symbols.add(line)
    if section is None:
        raise UserError(f"{path}: no {HEADER} section (not an Android symbol list)")
    return symbols


def dist_imports(dist: Path) -> list[Import]:
    """Each module's imports, as the module build recorded them (modules.json)."""
    manifest_path = dist / "modules.json"
    if not manifest_path.exists():
        raise UserError(f"{dist}: no modules.json (build the modules first: gcma modules build)")
    try:
        manifest = json.loads(manifest_path.read_text())
        return [Import(mod["file"], imp["symbol"], imp["provider"])
                for mod in manifest["modules"] for imp in mod["imports"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{manifest_path}: not a module manifest of gcma modules build "
                        f"({exc!r}); build the modules again") from None


def check(dist: Path, symbol_list: Path | None = None,
          symvers: Path | None = None) -> Report:
    """Test the dist's kernel imports against a list and a kernel's exports."""
    imports = dist_imports(dist)
    own = {i.module.removesuffix(".ko").replace("-", "_") for i in imports}
    kernel_imports = [i for i in imports if i.provider not in own]
    report = Report(imports=kernel_imports)
    allowed = read_symbol_list(symbol_list) if symbol_list else None
    exported = read_symvers(symvers) if symvers else None
    if symvers and not exported:
        raise UserError(f"{symvers}: no exports read (is it a kernel's Module.symvers?)")
    for imp in kernel_imports:
        if allowed is not None and imp.symbol not in allowed:
            report.not_in_list.setdefault(imp.symbol, []).append(imp.module)
        if exported is not None and imp.symbol not in exported:
            report.not_exported.setdefault(imp.symbol, []).append(imp.module)
    return report


def symbol_list(report: Report, title: str) -> str:
    """A symbol list in Android's format naming every kernel import."""
    symbols = sorted({i.symbol for i in report.imports})
    return f"{HEADER}\n  # {title}\n" + "".join(f"  {s}\n" for s in symbols)
