"""Builds on another machine: a build server with more cores, over ssh.

``gcma kernel build --on HOST`` and ``gcma modules build --on HOST`` copy this
checkout to ``~/gcma-remote/<checkout>`` on HOST (rsync over ssh, our output
folder left out), run the same ``./build.sh gcma ...`` command there with
fabric, streaming its output to a local log, and copy the results back into
our ``out/``, where every later step finds them as if built here. HOST is a
Debian 12 machine like this one: ``./build.sh`` sets it up the same way.

HOST is ``[user@]host[:port]``; the key is ``--ssh-key`` (default: the ssh
agent and ssh's default keys).
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from gcma import paths, runner
from gcma.errors import CommandFailed, InfraError, TargetError, UserError

#: What is copied back after a kernel build: enough to boot it, to check
#: symbols and configs against it, and to build user space against its UAPI.
KERNEL_RESULTS = ("metadata.json", "build/arch/arm64/boot/Image", "build/System.map",
                  "build/.config", "build/Module.symvers", "build/vmlinux.symvers",
                  "build/usr/include/***")
#: Seconds between progress lines while the remote build runs.
HEARTBEAT_S = 30.0
_HOST = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.:_-]+?)"
                   r"(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Host:
    host: str
    user: str | None = None
    port: int = 22
    key: Path | None = None

    @classmethod
    def parse(cls, text: str, key: Path | None = None) -> Host:
        m = _HOST.match(text)
        if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
            raise UserError(f"--on {text!r}: not [user@]host[:port]")
        if key is not None and not key.is_file():
            raise UserError(f"--ssh-key {key}: no such file")
        return cls(m.group("host"), m.group("user"), int(m.group("port") or 22), key)

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_command(self) -> list[str]:
        """ssh as rsync runs it: no prompts, keys of a lab host not pinned."""
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15"]
        return argv + (["-i", str(self.key), "-o", "IdentitiesOnly=yes"] if self.key else [])


class _LogStream:
    """fabric's output sink: everything to the log, a heartbeat to the terminal."""

    def __init__(self, log: Path, label: str) -> None:
        self._log = open(log, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._label, self._last, self._shown = label, "", time.monotonic()
        self.tail: list[str] = []

    def write(self, text: str) -> int:
        self._log.write(text)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            self._last = lines[-1]
            self.tail = (self.tail + lines)[-25:]
        if time.monotonic() - self._shown > HEARTBEAT_S:
            self._shown = time.monotonic()
            runner.info(f"{self._label}: {self._last[:120]}")
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def close(self) -> None:
        self._log.close()


def _connection(host: Host):  # type: ignore[no-untyped-def]
    import fabric
    import paramiko

    kwargs: dict[str, object] = {}
    if host.key:
        kwargs = {"key_filename": str(host.key), "look_for_keys": False, "allow_agent": False}
    conn = fabric.Connection(host=host.host, user=host.user, port=host.port,
                             connect_timeout=15, connect_kwargs=kwargs)
    conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    return conn


def remote_root(host: Host) -> str:
    """Where the checkout goes on HOST (relative to the login's home)."""
    return f"gcma-remote/{paths.PROJECT.name}"


def sync(host: Host, log: Path) -> str:
    """Copy the checkout to HOST (what changed only); returns its path there."""
    root = remote_root(host)
    ssh = shlex.join(host.ssh_command())
    runner.run(["rsync", "-a", "--delete", "--mkpath", "--exclude=/out/", "--exclude=.git/",
                "--exclude=__pycache__/", "-e", ssh, f"{paths.PROJECT}/",
                f"{host.login}:{root}/"], log=log, timeout=1800)
    return root


def fetch(host: Host, remote: str, local: Path, include: tuple[str, ...] = (),
          log: Path | None = None) -> None:
    """Copy HOST's ``remote`` folder (only ``include`` patterns, if given) to ``local``."""
    local.mkdir(parents=True, exist_ok=True)
    filters = [f"--include={p}" for p in include]
    if include:
        filters = ["--include=*/", *filters, "--exclude=*", "--prune-empty-dirs"]
    else:
        filters = ["--delete"]
    runner.run(["rsync", "-a", *filters, "-e", shlex.join(host.ssh_command()),
                f"{host.login}:{remote}/", f"{local}/"], log=log, timeout=1800)


def build(host: Host, gcma_args: list[str], what: str, timeout: float = 7200.0) -> str:
    """Sync, then run ``./build.sh gcma GCMA_ARGS`` on HOST; returns the
    checkout's path there. A failure names the log and its last lines."""
    log = paths.logs_dir() / f"remote-{what}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    root = sync(host, log)
    # timeout(1) on HOST bounds the build there too; the pty makes HOST's
    # sshd hang it up if we go away (Ctrl-C, a crash), so nothing runs on.
    command = (f"cd {shlex.quote(root)} && timeout -k 30 {int(timeout)} "
               f"./build.sh gcma {shlex.join(gcma_args)}")
    shown = shlex.join([*host.ssh_command(), host.login, command])
    runner.info(f"+ {shown}")
    runner.history.append(shown)
    stream = _LogStream(log, f"{what} on {host.host}")
    import invoke
    import paramiko

    conn = _connection(host)
    try:
        res = conn.run(command, hide=True, warn=True, timeout=timeout + 60, in_stream=False,
                       pty=True, out_stream=stream, err_stream=stream)
    except invoke.CommandTimedOut as exc:
        raise InfraError(f"{what} on {host.host} timed out after {timeout:.0f}s "
                         f"(log: {log})") from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise TargetError(f"{host.login}:{host.port}: ssh failed: {exc}") from exc
    finally:
        stream.close()
        conn.close()
    if res.exited in (124, 137):  # timeout(1): the time ran out on HOST
        raise InfraError(f"{what} on {host.host} timed out after {timeout:.0f}s (log: {log})")
    if res.exited != 0:
        raise CommandFailed(["ssh", host.login, command], res.exited, str(log),
                            "\n".join(stream.tail))
    return root


def kernel_build(host: Host, variant: str, local: Path) -> None:
    """Build kernel ``variant`` on HOST; copy what later steps need to ``local``."""
    root = build(host, ["kernel", "build", "--variant", variant], f"kernel-{variant}")
    suffix = "" if variant == "default" else f"-{variant}"
    fetch(host, f"{root}/out/kernel{suffix}", local, KERNEL_RESULTS,
          paths.logs_dir() / f"remote-kernel-{variant}.log")


def modules_build(host: Host, variant: str, src_rel: str, kdir: str | None,
                  local_dist: Path) -> None:
    """Build the modules of ``src_rel`` (a folder of the checkout) on HOST,
    against its own kernel of ``variant`` or the tree ``kdir`` there."""
    args = ["modules", "build", "--variant", variant, "--src", src_rel]
    if kdir:
        args += ["--kdir", kdir]
    root = build(host, args, f"modules-{variant}")
    name = Path(src_rel).name
    fetch(host, f"{root}/out/modules/{variant}/{name}/dist", local_dist,
          log=paths.logs_dir() / f"remote-modules-{variant}.log")
