"""Stress scenarios: YAML files in ``device_tests/scenarios/``.

A scenario says what a camera-like client asks of a heap: the buffer sizes
(taken in turn), how many buffers a burst allocates, how often bursts come,
how long buffers are held, how many threads, and for how long. The
allocation driver ``heap_stress`` runs it on the target. Every mistake in a
file is reported with the file, the line and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from gcma import paths
from gcma.errors import UserError

SCENARIO_DIR = paths.PROJECT / "device_tests" / "scenarios"

_SIZE = re.compile(r"^([1-9][0-9]*)([KMG]?)$")
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30}
#: heap_stress's own limits.
MAX_SIZES, MAX_BURST, MAX_THREADS = 16, 256, 64
MAX_MS = 3_600_000


class ScenarioError(UserError):
    """A scenario file that cannot be used; the message names file, line, field."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    sizes: tuple[str, ...]
    buffers_per_burst: int = 1
    frame_interval_ms: int = 0
    hold_ms: int = 0
    threads: int = 1
    duration_s: float | None = None
    bursts: int | None = None

    def driver_args(self, heap: str, out: str, duration_s: float | None = None) -> list[str]:
        """heap_stress's command line; ``duration_s`` shortens a timed scenario."""
        args = ["heap_stress", "-H", heap, "-s", ",".join(self.sizes),
                "-b", str(self.buffers_per_burst), "-i", str(self.frame_interval_ms),
                "-h", str(self.hold_ms), "-t", str(self.threads)]
        seconds = self.duration_s if duration_s is None else duration_s
        if self.bursts is not None and duration_s is None:
            args += ["-n", str(self.bursts)]
        else:
            args += ["-d", str(max(1, round((seconds or 0) * 1000)))]
        return [*args, "-o", out]


def size_bytes(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) << _SHIFT[m.group(2)]


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _int(path: Path, key: str, node: yaml.Node, low: int, high: int) -> int:
    if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:int"):
        got = f", got {node.value!r}" if isinstance(node, yaml.ScalarNode) else ""
        raise ScenarioError(f"{_where(path, node)}: {key}: expected a whole number{got}")
    value = int(yaml.safe_load(node.value))
    if not low <= value <= high:
        raise ScenarioError(f"{_where(path, node)}: {key}: {value} is not "
                            f"between {low} and {high}")
    return value


def _text(path: Path, key: str, node: yaml.Node) -> str:
    if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"
            and node.value.strip()):
        raise ScenarioError(f"{_where(path, node)}: {key}: expected a non-empty string")
    return str(node.value)


def _sizes(path: Path, node: yaml.Node) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise ScenarioError(f"{_where(path, node)}: sizes: expected a list of sizes "
                            "such as [4M, 8M]")
    if len(node.value) > MAX_SIZES:
        raise ScenarioError(f"{_where(path, node)}: sizes: at most {MAX_SIZES} sizes")
    sizes = []
    for item in node.value:
        text = item.value if isinstance(item, yaml.ScalarNode) else ""
        try:
            if not isinstance(text, str):
                raise ValueError(text)
            size_bytes(text)
        except ValueError:
            raise ScenarioError(f"{_where(path, item)}: sizes: {text!r} is not a size "
                                "(a whole number of bytes, or with K, M or G)") from None
        sizes.append(text)
    return tuple(sizes)


_REQUIRED = ("name", "description", "sizes")
_KNOWN = (*_REQUIRED, "buffers_per_burst", "frame_interval_ms", "hold_ms", "threads",
          "duration_s", "bursts")


def load(path: Path) -> Scenario:
    """Read and check one scenario file."""
    try:
        root = yaml.compose(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{path}{line}: not valid YAML: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ScenarioError(f"{path}:1: expected a mapping of scenario fields")
    fields: dict[str, yaml.Node] = {}
    for key_node, value in root.value:
        key = key_node.value
        if key not in _KNOWN:
            raise ScenarioError(f"{_where(path, key_node)}: {key}: unknown field "
                                f"(known: {', '.join(_KNOWN)})")
        if key in fields:
            raise ScenarioError(f"{_where(path, key_node)}: {key}: given twice")
        fields[key] = value
    for key in _REQUIRED:
        if key not in fields:
            raise ScenarioError(f"{path}:1: {key}: missing")

    name = _text(path, "name", fields["name"])
    if name != path.stem:
        raise ScenarioError(f"{_where(path, fields['name'])}: name: {name!r} must match "
                            f"the file name {path.stem!r}")
    duration = bursts = None
    if ("duration_s" in fields) == ("bursts" in fields):
        raise ScenarioError(f"{path}:1: duration_s, bursts: give exactly one of them")
    if "duration_s" in fields:
        node = fields["duration_s"]
        if not (isinstance(node, yaml.ScalarNode) and node.tag in
                ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")):
            raise ScenarioError(f"{_where(path, node)}: duration_s: expected seconds")
        duration = float(yaml.safe_load(node.value))
        if not (math.isfinite(duration) and 0 < duration <= 86400):
            raise ScenarioError(f"{_where(path, node)}: duration_s: {node.value} is not "
                                "between 0 and 86400")
    else:
        bursts = _int(path, "bursts", fields["bursts"], 1, 10**9)

    def opt(key: str, low: int, high: int, default: int) -> int:
        return _int(path, key, fields[key], low, high) if key in fields else default

    return Scenario(
        name=name,
        description=_text(path, "description", fields["description"]),
        sizes=_sizes(path, fields["sizes"]),
        buffers_per_burst=opt("buffers_per_burst", 1, MAX_BURST, 1),
        frame_interval_ms=opt("frame_interval_ms", 0, MAX_MS, 0),
        hold_ms=opt("hold_ms", 0, MAX_MS, 0),
        threads=opt("threads", 1, MAX_THREADS, 1),
        duration_s=duration,
        bursts=bursts,
    )


def available(directory: Path = SCENARIO_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def find(name: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """A scenario by name (``camera-burst``) or by path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = directory / f"{name}.yaml"
        if not path.exists():
            raise ScenarioError(f"no scenario {name!r} (known: "
                                f"{', '.join(available(directory)) or 'none'})")
    return load(path)
