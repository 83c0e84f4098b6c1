"""The adb transport, driven by adbutils against a real adb server.

A phone or a Cuttlefish is reached through the user's adb server (port 5037
unless ``ANDROID_ADB_SERVER_PORT`` says otherwise), as ``adb`` itself does.
The emulated target runs ``gcma-adbd`` (host_tools/gcma/guest/gcma-adbd.c) on
TCP 5555, forwarded to a loopback port. It is reached through a private adb
server, one per :class:`AdbTransport`, started here with ``nodaemon`` and
stopped on close, so that no adb process outlives the command and the user's
server is never touched.

Pushes and pulls speak the sync protocol themselves over an adbutils
connection, because adbutils' own ``sync.push`` waits forever on a device
that stops answering and drops the device's reason for a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gcma import runner
from gcma.errors import InfraError, TargetError, UserError
from gcma.targets.transport import CommandResult, Transport

if TYPE_CHECKING:
    import adbutils

#: Bytes per sync DATA message (the protocol's maximum).
SYNC_CHUNK = 64 * 1024
#: Seconds the adb server may take to answer after it is started.
SERVER_START_TIMEOUT = 20.0
#: Files at least this large show push progress.
PROGRESS_MIN = 4 << 20


def adb_binary() -> str:
    found = shutil.which("adb")
    if found is None:
        raise InfraError("adb not found on PATH (Debian: apt-get install adb; ./build.sh setup)")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class AdbServer:
    """A private adb server on a loopback port, in the foreground, ours alone."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # setpriv: the server dies with us even if we are killed outright.
        argv = ["setpriv", "--pdeathsig", "KILL", "--",
                adb_binary(), "-P", str(self.port), "nodaemon", "server"]
        runner.info(f"+ {runner.format_command(argv)}")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            try:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise InfraError(f"cannot start the adb server: {exc} (gcma doctor)") from exc
        t0 = time.monotonic()
        while time.monotonic() - t0 < SERVER_START_TIMEOUT:
            if self._proc.poll() is not None:
                raise InfraError(f"adb server on port {self.port} exited "
                                 f"({self._proc.returncode}); log: {self.log}")
            if _port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise InfraError(f"adb server on port {self.port} did not answer in "
                         f"{SERVER_START_TIMEOUT:.0f}s; log: {self.log}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


#: What the fallback shell (no shell_v2) echoes before the exit status.
_EXIT_MARK = "GCMA-ADB-EXIT:"


class _Deadline(Exception):
    """A command's or a copy's wall-clock time ran out."""


def _errors() -> tuple[type[BaseException], ...]:
    import adbutils

    # TimeoutExpired: adbutils runs "adb start-server" itself when it cannot
    # reach the server (never for ours: _dev() checks it is alive first).
    return (adbutils.AdbError, OSError, EOFError, subprocess.TimeoutExpired)


class AdbTransport(Transport):
    """One device (``serial``) of one adb server.

    ``connect``: the serial is a TCP address that the server must ``adb
    connect`` to first (Cuttlefish, a phone over Wi-Fi, the emulated target).
    ``server``: a private server this transport owns and stops on close.
    """

    def __init__(self, serial: str, server_port: int | None = None, connect: bool = False,
                 server: AdbServer | None = None, connect_timeout: float = 30.0) -> None:
        import adbutils

        self.serial = serial
        self._server = server
        port = server.port if server else server_port or default_server_port()
        self._client = adbutils.AdbClient(host="127.0.0.1", port=port,
                                          socket_timeout=connect_timeout)
        self._connect = connect
        self._connect_timeout = connect_timeout
        self._device: adbutils.AdbDevice | None = None
        self._v2: bool | None = None

    def _where(self) -> str:
        return f"adb {self.serial}"

    def _dev(self) -> adbutils.AdbDevice:
        if self._server is not None and not self._server.alive():
            # adbutils would start a daemon server of its own: never let it.
            raise TargetError(f"{self._where()}: our adb server (port {self._server.port}) "
                              f"is gone; log: {self._server.log}")
        if self._device is not None:
            return self._device
        try:
            if self._connect:
                said = self._client.connect(self.serial, timeout=self._connect_timeout)
                if "connected to" not in said:
                    raise TargetError(f"{self._where()}: adb connect said: {said.strip()}")
            self._client.wait_for(self.serial, state="device", timeout=self._connect_timeout)
            self._device = self._client.device(self.serial)
            features = set(self._device.get_features().split(","))
        except _errors() as exc:
            raise TargetError(f"{self._where()}: {exc}") from exc
        self._v2 = "shell_v2" in features
        return self._device

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """The shell protocol (v2: exit status, separate stderr) where the
        device has it; else stdout and stderr merged, the status echoed after.
        ``timeout`` is wall-clock: a command that keeps printing stops too
        (closing the stream kills it on the device)."""
        timeout = self._timeout(timeout)
        deadline = time.monotonic() + timeout
        dev = self._dev()
        out, err = bytearray(), bytearray()
        status = None
        try:
            conn = dev.open_transport(timeout=timeout)
            with conn:
                if self._v2:
                    conn.send_command(f"shell,v2,raw:{command}")
                    conn.check_okay()
                    while status is None:
                        header = self._read(conn, 5, deadline)
                        data = self._read(conn, int.from_bytes(header[1:5], "little"),
                                          deadline)
                        if header[0] == 1:
                            out += data
                        elif header[0] == 2:
                            err += data
                        elif header[0] == 3:
                            status = data[0] if data else 255
                else:
                    conn.send_command(f"shell:{command}; echo {_EXIT_MARK}$?")
                    conn.check_okay()
                    while chunk := self._recv(conn, deadline):
                        out += chunk
                    text, _, code = bytes(out).rpartition(_EXIT_MARK.encode())
                    if not code.strip().isdigit():
                        raise TargetError(f"{self._where()}: {command!r}: no exit status")
                    out, status = bytearray(text), int(code)
        except _Deadline as exc:
            raise TargetError(f"{self._where()}: {command!r} timed out after "
                              f"{timeout}s") from exc
        except _errors() as exc:
            raise TargetError(f"{self._where()}: shell failed: {exc}") from exc
        return CommandResult(command, status, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    @staticmethod
    def _recv(conn: adbutils.AdbConnection, deadline: float, n: int = 65536) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        conn.conn.settimeout(left)
        try:
            return conn.conn.recv(n)
        except TimeoutError as exc:
            raise _Deadline from exc

    @classmethod
    def _read(cls, conn: adbutils.AdbConnection, n: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = cls._recv(conn, deadline, n - len(data))
            if not chunk:
                raise EOFError(f"the device closed the stream ({len(data)} of {n} bytes)")
            data += chunk
        return bytes(data)

    @staticmethod
    def _send(conn: adbutils.AdbConnection, data: bytes, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        conn.conn.settimeout(left)
        try:
            conn.conn.sendall(data)
        except TimeoutError as exc:
            raise _Deadline from exc

    def _sync(self, request: bytes, path: str, deadline: float) -> adbutils.AdbConnection:
        conn = self._dev().open_transport(timeout=max(1.0, deadline - time.monotonic()))
        conn.send_command("sync:")
        conn.check_okay()
        encoded = path.encode()
        self._send(conn, request + struct.pack("<I", len(encoded)) + encoded, deadline)
        return conn

    def _read_fail(self, conn: adbutils.AdbConnection, deadline: float) -> str:
        (length,) = struct.unpack("<I", self._read(conn, 4, deadline))
        return self._read(conn, length, deadline).decode(errors="replace")

    def push(self, local: Path, remote: str, mode: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> None:
        """Copy ``local`` to the path ``remote`` (the device makes its folder).
        On gcma-adbd the old file stays as it was unless the whole copy
        arrives; Android's adbd writes in place."""
        timeout = self._timeout(None)
        deadline = time.monotonic() + timeout
        size = local.stat().st_size
        mode = local.stat().st_mode & 0o7777 if mode is None else mode
        if progress is None and size >= PROGRESS_MIN:
            progress = _progress_printer(f"push {local.name}")
        sent = 0
        try:
            conn = self._sync(b"SEND", f"{remote},{0o100000 | mode}", deadline)
            with conn, open(local, "rb") as f:
                while chunk := f.read(SYNC_CHUNK):
                    self._send(conn, b"DATA" + struct.pack("<I", len(chunk)) + chunk, deadline)
                    sent += len(chunk)
                    if progress:
                        progress(sent, size)
                self._send(conn, b"DONE" + struct.pack("<I", int(local.stat().st_mtime)),
                           deadline)
                status = self._read(conn, 4, deadline)
                if status != b"OKAY":
                    why = self._read_fail(conn, deadline) if status == b"FAIL" else repr(status)
                    raise TargetError(f"{self._where()}: push {local} -> {remote}: "
                                      f"the device refused: {why}")
        except TargetError:
            raise
        except _Deadline as exc:
            raise TargetError(f"{self._where()}: push {local} -> {remote} timed out after "
                              f"{timeout}s ({sent} of {size} bytes sent)") from exc
        except _errors() as exc:
            raise TargetError(f"{self._where()}: push {local} -> {remote} failed after "
                              f"{sent} of {size} bytes: {exc}") from exc

    def pull(self, remote: str, local: Path) -> None:
        timeout = self._timeout(None)
        deadline = time.monotonic() + timeout
        partial = local.with_name(local.name + ".partial")
        try:
            conn = self._sync(b"RECV", remote, deadline)
            with conn, open(partial, "wb") as f:
                while True:
                    what = self._read(conn, 4, deadline)
                    if what == b"DONE":
                        self._read(conn, 4, deadline)
                        break
                    if what == b"FAIL":
                        raise TargetError(f"{self._where()}: pull {remote}: "
                                          f"{self._read_fail(conn, deadline)}")
                    if what != b"DATA":
                        raise TargetError(f"{self._where()}: pull {remote}: bad reply {what!r}")
                    (length,) = struct.unpack("<I", self._read(conn, 4, deadline))
                    f.write(self._read(conn, length, deadline))
            partial.replace(local)
        except TargetError:
            partial.unlink(missing_ok=True)
            raise
        except _Deadline as exc:
            partial.unlink(missing_ok=True)
            raise TargetError(f"{self._where()}: pull {remote} timed out after "
                              f"{timeout}s") from exc
        except _errors() as exc:
            partial.unlink(missing_ok=True)
            raise TargetError(f"{self._where()}: pull {remote} -> {local} failed: {exc}") from exc

    def root(self) -> None:
        """Make sure adbd runs as root: modules cannot be loaded otherwise.
        ``adb root`` restarts adbd, which goes offline for a moment."""
        if self.run("id -u", timeout=30).stdout.strip() == "0":
            return
        try:
            said = self._client.device(self.serial).root()
        except _errors() as exc:
            raise TargetError(f"{self._where()}: adb root failed: {exc}") from exc
        if "production builds" in said or "cannot" in said:
            raise UserError(f"{self._where()}: {said.strip()}: loading modules needs a "
                            f"userdebug or eng build (adb root)")
        if not self._wait_for("id -u", "0", self._connect_timeout):
            raise TargetError(f"{self._where()}: still not root after adb root "
                              f"({said.strip()})")

    def _wait_for(self, command: str, answer: str, timeout: float) -> bool:
        """After adbd restarted (root, reboot): poll until ``command`` answers
        ``answer``, reconnecting as needed; False after ``timeout`` s."""
        self._device = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.run(command, timeout=10).stdout.strip() == answer:
                    return True
            except TargetError:
                self._device = None
            time.sleep(0.5)
        return False

    def reboot(self, timeout: float = 300.0) -> None:
        """adb reboot, then wait until the device runs a new boot (its boot_id
        changed: the old system can still answer for a moment) and, on
        Android, has finished booting."""
        probe = ("cat /proc/sys/kernel/random/boot_id; "
                 "getprop sys.boot_completed 2>/dev/null || echo 1")
        before = self.run(probe, timeout=30).stdout.split()[:1]
        try:
            self._dev().reboot()
        except _errors() as exc:
            raise TargetError(f"{self._where()}: adb reboot failed: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._device = None
            try:
                now = self.run(probe, timeout=10).stdout.split()
                if now[:1] != before and now[1:2] == ["1"]:
                    self.root()  # adbd comes back unprivileged after a reboot
                    return
            except TargetError:
                pass
            time.sleep(1)
        raise TargetError(f"{self._where()}: not back {timeout:.0f}s after adb reboot")

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._device = None


def _progress_printer(label: str) -> Callable[[int, int], None]:
    shown = [-1]

    def show(done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if quarter != shown[0]:
            shown[0] = quarter
            runner.info(f"{label}: {done >> 20}/{total >> 20} MiB")

    return show


def default_server_port() -> int:
    """The user's adb server, as the adb command finds it."""
    return int(os.environ.get("ANDROID_ADB_SERVER_PORT", "5037"))


def devices(server_port: int | None = None) -> list[tuple[str, str]]:
    """(serial, state) of every device the adb server knows."""
    import adbutils

    port = server_port or default_server_port()
    try:
        return [(d.serial, d.state) for d in adbutils.AdbClient(port=port).list()]
    except _errors() as exc:
        raise TargetError(f"adb server on port {port}: {exc}") from exc
