"""Target descriptions: ``targets.yaml``, the built-in ones, and their transports.

A target says how to reach a machine and what to put on it::

    targets:
      cf:                             # the name given to --target
        transport: adb                # emulated | adb | ssh
        serial: 0.0.0.0:6520          # adb: a serial, or host:port to adb-connect
        arch: x86_64                  # arm64 | x86_64
        kernel: {out_dir: ~/gki/out}  # or {variant: default} (ours), or {tree: DIR}
        install_path: /data/local/tmp/gcma
        params: {gcma_area: "donate=1"}
        areas: {source: reserve_mem, names: [gcma_camera]}   # or {source: dt}
        heaps: [gcma_camera]          # what must appear in /dev/dma_heap

An emulated target also takes ``connect`` (ssh or adb) and ``instance``
(the QEMU instance it means, ``gcma target start --name``; default: its name).

Files are read in this order, a later definition of a name replacing an
earlier one: the built-in targets (:data:`BUILTIN`), ``~/.config/gcma/
targets.yaml``, ``./targets.yaml``, and the file ``$GCMA_TARGETS`` names.
Every problem names the file, the line and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gcma.errors import UserError
from gcma.targets.transport import Transport

TRANSPORTS = ("emulated", "adb", "ssh")
ARCHES = ("arm64", "x86_64")
AREA_SOURCES = ("dt", "reserve_mem")
#: The heaps the emulated target's device tree (dts/virt-gcma.dtso) creates.
EMULATED_HEAPS = ("camera", "video")
#: adb's serial for a local Cuttlefish (its adbd on TCP 6520).
CUTTLEFISH_SERIAL = "0.0.0.0:6520"


@dataclass(frozen=True)
class KernelRef:
    """The kernel modules are built against: one of ours, a GKI source tree
    (``tree``), or a Kleaf/kbuild output folder with Module.symvers (``out_dir``)."""

    variant: str | None = None
    tree: Path | None = None
    out_dir: Path | None = None


@dataclass(frozen=True)
class TargetSpec:
    name: str
    transport: str
    source: str  # "file:line" where it was defined, or "built-in"
    serial: str | None = None
    host: str | None = None
    port: int | None = None
    user: str = "root"
    key: Path | None = None
    connect: str = "ssh"  # emulated only: reach it over ssh or adb
    instance: str = ""  # emulated only: the QEMU instance (default: the target's name)
    arch: str = "arm64"
    kernel: KernelRef = field(default_factory=KernelRef)
    install_path: str = "/data/local/tmp/gcma"
    params: dict[str, str] = field(default_factory=dict)
    area_source: str = "dt"
    area_names: tuple[str, ...] = ()
    heaps: tuple[str, ...] = ()

    def module_params(self, module: str) -> str:
        """What ``module`` is loaded with: the target's ``params``; and for
        gcma_area on a target whose areas come from reserve_mem= (no device
        tree), where they come from, unless ``params`` says so itself."""
        given = self.params.get(module, "")
        if module == "gcma_area" and self.area_source == "reserve_mem" \
                and "source=" not in given:
            given = f"{given} source=reserve_mem names={','.join(self.area_names)}".strip()
        return given


_EMULATED = {"transport": "emulated", "arch": "arm64", "kernel": {"variant": "default"},
             "install_path": "/data/local/tmp/gcma", "areas": {"source": "dt"},
             "heaps": list(EMULATED_HEAPS)}
#: Targets every user has, before any file.
BUILTIN: dict[str, dict[str, Any]] = {
    "emulated": {**_EMULATED, "connect": "ssh"},
    "emulated-adb": {**_EMULATED, "connect": "adb"},
    "cuttlefish": {"transport": "adb", "serial": CUTTLEFISH_SERIAL, "arch": "x86_64",
                   "install_path": "/data/local/tmp/gcma",
                   "areas": {"source": "reserve_mem", "names": ["gcma_camera"]},
                   "heaps": ["gcma_camera"]},
    "phone": {"transport": "adb", "arch": "arm64", "install_path": "/data/local/tmp/gcma",
              "areas": {"source": "dt"}},
}

#: Fields each transport allows (beyond the common ones).
_COMMON = {"transport", "arch", "kernel", "install_path", "params", "areas", "heaps"}
_FIELDS = {"emulated": _COMMON | {"connect", "instance"},
           "adb": _COMMON | {"serial"},
           "ssh": _COMMON | {"host", "port", "user", "key"}}


def _env_file() -> Path | None:
    name = os.environ.get("GCMA_TARGETS")
    return Path(name).expanduser() if name else None


def user_files() -> list[Path]:
    files = [Path.home() / ".config" / "gcma" / "targets.yaml", Path.cwd() / "targets.yaml"]
    if (env := _env_file()) is not None:
        files.append(env)
    return files


class _Reader:
    """Turns one YAML node tree into TargetSpecs, with file:line in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def where(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, what: str) -> UserError:
        return UserError(f"{self.where(node)}: {what}")

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what}: keys must be plain names")
            if key.value in out:
                raise self.fail(key, f"{what}: {key.value!r} given twice")
            out[key.value] = (key, value)
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.value == "":
            raise self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def choice(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> str:
        value = self.scalar(node, what)
        if value not in allowed:
            raise self.fail(node, f"{what}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def names(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return tuple(self.scalar(n, f"{what} entry") for n in node.value)

    def target(self, name: str, node: yaml.Node) -> TargetSpec:
        what = f"target {name!r}"
        fields = self.mapping(node, what)
        if "transport" not in fields:
            raise self.fail(node, f"{what}: field 'transport' is missing "
                                  f"(one of {', '.join(TRANSPORTS)})")
        transport = self.choice(fields["transport"][1], f"{what}: field 'transport'", TRANSPORTS)
        for key, (knode, _) in fields.items():
            if key not in _FIELDS[transport]:
                raise self.fail(knode, f"{what}: unknown field {key!r} (transport {transport} "
                                       f"takes: {', '.join(sorted(_FIELDS[transport]))})")
        kw: dict[str, Any] = {"name": name, "transport": transport, "source": self.where(node)}

        def field_(key: str) -> yaml.Node | None:
            return fields[key][1] if key in fields else None

        label = lambda key: f"{what}: field {key!r}"  # noqa: E731
        for key in ("serial", "host", "user", "install_path", "instance"):
            if (n := field_(key)) is not None:
                kw[key] = self.scalar(n, label(key))
        if (n := field_("key")) is not None:
            kw["key"] = Path(self.scalar(n, label("key"))).expanduser()
        if (n := field_("port")) is not None:
            port = self.scalar(n, label("port"))
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise self.fail(n, f"{label('port')}: {port!r} is not a TCP port")
            kw["port"] = int(port)
        if (n := field_("connect")) is not None:
            kw["connect"] = self.choice(n, label("connect"), ("ssh", "adb"))
        if (n := field_("arch")) is not None:
            kw["arch"] = self.choice(n, label("arch"), ARCHES)
        if (n := field_("install_path")) is not None and not kw["install_path"].startswith("/"):
            raise self.fail(n, f"{label('install_path')}: must be an absolute path")
        if (n := field_("kernel")) is not None:
            kw["kernel"] = self.kernel(n, label("kernel"))
        if (n := field_("params")) is not None:
            kw["params"] = {mod: self.scalar(v, f"{label('params')}: {mod}")
                            for mod, (_, v) in self.mapping(n, label("params")).items()}
        if (n := field_("heaps")) is not None:
            kw["heaps"] = self.names(n, label("heaps"))
        if (n := field_("areas")) is not None:
            areas = self.mapping(n, label("areas"))
            if "source" not in areas:
                raise self.fail(n, f"{label('areas')}: 'source' is missing (dt or reserve_mem)")
            kw["area_source"] = self.choice(areas["source"][1], f"{label('areas')}: source",
                                            AREA_SOURCES)
            if "names" in areas:
                kw["area_names"] = self.names(areas["names"][1], f"{label('areas')}: names")
            if kw["area_source"] == "reserve_mem" and not kw.get("area_names"):
                raise self.fail(n, f"{label('areas')}: reserve_mem needs 'names'")
            for key, (knode, _) in areas.items():
                if key not in ("source", "names"):
                    raise self.fail(knode, f"{label('areas')}: unknown field {key!r}")
        if transport == "ssh" and "host" not in kw:
            raise self.fail(node, f"{what}: an ssh target needs 'host'")
        return TargetSpec(**kw)

    def kernel(self, node: yaml.Node, what: str) -> KernelRef:
        fields = self.mapping(node, what)
        if len(fields) != 1 or next(iter(fields)) not in ("variant", "tree", "out_dir"):
            raise self.fail(node, f"{what}: give exactly one of variant, tree, out_dir")
        key, (_, value) = next(iter(fields.items()))
        text = self.scalar(value, f"{what}: {key}")
        if key == "variant":
            return KernelRef(variant=text)
        path = Path(text).expanduser()
        return KernelRef(tree=path) if key == "tree" else KernelRef(out_dir=path)

    def document(self, root: yaml.Node | None) -> dict[str, TargetSpec]:
        if root is None:
            return {}
        top = self.mapping(root, "the file")
        for key, (knode, _) in top.items():
            if key != "targets":
                raise self.fail(knode, f"unknown top-level field {key!r} (expected 'targets')")
        if "targets" not in top:
            return {}
        return {name: self.target(name, node)
                for name, (_, node) in self.mapping(top["targets"][1], "'targets'").items()}


#: A targets file describes a few devices; anything this big is a mistake.
MAX_FILE_CHARS = 1 << 20


def parse(text: str, source: str) -> dict[str, TargetSpec]:
    """The targets of one YAML text; a UserError names file, line and field."""
    if len(text) > MAX_FILE_CHARS:
        raise UserError(f"{source}: {len(text):,} characters: too large for a targets file "
                        f"(at most {MAX_FILE_CHARS:,})")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        return _Reader(source).document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{source}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise UserError(f"{source}: not valid YAML: character U+{code:04X} at offset "
                        f"{exc.position} is not allowed") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        # pyyaml and the reader both recurse: "[[[[..." must not be a crash.
        raise UserError(f"{source}: nested too deeply to be a targets file") from None


def builtin() -> dict[str, TargetSpec]:
    return parse(yaml.safe_dump({"targets": BUILTIN}), "built-in targets")


def load(files: list[Path] | None = None) -> dict[str, TargetSpec]:
    """Every target: the built-in ones, then each existing file in order."""
    specs = builtin()
    for path in user_files() if files is None else files:
        named = files is not None or path == _env_file()
        if path.is_file():
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise UserError(f"{path}: cannot read: {exc}") from None
            specs.update(parse(text, str(path)))
        elif named:
            raise UserError(f"{path}: no such targets file"
                            + (" (named by $GCMA_TARGETS)" if files is None else ""))
    return specs


def resolve(name: str, files: list[Path] | None = None) -> TargetSpec:
    """The target called ``name``: from the files, or else an emulated target
    of that name that is running (started with gcma target start)."""
    specs = load(files)
    if name in specs:
        return specs[name]
    from gcma.targets.emulated import EmulatedTarget

    if EmulatedTarget(name).state() is not None:
        return replace(specs["emulated"], name=name, source="a running emulated target")
    raise UserError(f"target {name} is not running (gcma target start --name {name}) and "
                    f"is not in targets.yaml (known: {', '.join(sorted(specs))})")


def connect(spec: TargetSpec) -> Transport:
    """A connected transport to the target (an emulated one must be running)."""
    if spec.transport == "emulated":
        from gcma.targets.emulated import EmulatedTarget

        emu = EmulatedTarget(spec.instance or spec.name)
        return emu.adb_transport() if spec.connect == "adb" else emu.transport()
    if spec.transport == "ssh":
        from gcma.targets.ssh import SshTransport

        key = spec.key or Path.home() / ".ssh" / "id_ed25519"
        if not key.is_file():
            raise UserError(f"target {spec.name}: ssh key {key} not found ({spec.source}: "
                            f"set 'key')")
        return SshTransport(spec.host or "", spec.port or 22, key, user=spec.user)
    from gcma.targets import adb

    serial = spec.serial
    if serial is None:
        online = [s for s, state in adb.devices() if state == "device"]
        if len(online) != 1:
            raise UserError(f"target {spec.name}: no serial given and "
                            + ("no device is attached" if not online else
                               f"{len(online)} devices are attached ({', '.join(online)})")
                            + "; set 'serial' in targets.yaml")
        serial = online[0]
    return adb.AdbTransport(serial, connect=":" in serial)
