"""The ssh transport, driven by fabric (paramiko underneath)."""

from __future__ import annotations

import shlex
from pathlib import Path

import fabric
import invoke
import paramiko

from gcma.errors import TargetError
from gcma.targets.transport import CommandResult, Transport

#: Seconds between ssh keepalives: a target that died (a kernel hang, a
#: cable) is noticed instead of waited on.
KEEPALIVE_S = 15


class SshTransport(Transport):
    """Key-authenticated ssh to ``user@host:port``.

    The emulated target makes new host keys on every boot, so host keys are
    not checked; use this only for targets on the loopback or a lab network.
    """

    def __init__(self, host: str, port: int, key_file: Path, user: str = "root",
                 connect_timeout: float = 10.0) -> None:
        self.host, self.port, self.user = host, port, user
        self._conn = fabric.Connection(
            host=host, port=port, user=user, connect_timeout=connect_timeout,
            connect_kwargs={"key_filename": str(key_file), "look_for_keys": False,
                            "allow_agent": False})
        self._conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())

    def _where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def _open(self) -> None:
        """Connect if not connected yet, with keepalives on."""
        if self._conn.is_connected:
            return
        self._conn.open()
        transport = self._conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_S)

    def _sftp(self) -> None:
        """Bound every sftp operation of the next copy by the default timeout."""
        self._open()
        self._conn.sftp().get_channel().settimeout(self.default_timeout)

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        timeout = self._timeout(timeout)
        try:
            self._open()
            res = self._conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        except invoke.CommandTimedOut as exc:
            raise TargetError(f"{self._where()}: {command!r} timed out after {timeout}s") from exc
        except invoke.ThreadException as exc:
            # The channel's reader or writer thread hit a dead connection.
            raise TargetError(f"{self._where()}: {command!r}: the connection dropped before "
                              f"the command ended ({exc.exceptions[0].value!r})") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TargetError(f"{self._where()}: ssh failed: {exc}") from exc
        if res.exited is None or res.exited < 0:
            raise TargetError(f"{self._where()}: {command!r}: the connection dropped before "
                              "the command ended (no exit status)")
        return CommandResult(command, res.exited, res.stdout, res.stderr)

    def push(self, local: Path, remote: str, mode: int | None = None) -> None:
        folder = remote.rsplit("/", 1)[0]
        if folder:
            self.check(f"mkdir -p {shlex.quote(folder)}", timeout=60)
        try:
            self._sftp()
            self._conn.put(str(local), remote)
            self._conn.sftp().chmod(remote, local.stat().st_mode & 0o7777 if mode is None
                                    else mode)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TargetError(f"{self._where()}: push {local} -> {remote} failed: {exc}") from exc

    def pull(self, remote: str, local: Path) -> None:
        try:
            self._sftp()
            self._conn.get(remote, str(local))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TargetError(f"{self._where()}: pull {remote} -> {local} failed: {exc}") from exc

    def close(self) -> None:
        self._conn.close()
