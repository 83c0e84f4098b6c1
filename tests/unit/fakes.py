"""Stand-ins for what unit tests cannot run: a target shell and QEMU.

``FakeTransport`` answers commands from a script (exact command -> result,
or a callable), and records every command it got. ``FAKE_QEMU`` is a small
program with QEMU's command line that binds the ssh forward and writes the
readiness marker to the console file, or fails the way QEMU does when its
port was taken; the test says how (environment variables below).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gcma.targets.transport import CommandResult, Transport

Reply = CommandResult | Callable[[str], CommandResult]


class FakeTransport(Transport):
    def __init__(self, replies: dict[str, Reply] | None = None,
                 default: Reply | None = None) -> None:
        self.replies = dict(replies or {})
        self.default = default
        self.commands: list[tuple[str, float | None]] = []
        self.pushed: list[tuple[Path, str]] = []
        self.closed = False

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self.commands.append((command, self._timeout(timeout)))
        reply = self.replies.get(command, self.default)
        if reply is None:
            return CommandResult(command, 127, "", f"fake: no reply for {command!r}")
        return reply(command) if callable(reply) else reply

    def push(self, local: Path, remote: str, mode: int | None = None) -> None:
        self.pushed.append((local, remote))

    def pull(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def ok(stdout: str = "") -> CommandResult:
    return CommandResult("", 0, stdout, "")


#: FAKE_QEMU_COUNTER: a file counting launches. The first FAKE_QEMU_FAIL
#: launches fail after FAKE_QEMU_FAIL_DELAY s with QEMU's hostfwd message
#: (or FAKE_QEMU_ERROR's text); later ones listen on the forwarded port and
#: print the readiness marker, then wait to be killed.
FAKE_QEMU = r'''#!/usr/bin/env python3
import os, re, socket, sys, time
args = sys.argv[1:]
netdev = args[args.index("-netdev") + 1]
port = int(re.search(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-", netdev).group(1))
console = args[args.index("-serial") + 1][len("file:"):]
counter = os.environ["FAKE_QEMU_COUNTER"]
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
if n < int(os.environ.get("FAKE_QEMU_FAIL", "0")):
    time.sleep(float(os.environ.get("FAKE_QEMU_FAIL_DELAY", "0")))
    msg = os.environ.get("FAKE_QEMU_ERROR",
                         f"-netdev {netdev}: could not set up host forwarding rule")
    print(f"qemu-system-aarch64: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)
s = socket.socket()
s.bind(("127.0.0.1", port))
s.listen()
with open(console, "a") as f:
    f.write("booting\nGCMA-TARGET-READY\n")
time.sleep(600)
'''
