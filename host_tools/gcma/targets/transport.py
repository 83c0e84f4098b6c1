"""How the host talks to a target: one interface, several ways (ssh, adb)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Transport(abc.ABC):
    """A shell, and file copies, on one target.

    Nothing waits forever: a command given no ``timeout`` gets
    :attr:`default_timeout` seconds, and a copy as long, after which the
    transport raises :class:`~gcma.errors.TargetError`.
    """

    #: Seconds a command or a copy may take unless the caller says otherwise.
    default_timeout: float = 600.0

    def _timeout(self, timeout: float | None) -> float:
        return self.default_timeout if timeout is None else timeout

    @abc.abstractmethod
    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run ``command`` with the target's shell; never raises on a non-zero exit.
        ``None`` means :attr:`default_timeout`."""

    @abc.abstractmethod
    def push(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy a host file to the path ``remote`` on the target, making its
        folder; ``mode``: its permissions (default: the host file's)."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy a target file to the host."""

    def close(self) -> None:  # noqa: B027 - optional for transports without a session
        """Drop the connection."""

    def check(self, command: str, timeout: float | None = None) -> str:
        """Run and return stdout; a non-zero exit raises :class:`TargetError`."""
        from gcma.errors import TargetError

        res = self.run(command, timeout=timeout)
        if not res.ok:
            raise TargetError(f"on target: {command!r} exited {res.exit_status}: "
                              f"{(res.stderr or res.stdout).strip()[-2000:]}")
        return res.stdout

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
