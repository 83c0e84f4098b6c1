"""Pressure generators: the ``pressure`` program's modes, started on the
target before a scenario and stopped after it.

Each is defined here as data: its on-target command line, sized for the
emulated target (677 MiB of RAM beside the reserved areas; /slow is the
disk QEMU throttles). A generator must say "pressure MODE ready" before the scenario
starts; one that exits instead fails the run with what it printed.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from gcma.errors import TargetError, UserError
from gcma.report import parse_kv
from gcma.targets.transport import Transport

STATE_DIR = "/tmp/gcma-pressure"


@dataclass(frozen=True)
class Pressure:
    name: str
    help: str
    argv: tuple[str, ...]

    @property
    def mode(self) -> str:
        return self.argv[1]


#: Every generator, by the name ``--pressure`` takes.
PRESSURES: dict[str, Pressure] = {p.name: p for p in (
    Pressure("pagecache", "stream-read a sparse 1,200 MiB file (more than RAM) in a loop",
             ("pressure", "stream", "/data/pressure-stream.tmp", "1200")),
    Pressure("anon", "keep 384 MiB of anonymous memory resident",
             ("pressure", "anon", "384")),
    Pressure("pinned", "hold 9,600 anonymous pages spliced into pipes (vmsplice)",
             ("pressure", "pin", "9600")),
    Pressure("writeback", "keep writing two 32 MiB files on /slow (throttled to 4 MB/s), "
             "each truncated first, so new dirty pages keep coming",
             ("pressure", "dirty", "/slow", "64")),
    Pressure("frag", "fault in 64 MiB and give every other page back",
             ("pressure", "frag", "64")),
)}


def parse(names: Iterable[str]) -> list[Pressure]:
    """``["anon,pinned", "pagecache"]`` -> generators, in order, each once;
    ``all`` is every one of them."""
    chosen: list[Pressure] = []
    for item in names:
        for name in filter(None, (n.strip() for n in item.split(","))):
            if name == "all":
                wanted = list(PRESSURES.values())
            elif name in PRESSURES:
                wanted = [PRESSURES[name]]
            else:
                raise UserError(f"unknown pressure {name!r} (known: "
                                f"{', '.join(PRESSURES)}, all)")
            chosen += [p for p in wanted if p not in chosen]
    return chosen


def start(shell: Transport, pressures: list[Pressure],
          ready_timeout: float = 300.0) -> dict[str, dict[str, str]]:
    """Start each generator in the background and wait until it is ready;
    returns its ready line's figures. On any failure the ones started are
    stopped again."""
    started: dict[str, dict[str, str]] = {}
    shell.check(f"rm -rf {STATE_DIR} && mkdir -p {STATE_DIR}")
    try:
        for p in pressures:
            log = f"{STATE_DIR}/{p.name}.log"
            shell.check(f"{shlex.join(p.argv)} > {log} 2>&1 & echo $! > {STATE_DIR}/{p.name}.pid")
            # Ready, or exited: whichever comes first.
            wait = (f"i=0; while [ $i -lt {int(ready_timeout * 10)} ]; do "
                    f"grep -q 'ready' {log} && exit 0; "
                    f"kill -0 $(cat {STATE_DIR}/{p.name}.pid) 2>/dev/null || exit 1; "
                    "sleep 0.1; i=$((i+1)); done; exit 2")
            res = shell.run(wait, timeout=ready_timeout + 60)
            text = shell.run(f"cat {log}").stdout.strip()
            if res.exit_status != 0:
                why = "exited" if res.exit_status == 1 else "was not ready in time"
                raise TargetError(f"pressure {p.name} {why}: {text[-300:] or 'no output'}")
            started[p.name] = parse_kv(text.splitlines()[0])
    except BaseException:
        stop(shell, pressures)
        raise
    return started


def stop(shell: Transport, pressures: list[Pressure]) -> dict[str, dict[str, str]]:
    """SIGTERM each generator, wait for it, and return its last figures."""
    figures: dict[str, dict[str, str]] = {}
    for p in pressures:
        pidfile = f"{STATE_DIR}/{p.name}.pid"
        shell.run(f"[ -f {pidfile} ] && pid=$(cat {pidfile}) && kill $pid 2>/dev/null && "
                  "i=0 && while kill -0 $pid 2>/dev/null && [ $i -lt 300 ]; do "
                  "sleep 0.1; i=$((i+1)); done; kill -KILL $pid 2>/dev/null; true",
                  timeout=120)
        lines = shell.run(f"cat {STATE_DIR}/{p.name}.log 2>/dev/null").stdout.splitlines()
        last = [line for line in lines if "stopped" in line]
        figures[p.name] = parse_kv(last[-1]) if last else {}
    return figures
