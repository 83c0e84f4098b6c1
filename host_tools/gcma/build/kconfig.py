"""Kconfig fragments: parse what they request, check what the kernel got.

``olddefconfig`` silently drops a symbol whose dependencies are not met, so a
fragment is only a request. :func:`verify` compares the request with the final
``.config`` and names every symbol that did not stick.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gcma.errors import UserError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")

#: The value a symbol has when it is not in .config or is "is not set".
NOT_SET = "n"


@dataclass(frozen=True)
class Request:
    symbol: str
    value: str
    source: str  # "file:line", for the error message


def parse_config(text: str, source: str = "<config>") -> dict[str, Request]:
    """Map CONFIG_ symbols to requested values ("n" for "is not set")."""
    result: dict[str, Request] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        if m := _SET.match(line):
            value = m.group(2)
            result[m.group(1)] = Request(m.group(1), value, where)
        elif m := _UNSET.match(line):
            result[m.group(1)] = Request(m.group(1), NOT_SET, where)
        elif line.startswith("#"):
            continue
        else:
            raise UserError(f"{where}: not a Kconfig line: {raw!r}")
    return result


def parse_fragments(paths: Iterable[Path]) -> dict[str, Request]:
    """Requests of several fragments; a later fragment overrides an earlier one."""
    merged: dict[str, Request] = {}
    for path in paths:
        merged.update(parse_config(path.read_text(), str(path)))
    return merged


def read_dotconfig(path: Path) -> dict[str, str]:
    return {sym: req.value for sym, req in parse_config(path.read_text(), str(path)).items()}


def verify(requests: dict[str, Request], final: dict[str, str]) -> list[str]:
    """One message per requested symbol whose final value differs."""
    problems = []
    for sym, req in sorted(requests.items()):
        got = final.get(sym, NOT_SET)
        if got != req.value:
            shown = "not set" if got == NOT_SET else got
            problems.append(f"{sym}: requested {req.value} ({req.source}), got {shown}")
    return problems
