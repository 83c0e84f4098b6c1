"""Exception families and the exit codes they map to.

A user error is something the person running the tool can fix by changing
what they asked for or what they gave us (a bad argument, a patch that no
longer applies, a config symbol that does not stick). An infrastructure error
is the machine or an external tool failing underneath us (a compiler crash,
QEMU not booting, ssh not answering). Scripts and CI tell them apart by the
exit code.
"""

import shlex


class GcmaError(Exception):
    """Base class: every error the tool reports without a traceback."""

    exit_code = 1


class UserError(GcmaError):
    """Bad input: arguments, files, patches or config fragments."""

    exit_code = 2


class InfraError(GcmaError):
    """The environment failed: a tool, a build, the target."""

    exit_code = 3


def _command_message(what: str, argv: list[str], log: str | None, tail: str) -> str:
    where = f" (log: {log})" if log else ""
    return f"{what}{where}: {shlex.join(argv)}" + (f"\n{tail}" if tail else "")


class CommandFailed(InfraError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, log: str | None = None,
                 tail: str = "") -> None:
        self.argv, self.returncode, self.log, self.tail = argv, returncode, log, tail
        super().__init__(_command_message(f"command failed with exit code {returncode}",
                                          argv, log, tail))


class CommandTimedOut(InfraError):
    """An external command ran past the time its step allows; it was killed."""

    def __init__(self, argv: list[str], timeout: float, step: str, log: str | None = None,
                 tail: str = "") -> None:
        self.argv, self.timeout, self.step, self.log = argv, timeout, step, log
        super().__init__(_command_message(f"{step} timed out after {timeout:.0f} s",
                                          argv, log, tail))


class TargetError(InfraError):
    """The target did not boot, crashed, or cannot be reached."""


class CheckFailed(GcmaError):
    """Everything ran, and a result is wrong (a failed allocation, bad data).

    ``report``, when given, is the run's report: written before the error is
    shown, so that a failure never loses it."""

    exit_code = 4

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report


#: An error of the tool itself (a bug): neither the user's nor the machine's.
INTERNAL_ERROR_EXIT = 5
