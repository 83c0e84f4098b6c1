"""Running external commands: echoed in a reproducible form, logged to a file.

Every command goes through :func:`run`. It prints the command as a line a
person can paste into a shell (working directory and environment overrides
included), appends the same line and the command's output to a log file, and
raises :class:`CommandFailed` with the last lines of output when it fails.

Nothing waits forever: every command has a timeout (:data:`DEFAULT_TIMEOUT`
unless its step says otherwise), after which its whole process group is
killed and :class:`CommandTimedOut` names the step. The group is killed too
when we are interrupted (Ctrl-C, SIGTERM), so no command outlives us.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gcma.errors import CommandFailed, CommandTimedOut, InfraError

_quiet = False

#: Seconds a command may run unless its step gives its own limit.
DEFAULT_TIMEOUT = 600.0
#: For quick queries (:func:`output`).
QUERY_TIMEOUT = 120.0

#: Every command line run so far, in order (for metadata reproducers).
history: list[str] = []


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def info(msg: str) -> None:
    """Progress line for the person at the terminal (stderr)."""
    if not _quiet:
        print(msg, file=sys.stderr, flush=True)


def format_command(argv: Sequence[str], cwd: Path | None = None,
                   env: Mapping[str, str] | None = None) -> str:
    """The command as a shell line that reproduces it."""
    parts = []
    if cwd is not None:
        parts.append(f"cd {shlex.quote(str(cwd))} &&")
    for key, value in (env or {}).items():
        parts.append(f"{key}={shlex.quote(value)}")
    parts.append(shlex.join(str(a) for a in argv))
    return " ".join(parts)


@dataclass
class Result:
    returncode: int
    output: str


def run(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, log: Path | None = None,
        check: bool = True, capture: bool = False, progress: str | None = None,
        input_bytes: bytes | None = None, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """Run a command, echo it, log it.

    ``env`` holds only the variables added to the inherited environment, so the
    echoed line stays short and exact. With ``capture`` the output is returned
    (and still logged). With ``progress`` a heartbeat line names the last line
    of output now and then, for long builds, and names the step if it times
    out after ``timeout`` seconds.
    """
    args = [str(a) for a in argv]
    line = format_command(args, cwd, env)
    info(f"+ {line}")
    history.append(line)
    full_env = dict(os.environ)
    full_env.update(env or {})
    tail: deque[str] = deque(maxlen=25)
    captured: list[str] = []
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        logf = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            logf = stack.enter_context(open(log, "a", encoding="utf-8", errors="replace"))
            logf.write(f"+ {line}\n")
            logf.flush()
        try:
            # A group of its own, so that a timeout or our own end takes
            # every process it started (make's compilers, say) with it.
            proc = subprocess.Popen(
                args, cwd=cwd, env=full_env, process_group=0,
                stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except FileNotFoundError as exc:
            raise InfraError(f"{args[0]}: command not found (run ./build.sh setup)") from exc
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            _kill_group(proc)

        watchdog = threading.Timer(timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            if input_bytes is not None:
                assert proc.stdin is not None
                proc.stdin.write(input_bytes)
                proc.stdin.close()
            assert proc.stdout is not None
            last_beat = start
            for raw in proc.stdout:
                text = raw.decode("utf-8", errors="replace")
                tail.append(text.rstrip("\n"))
                if logf is not None:
                    logf.write(text)
                if capture:
                    captured.append(text)
                elif log is None and not _quiet:
                    sys.stderr.write(text)
                now = time.monotonic()
                if progress and now - last_beat >= 15:
                    last_beat = now
                    info(f"  [{progress} {now - start:5.0f}s] {text.strip()[:100]}")
            returncode = proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            watchdog.cancel()
    if timed_out.is_set():
        raise CommandTimedOut(args, timeout, progress or args[0], str(log) if log else None,
                              "\n".join(tail) if (log is not None or capture) else "")
    if check and returncode != 0:
        raise CommandFailed(args, returncode, str(log) if log else None,
                            "\n".join(tail) if (log is not None or capture) else "")
    return Result(returncode, "".join(captured))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def output(argv: Sequence[str | os.PathLike[str]], timeout: float = QUERY_TIMEOUT,
           **kwargs: object) -> str:
    """Run a short query command quietly and return its stripped output."""
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,  # type: ignore[call-overload]
                              **kwargs)
    except FileNotFoundError as exc:
        raise InfraError(f"{args[0]}: command not found (run ./build.sh setup)") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandTimedOut(args, timeout, args[0]) from exc
    if proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, None, (proc.stderr or proc.stdout).strip())
    return str(proc.stdout).strip()
