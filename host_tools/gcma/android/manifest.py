"""vendor_modules/modules.yaml: the one description of the vendor modules.

Kbuild is checked against it; the Android build files and the images are
made from it. A mistake in it is a UserError naming the file, the module or
heap, and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gcma import paths
from gcma.errors import UserError

STAGES = ("vendor_ramdisk", "vendor_dlkm")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEAP = re.compile(r"^[a-z0-9_.,-]+$")
_SE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_USER = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE_FIELDS = {"description", "sources", "headers", "deps", "params", "stage"}
_HEAP_FIELDS = {"mode", "user", "group", "selinux_type", "domains"}


def default_path() -> Path:
    return paths.PROJECT / "vendor_modules" / "modules.yaml"


@dataclass(frozen=True)
class Module:
    name: str
    description: str
    sources: tuple[str, ...]
    headers: tuple[str, ...]
    deps: tuple[str, ...]
    params: dict[str, str]
    stage: str

    @property
    def ko(self) -> str:
        return f"{self.name}.ko"


@dataclass(frozen=True)
class Heap:
    name: str
    mode: str
    user: str
    group: str
    selinux_type: str
    domains: tuple[str, ...]


@dataclass
class Manifest:
    path: Path
    modules: list[Module] = field(default_factory=list)
    heaps: list[Heap] = field(default_factory=list)

    def stage(self, stage: str) -> list[Module]:
        """The modules of one stage, in load order."""
        return [m for m in self.modules if m.stage == stage]

    def module(self, name: str) -> Module:
        return next(m for m in self.modules if m.name == name)

    def options(self, stage: str) -> str:
        """modules.options lines for the stage's modules with parameters, or
        "" (a value with a space is quoted)."""
        return "".join(f"options {mod.name} "
                       + " ".join(f'{k}="{v}"' if " " in v else f"{k}={v}"
                                  for k, v in mod.params.items()) + "\n"
                       for mod in self.stage(stage) if mod.params)


class _Reader:
    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> UserError:
        return UserError(f"{self.source}: {where}: {message}")

    def strings(self, where: str, key: str, value: Any, pattern: re.Pattern[str] | None = None
                ) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"field '{key}' must be a list of strings")
        for v in value:
            if pattern and not pattern.match(v):
                raise self.fail(where, f"field '{key}': {v!r} is not a valid name")
        if len(set(value)) != len(value):
            raise self.fail(where, f"field '{key}' names something twice")
        return tuple(value)

    def string(self, where: str, key: str, value: Any,
               pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"field '{key}' must be a non-empty string")
        if pattern and not pattern.match(value):
            raise self.fail(where, f"field '{key}': {value!r} is not a valid name")
        return value

    def fields(self, where: str, raw: Any, known: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(where, "must be a mapping")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise self.fail(where, f"unknown field '{unknown[0]}' (known: "
                                   f"{', '.join(sorted(known))})")
        missing = sorted(known - set(raw))
        if missing:
            raise self.fail(where, f"field '{missing[0]}' is missing")
        return raw

    def module(self, name: Any, raw: Any, earlier: list[str], src_dir: Path) -> Module:
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(f"module {name!r}", "not a valid module name ([a-z0-9_])")
        where = f"module '{name}'"
        raw = self.fields(where, raw, _MODULE_FIELDS)
        sources = self.strings(where, "sources", raw["sources"])
        headers = self.strings(where, "headers", raw["headers"])
        if not sources:
            raise self.fail(where, "field 'sources' is empty")
        for f in (*sources, *headers):
            if "/" in f or not (src_dir / f).is_file():
                raise self.fail(where, f"no file {f!r} in {src_dir}")
        if not all(s.endswith(".c") for s in sources):
            raise self.fail(where, "field 'sources': C files only")
        deps = self.strings(where, "deps", raw["deps"], _NAME)
        for dep in deps:
            if dep not in earlier:
                raise self.fail(where, f"field 'deps': {dep!r} is not a module listed "
                                       "before it (modules are in load order)")
        params = raw["params"]
        if not isinstance(params, dict) or not all(
                isinstance(k, str) and _NAME.match(k) and isinstance(v, (str, int, bool))
                for k, v in params.items()):
            raise self.fail(where, "field 'params' must map parameter names to values")
        stage = raw["stage"]
        if stage not in STAGES:
            raise self.fail(where, f"field 'stage': {stage!r} is not one of "
                                   f"{', '.join(STAGES)}")
        return Module(name, self.string(where, "description", raw["description"]), sources,
                      headers, deps, {k: _param(v) for k, v in params.items()}, stage)

    def heap(self, name: Any, raw: Any) -> Heap:
        if not isinstance(name, str) or not _HEAP.match(name):
            raise self.fail(f"heap {name!r}", "not a valid heap name ([a-z0-9_.,-])")
        where = f"heap '{name}'"
        raw = self.fields(where, raw, _HEAP_FIELDS)
        mode = raw["mode"]
        if not isinstance(mode, str) or not re.fullmatch(r"0[0-7]{3}", mode):
            raise self.fail(where, "field 'mode' must be a quoted octal mode like \"0440\"")
        if int(mode, 8) & 0o002:
            raise self.fail(where, "field 'mode': world-writable")
        return Heap(name, mode, self.string(where, "user", raw["user"], _USER),
                    self.string(where, "group", raw["group"], _USER),
                    self.string(where, "selinux_type", raw["selinux_type"], _SE_NAME),
                    self.strings(where, "domains", raw["domains"], _SE_NAME))


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def load(path: Path | None = None) -> Manifest:
    path = path or default_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    reader = _Reader(path)
    if not isinstance(raw, dict) or set(raw) != {"modules", "heaps"}:
        raise reader.fail("top level", "needs exactly 'modules' and 'heaps'")
    if not isinstance(raw["modules"], dict) or not raw["modules"]:
        raise reader.fail("modules", "must be a non-empty mapping")
    if not isinstance(raw["heaps"], dict):
        raise reader.fail("heaps", "must be a mapping")
    manifest = Manifest(path)
    for name, spec in raw["modules"].items():
        manifest.modules.append(reader.module(name, spec, [m.name for m in manifest.modules],
                                              path.parent))
    for m in manifest.modules:
        for dep in m.deps:
            # depmod runs on one image at a time: a dependency in the other
            # image is invisible to it, and modules.dep would not name it.
            if manifest.module(dep).stage != m.stage:
                raise reader.fail(f"module '{m.name}'", f"loads at {m.stage}, its dependency "
                                  f"{dep!r} at {manifest.module(dep).stage}: depmod of one "
                                  "image cannot see the other; put both in one stage")
    for name, spec in raw["heaps"].items():
        heap = reader.heap(name, spec)
        if any(h.selinux_type == heap.selinux_type for h in manifest.heaps):
            raise reader.fail(f"heap '{name}'", f"field 'selinux_type': "
                              f"{heap.selinux_type!r} is another heap's too")
        manifest.heaps.append(heap)
    return manifest


_OBJ_M = re.compile(r"^obj-m\s*\+?:?=\s*(.+)$", re.M)
_COMPOSITE = re.compile(r"^([a-z0-9_]+)-(?:y|objs)\s*\+?:?=\s*(.+)$", re.M)


def kbuild_problems(manifest: Manifest, kbuild: Path) -> list[str]:
    """Where Kbuild and the manifest disagree on modules and their sources."""
    if not kbuild.is_file():
        return [f"{kbuild}: no Kbuild beside the manifest"]
    text = kbuild.read_text()
    built = [o.removesuffix(".o") for line in _OBJ_M.findall(text) for o in line.split()]
    parts: dict[str, list[str]] = {}
    for name, objs in _COMPOSITE.findall(text):
        parts.setdefault(name, []).extend(o.removesuffix(".o") + ".c" for o in objs.split())
    problems = []
    listed = [m.name for m in manifest.modules]
    for name in sorted(set(built) - set(listed)):
        problems.append(f"{kbuild}: builds {name}.ko, which {manifest.path.name} does not list")
    for name in sorted(set(listed) - set(built)):
        problems.append(f"{kbuild}: does not build {name}.ko, which {manifest.path.name} lists")
    for m in manifest.modules:
        if m.name in built:
            sources = parts.get(m.name, [f"{m.name}.c"])
            if sorted(sources) != sorted(m.sources):
                problems.append(f"{kbuild}: {m.name}.ko from {', '.join(sorted(sources))}; "
                                f"{manifest.path.name} says {', '.join(sorted(m.sources))}")
    return problems
