"""The adb transport against gcma-adbd built for this host, through a real adb
server: the Android cases no emulated boot is needed for (several devices,
a device that goes away mid-push, a user build that refuses adb root)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gcma import targets
from gcma.errors import TargetError, UserError
from gcma.targets import adb
from gcma.targets.emulated import free_port

ADBD_SOURCE = Path(__file__).resolve().parents[2] / "host_tools/gcma/guest/gcma-adbd.c"


@pytest.fixture(scope="module")
def adbd_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("adbd") / "gcma-adbd"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, ADBD_SOURCE],
                   check=True)
    return binary


class Adbd:
    """One gcma-adbd on a loopback port, in a process group of its own."""

    def __init__(self, binary: Path, *flags: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-p", str(self.port), *flags],
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", self.port)) != 0:
            assert time.monotonic() < deadline and self.proc.poll() is None
            time.sleep(0.02)

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """The device goes away: the daemon and its connection processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[adb.AdbServer]:
    srv = adb.AdbServer(free_port(), tmp_path / "adb-server.log")
    srv.start()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(srv.port))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def device(adbd_binary: Path) -> Iterator[Adbd]:
    d = Adbd(adbd_binary)
    yield d
    d.kill()


def connect(server: adb.AdbServer, *devices: Adbd) -> None:
    import adbutils

    client = adbutils.AdbClient(port=server.port)
    for d in devices:
        assert "connected to" in client.connect(d.serial, timeout=10)
        client.wait_for(d.serial, state="device", timeout=10)


def test_shell_status_and_separate_stderr(server: adb.AdbServer, device: Adbd) -> None:
    with adb.AdbTransport(device.serial, connect=True) as t:
        res = t.run("echo out; echo err >&2; exit 5")
        assert (res.exit_status, res.stdout, res.stderr) == (5, "out\n", "err\n")
        with pytest.raises(TargetError, match="timed out after 1"):
            t.run("sleep 30; echo never", timeout=1)
        # Wall-clock: a command that keeps printing is stopped as well.
        t0 = time.monotonic()
        with pytest.raises(TargetError, match="timed out after 2"):
            t.run("while true; do echo x; sleep 0.1; done", timeout=2)
        assert time.monotonic() - t0 < 4


def test_several_devices_and_no_serial_is_a_clear_error(server: adb.AdbServer, device: Adbd,
                                                        adbd_binary: Path) -> None:
    other = Adbd(adbd_binary)
    try:
        connect(server, device, other)
        spec = targets.parse("targets:\n  phone:\n    transport: adb\n", "t.yaml")["phone"]
        with pytest.raises(UserError) as err:
            targets.connect(spec)
        message = str(err.value)
        assert "2 devices are attached" in message
        assert device.serial in message and other.serial in message
        assert "set 'serial' in targets.yaml" in message
        named = targets.parse(f"targets:\n  phone:\n    transport: adb\n"
                              f"    serial: {other.serial}\n", "t.yaml")["phone"]
        with targets.connect(named) as t:
            assert t.check("echo hi") == "hi\n"
    finally:
        other.kill()


def _push_cut_off(device: Adbd, dest: Path, tmp_path: Path, cut: Callable[[], None]) -> None:
    """Push 32 MiB to ``dest``; ``cut()`` at 8 MiB; the push must fail saying
    how far it got."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(32 << 20))

    def progress(done: int, total: int) -> None:
        if done >= 8 << 20:
            cut()

    with adb.AdbTransport(device.serial, connect=True, connect_timeout=10) as t:
        t.default_timeout = 20
        with pytest.raises(TargetError, match=r"push .* failed after \d+ of 33554432 bytes"):
            t.push(big, str(dest), progress=progress)


def test_device_gone_mid_push_fails_clearly_and_leaves_no_partial_file(
        server: adb.AdbServer, device: Adbd, tmp_path: Path) -> None:
    dest = tmp_path / "on-device" / "big.bin"
    _push_cut_off(device, dest, tmp_path, device.kill)
    assert not dest.exists()


def test_host_side_drop_mid_push_leaves_nothing_behind(server: adb.AdbServer, device: Adbd,
                                                        tmp_path: Path) -> None:
    """The adb server goes (a host crash, adb kill-server): the device drops
    the half-written temporary file, and the old file is as it was."""
    dest = tmp_path / "on-device" / "big.bin"
    dest.parent.mkdir()
    dest.write_text("old")
    _push_cut_off(device, dest, tmp_path, server.stop)
    deadline = time.monotonic() + 5
    while len(list(dest.parent.iterdir())) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(dest.parent.iterdir()) == [dest] and dest.read_text() == "old"


def test_a_shell_that_closed_its_output_blocks_nothing(server: adb.AdbServer,
                                                       device: Adbd) -> None:
    """Streams share one connection: a shell still running after closing
    stdout and stderr must not hold up the others."""
    import threading

    with adb.AdbTransport(device.serial, connect=True) as t:
        slow = threading.Thread(target=t.run, args=("exec >/dev/null 2>&1; sleep 3",))
        slow.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert t.check("echo quick") == "quick\n"
        assert time.monotonic() - t0 < 2
        slow.join()
        res = t.run("exec >/dev/null 2>&1; exit 6")
        assert res.exit_status == 6


def test_shells_get_default_signals_and_pushes_follow_symlinks(
        server: adb.AdbServer, device: Adbd, tmp_path: Path) -> None:
    (tmp_path / "real").write_text("old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "new").write_text("new")
    with adb.AdbTransport(device.serial, connect=True) as t:
        ignored = t.check("grep SigIgn /proc/self/status").split()[1]
        assert int(ignored, 16) == 0
        t.push(tmp_path / "new", str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").read_text() == "new"


def test_a_user_build_refuses_root_with_a_clear_message(server: adb.AdbServer,
                                                        adbd_binary: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("run as root: gcma-adbd -u drops to the shell user, as adbd does")
    user = Adbd(adbd_binary, "-u")
    try:
        with adb.AdbTransport(user.serial, connect=True) as t:
            assert t.check("id -u").strip() == "2000"
            with pytest.raises(UserError, match=r"production builds.*userdebug or eng build"):
                t.root()
    finally:
        user.kill()


def test_pull_of_a_missing_file_names_the_reason(server: adb.AdbServer, device: Adbd,
                                                 tmp_path: Path) -> None:
    with adb.AdbTransport(device.serial, connect=True) as t, \
            pytest.raises(TargetError, match="open /no/such: No such file or directory"):
        t.pull("/no/such", tmp_path / "x")
    assert not list(tmp_path.glob("x*"))


def test_the_private_server_goes_with_the_transport(tmp_path: Path, device: Adbd) -> None:
    srv = adb.AdbServer(free_port(), tmp_path / "log")
    srv.start()
    with adb.AdbTransport(device.serial, connect=True, server=srv) as t:
        t.check("true")
    assert not srv.alive()
    assert socket.socket().connect_ex(("127.0.0.1", srv.port)) != 0
