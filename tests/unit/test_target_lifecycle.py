"""Target lifecycle without booting: a fake QEMU (tests/unit/fakes.py) with
QEMU's command line, and a fake transport for the ssh side."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from gcma.errors import TargetError, UserError
from gcma.targets import emulated as target_mod
from gcma.targets.emulated import Artefacts, EmulatedTarget
from gcma.targets.machine import Machine
from gcma.targets.transport import CommandResult

from .fakes import FAKE_QEMU, FakeTransport, ok


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Machine, Artefacts]]:
    monkeypatch.setenv("GCMA_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("FAKE_QEMU_COUNTER", str(tmp_path / "launches"))
    qemu = tmp_path / "fake-qemu"
    qemu.write_text(FAKE_QEMU)
    qemu.chmod(qemu.stat().st_mode | stat.S_IXUSR)
    machine = Machine(qemu=str(qemu))
    for name in ("Image", "initrd", "fake.dtb"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "fake.json").write_text(json.dumps(
        {"machine": asdict(machine), "fingerprint": machine.fingerprint()}))
    art = Artefacts(kernel=tmp_path / "Image", initrd=tmp_path / "initrd",
                    dtb=tmp_path / "fake.dtb")

    def transport(self: EmulatedTarget) -> FakeTransport:
        state = self.state()
        if state is None:
            raise UserError(f"target {self.name} is not running")
        pid = int(state["pid"])  # type: ignore[arg-type]

        def poweroff(command: str) -> CommandResult:
            os.kill(pid, signal.SIGTERM)
            return ok()

        return FakeTransport({"true": ok()}, default=poweroff)

    monkeypatch.setattr(EmulatedTarget, "transport", transport)
    yield machine, art


def _launches(tmp_path: Path) -> int:
    return int((tmp_path / "launches").read_text())


def test_port_taken_late_is_retried(fake: tuple[Machine, Artefacts], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU says its forward's port is taken a second after it started (under
    load, well after the old half-second window): a new port is tried, and
    the target comes up on the port its QEMU listens on."""
    machine, art = fake
    monkeypatch.setenv("FAKE_QEMU_FAIL", "2")
    monkeypatch.setenv("FAKE_QEMU_FAIL_DELAY", "1.0")
    t = EmulatedTarget("porty")
    t.start(art, machine=machine, timeout=30).close()
    try:
        assert _launches(tmp_path) == 3
        state = t.state()
        assert state is not None
        assert target_mod.listens_on(int(state["pid"]), int(state["ssh_port"]))  # type: ignore[arg-type]
    finally:
        assert t.stop()
    assert t.state() is None and not t.state_file.exists()


def test_port_never_free_gives_up_with_qemus_message(fake: tuple[Machine, Artefacts],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    machine, art = fake
    monkeypatch.setenv("FAKE_QEMU_FAIL", "99")
    t = EmulatedTarget("busy")
    with pytest.raises(TargetError, match="could not set up host forwarding rule"):
        t.start(art, machine=machine, timeout=30)
    assert _launches(tmp_path) == target_mod.PORT_ATTEMPTS
    assert not t.state_file.exists() and not target_mod.lock_held(t.lock_file)


def test_failed_boot_leaves_no_state(fake: tuple[Machine, Artefacts], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    machine, art = fake
    monkeypatch.setenv("FAKE_QEMU_FAIL", "1")
    monkeypatch.setenv("FAKE_QEMU_ERROR", "kvm: no such device")
    t = EmulatedTarget("broken")
    with pytest.raises(TargetError, match=r"QEMU exited .* kvm: no such device"):
        t.start(art, machine=machine, timeout=30)
    assert _launches(tmp_path) == 1  # not a port problem: no retry
    assert not t.state_file.exists() and not target_mod.lock_held(t.lock_file)


def test_second_start_of_a_name_is_refused(fake: tuple[Machine, Artefacts]) -> None:
    machine, art = fake
    first = EmulatedTarget("twice")
    first.start(art, machine=machine, timeout=30).close()
    try:
        with pytest.raises(UserError, match="already running or starting"):
            EmulatedTarget("twice").start(art, machine=machine, timeout=30)
        assert first.state() is not None  # the refused start touched nothing
    finally:
        assert first.stop()


def test_stale_state_reads_stopped_and_signals_nobody(fake: tuple[Machine, Artefacts]) -> None:
    """A state.json left by a QEMU long gone, whose pid now belongs to another
    process (pid 1 here), reads as stopped; stop signals nothing."""
    t = EmulatedTarget("stale")
    t.dir.mkdir(parents=True)
    t.state_file.write_text(json.dumps({"pid": 1, "ssh_port": 1}))
    assert t.state() is None
    assert not t.state_file.exists()
    t.state_file.write_text(json.dumps({"pid": 1, "ssh_port": 1}))
    assert t.stop() is False
    assert not t.state_file.exists()


def test_lock_is_held_by_qemu_itself(fake: tuple[Machine, Artefacts]) -> None:
    """After start returns, the lock lives on in QEMU alone: killing QEMU
    frees it, and the target reads as stopped."""
    machine, art = fake
    t = EmulatedTarget("locky")
    t.start(art, machine=machine, timeout=30).close()
    state = t.state()
    assert state is not None and target_mod.lock_held(t.lock_file)
    pid = int(state["pid"])  # type: ignore[arg-type]
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not target_mod.lock_held(t.lock_file):
            break
        time.sleep(0.05)
    assert not target_mod.lock_held(t.lock_file)
    assert t.state() is None


def test_only_the_slow_disk_is_throttled(tmp_path: Path) -> None:
    disks = tuple(tmp_path / name for name, _ in target_mod.DATA_DISKS)
    art = Artefacts(kernel=tmp_path / "Image", initrd=tmp_path / "initrd",
                    dtb=tmp_path / "fake.dtb", disks=disks)
    argv = target_mod.qemu_command(Machine(qemu="qemu"), art, 2222, tmp_path / "console")
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert len(drives) == 4
    assert [("throttling." in d) for d in drives] == [False, False, False, True]
    assert drives[3].startswith(f"file={disks[3]},") and "bps-write=4194304" in drives[3]
    assert "bps-read=33554432" in drives[3]
    assert all("snapshot=on" in d for d in drives)
