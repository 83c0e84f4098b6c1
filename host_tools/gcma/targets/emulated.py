"""The emulated target: QEMU -M virt (TCG) running our kernel, in the background.

Each target has a name and a state folder ``out/targets/<name>/`` holding the
console log, QEMU's own log and ``state.json`` (pid, ssh port, artefacts), so
several can run at once and later commands find them. Readiness is judged by
console markers and an ssh round trip, never by QEMU's exit status: QEMU exits
0 when the kernel panics with ``panic=-1``.

Liveness is a lock, not a pid: ``start`` takes an exclusive flock on
``out/targets/<name>/lock`` and hands the locked file to QEMU, so the lock is
held exactly as long as that QEMU runs (or a start is under way). A second
start of the same name is refused, and a stale ``state.json`` (QEMU gone, its
pid reused) reads as stopped instead of sending signals to a stranger.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gcma import paths, runner
from gcma.build import dt, kernel, rootfs
from gcma.checks import klog
from gcma.errors import TargetError, UserError
from gcma.targets.machine import PL011_BASE, Machine

if TYPE_CHECKING:  # fabric and adbutils are imported only by commands that use them
    from gcma.targets.adb import AdbTransport
    from gcma.targets.ssh import SshTransport

READY_MARKER = "GCMA-TARGET-READY"
#: Where gcma-adbd listens in the guest (adb's default TCP port); QEMU
#: forwards a loopback port to it as it does to ssh.
GUEST_ADB_PORT = 5555
#: How long QEMU may take to bind its ssh forward before we go on anyway
#: (readiness then fails with QEMU's own message if it never does).
PORT_BIND_TIMEOUT = 30.0
#: Attempts with a new port when another process takes ours first.
PORT_ATTEMPTS = 5
_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


#: Data disk images, in /dev/vd* order, with extra QEMU -drive options:
#: /data (ext4), /erofs, /data1k (ext4, 1 KiB blocks), and /slow (ext4),
#: throttled like a busy eMMC: writes so that writeback to it is slow and
#: dirty and writeback pages pile up, as they do on a phone; reads so that
#: a page-cache miss costs I/O, as it does on a phone (the other disks are
#: read from the host's page cache, as fast as memory).
DATA_DISKS = (("data.ext4", ""), ("data.erofs", ""), ("data1k.ext4", ""),
              ("slow.ext4", "throttling.bps-write=4194304,throttling.iops-write=200,"
                            "throttling.bps-read=33554432"))


@dataclass
class Artefacts:
    kernel: Path
    initrd: Path
    dtb: Path
    #: Data disks in the order of DATA_DISKS: /dev/vda, /dev/vdb, ...
    disks: tuple[Path, ...] = ()
    #: What the kernel variant needs on its command line
    #: (gki/configs/variants/<variant>.cmdline; kasan: page_poison=1).
    cmdline: str = ""

    @classmethod
    def default(cls, variant: str = kernel.DEFAULT_VARIANT,
                dtb: str = dt.DEFAULT_DTB) -> Artefacts:
        disks = []
        for name, _ in DATA_DISKS:
            if not (rootfs.rootfs_dir() / name).exists():
                break
            disks.append(rootfs.rootfs_dir() / name)
        return cls(kernel=kernel.kernel_paths(variant).image,
                   initrd=rootfs.initramfs_path(variant),
                   dtb=dt.dt_dir() / f"{dtb}.dtb", disks=tuple(disks),
                   cmdline=kernel.variant_cmdline(variant))

    def to_json(self) -> dict[str, object]:
        return {"kernel": str(self.kernel), "initrd": str(self.initrd), "dtb": str(self.dtb),
                "disks": [str(d) for d in self.disks], "cmdline": self.cmdline}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Artefacts:
        return cls(kernel=Path(str(data["kernel"])), initrd=Path(str(data["initrd"])),
                   dtb=Path(str(data["dtb"])),
                   disks=tuple(Path(d) for d in data.get("disks", [])),  # type: ignore[attr-defined]
                   cmdline=str(data.get("cmdline", "")))

    def check(self) -> None:
        for label, path in (("kernel", self.kernel), ("initramfs", self.initrd),
                            ("dtb", self.dtb)):
            if not path.exists():
                raise UserError(f"{label} not found: {path} (build it first: gcma build)")


def state_dir(name: str) -> Path:
    if not name or not set(name) <= _NAME_OK:
        raise UserError(f"bad target name {name!r}: use lower-case letters, digits, - and _")
    return paths.out_dir() / "targets" / name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _socket_inodes_listening(port: int) -> set[str]:
    """Inodes of TCP sockets listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    inodes = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == want and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds a socket listening on ``port``."""
    inodes = _socket_inodes_listening(port)
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def lock_held(lock: Path) -> bool:
    """Whether somebody (a running QEMU, or a start under way) holds ``lock``."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: not gone, and not a zombie (one of ours is reaped;
    another's, such as an orphan's waiting for init, only reads as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


def qemu_command(machine: Machine, art: Artefacts, port: int, console: Path,
                 extra_cmdline: str = "", adb_port: int | None = None) -> list[str]:
    cmdline = (f"console=ttyAMA0 earlycon=pl011,{PL011_BASE:#x} panic=-1 "
               f"oops=panic rdinit=/init {art.cmdline} {extra_cmdline}").strip()
    cmdline = " ".join(cmdline.split())
    argv = [*machine.base_args(), "-display", "none", "-monitor", "none",
            "-serial", f"file:{console}", "-no-reboot",
            "-kernel", str(art.kernel), "-initrd", str(art.initrd), "-dtb", str(art.dtb),
            "-append", cmdline,
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"
            + (f",hostfwd=tcp:127.0.0.1:{adb_port}-:{GUEST_ADB_PORT}" if adb_port else ""),
            "-device", "virtio-net-pci,netdev=net0"]
    options = dict(DATA_DISKS)
    for i, disk in enumerate(art.disks):
        # snapshot=on: the guest's writes go to a temporary overlay.
        extra = options.get(disk.name, "")
        argv += ["-drive", f"file={disk},if=none,id=disk{i},format=raw,snapshot=on"
                 + (f",{extra}" if extra else ""),
                 "-device", f"virtio-blk-pci,drive=disk{i}"]
    return argv


class EmulatedTarget:
    """One named QEMU target."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.dir = state_dir(name)

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.dir / "lock"

    def state(self) -> dict[str, object] | None:
        """The running target's state; None (and a stale file removed) if no
        QEMU of ours holds the target's lock."""
        if not self.state_file.exists():
            return None
        if not lock_held(self.lock_file):
            self.state_file.unlink(missing_ok=True)
            return None
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if process_alive(int(state["pid"])) else None

    def console_tail(self, lines: int = 40) -> str:
        if not self.console.exists():
            return "(no console output)"
        text = self.console.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(no console output)"

    def start(self, art: Artefacts | None = None, machine: Machine | None = None,
              timeout: float = 180.0, extra_cmdline: str = "",
              detach: bool = False) -> SshTransport:
        """Boot and wait until ssh answers. QEMU dies with the calling process
        (PR_SET_PDEATHSIG, through setpriv) unless ``detach``: only
        ``gcma target start`` leaves a target running for later commands."""
        art = art or Artefacts.default()
        art.check()
        recorded = dt.machine_of(art.dtb)
        machine = machine or Machine(**recorded["machine"])  # type: ignore[arg-type]
        if recorded["fingerprint"] != machine.fingerprint():
            raise UserError(f"{art.dtb} was dumped for other machine options "
                            f"({recorded['machine']}); rebuild it for {asdict(machine)}")
        self.dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise UserError(f"target {self.name} is already running or starting (gcma target "
                            f"stop --name {self.name})") from None
        self.state_file.unlink(missing_ok=True)  # a stale one, from a QEMU long gone
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc, port = self._launch(machine, art, extra_cmdline, detach, lock_fd)
            return self._wait_ready(proc, port, timeout)
        except BaseException:
            # A failed or interrupted start leaves nothing behind.
            if proc is not None:
                self._kill(proc.pid)
            self.state_file.unlink(missing_ok=True)
            raise
        finally:
            os.close(lock_fd)  # QEMU holds its own copy of the locked file

    def _launch(self, machine: Machine, art: Artefacts, extra_cmdline: str, detach: bool,
                lock_fd: int) -> tuple[subprocess.Popen[bytes], int]:
        """Start QEMU and see it bind its ssh forward. Another process can take
        the port between our probe and QEMU's bind, at any moment under load:
        QEMU then exits naming the hostfwd rule, and we retry with a new port."""
        qemu_log = self.dir / "qemu.log"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port, adb_port = free_port(), free_port()
            self.console.write_text("")
            argv = qemu_command(machine, art, port, self.console, extra_cmdline, adb_port)
            # setpriv execs QEMU, which keeps its pid and the death signal.
            launch = argv if detach else ["setpriv", "--pdeathsig", "KILL", "--", *argv]
            runner.info(f"+ {runner.format_command(launch)}")
            with open(qemu_log, "w") as log:
                proc = subprocess.Popen(launch, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        pass_fds=(lock_fd,))
            state = {"pid": proc.pid, "ssh_port": port, "adb_port": adb_port,
                     "started": time.time(),
                     "machine": asdict(machine), "command": argv,
                     "artefacts": art.to_json(), "extra_cmdline": extra_cmdline,
                     "detach": detach, "owner": os.getpid()}
            self.state_file.write_text(json.dumps(state, indent=2) + "\n")
            t0 = time.monotonic()
            while time.monotonic() - t0 < PORT_BIND_TIMEOUT:
                if proc.poll() is not None or listens_on(proc.pid, port):
                    break
                time.sleep(0.05)
            if proc.poll() is None or attempt == PORT_ATTEMPTS or \
                    "hostfwd" not in qemu_log.read_text(errors="replace"):
                return proc, port
            runner.info(f"target {self.name}: port {port} was taken, trying another")
        raise AssertionError("unreachable")

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int,
                    timeout: float) -> SshTransport:
        t0 = time.monotonic()
        runner.info(f"target {self.name}: booting, console log {self.console}")
        ready = False
        while time.monotonic() - t0 < timeout:
            text = self.console.read_text(errors="replace")
            bad = [f for f in klog.scan(text) if f.kind in ("panic", "oops", "paging", "bug")]
            if bad:
                raise TargetError(f"target {self.name}: kernel crashed while booting "
                                  f"({bad[0].line}); last console lines:\n"
                                  + self.console_tail())
            if proc.poll() is not None:
                qemu_out = (self.dir / "qemu.log").read_text(errors="replace").strip()
                raise TargetError(f"target {self.name}: QEMU exited ({proc.returncode}) "
                                  f"before the target was ready. {qemu_out}\nlast console "
                                  f"lines:\n" + self.console_tail())
            if READY_MARKER in text:
                ready = True
                break
            time.sleep(0.2)
        if ready:
            while time.monotonic() - t0 < timeout:
                transport = self.transport()
                try:
                    transport.check("true", timeout=30)
                    runner.info(f"target {self.name}: ready in {time.monotonic() - t0:.1f}s, "
                                f"ssh on 127.0.0.1:{port}")
                    return transport
                except TargetError:
                    transport.close()  # each failed probe's connection goes
                    time.sleep(0.5)
        raise TargetError(f"target {self.name}: not ready after {timeout:.0f}s; last console "
                          f"lines:\n" + self.console_tail())

    def transport(self) -> SshTransport:
        state = self.state()
        if state is None:
            raise UserError(f"target {self.name} is not running (gcma target start)")
        from gcma.targets.ssh import SshTransport

        return SshTransport("127.0.0.1", int(state["ssh_port"]), rootfs.ssh_key())  # type: ignore[arg-type]

    def restart(self, extra_cmdline: str | None = None, timeout: float = 300.0) -> None:
        """Power off and boot again from the same artefacts, machine and
        command line (or ``extra_cmdline``). Restarted by the process that
        started it, it stays tied to that process as it was; restarted by
        another (gcma deploy --reboot), it must outlive that command, and is
        detached, as after gcma target start."""
        state = self.state()
        if state is None:
            raise UserError(f"target {self.name} is not running (gcma target start)")
        art = Artefacts.from_json(state["artefacts"])  # type: ignore[arg-type]
        machine = Machine(**state["machine"])  # type: ignore[arg-type]
        cmdline = str(state.get("extra_cmdline", "")) if extra_cmdline is None else extra_cmdline
        self.stop()
        detach = bool(state.get("detach", True)) or state.get("owner") != os.getpid()
        self.start(art, machine, timeout=timeout, extra_cmdline=cmdline, detach=detach).close()

    def adb_transport(self) -> AdbTransport:
        """adb to the target's gcma-adbd, through a private adb server that
        the transport stops on close."""
        from gcma.targets.adb import AdbServer, AdbTransport

        state = self.state()
        if state is None:
            raise UserError(f"target {self.name} is not running (gcma target start)")
        if not state.get("adb_port"):
            raise UserError(f"target {self.name} was started without an adb forward (by an "
                            f"older gcma): restart it (gcma target stop/start)")
        server = AdbServer(free_port(), self.dir / "adb-server.log")
        server.start()
        return AdbTransport(f"127.0.0.1:{state['adb_port']}", connect=True, server=server)

    def _kill(self, pid: int, grace: float = 5.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            t0 = time.monotonic()
            while time.monotonic() - t0 < grace:
                if not process_alive(pid):
                    return
                time.sleep(0.1)

    def stop(self) -> bool:
        """Power the target off (QEMU exits); False if it was not running."""
        state = self.state()
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return False
        pid = int(state["pid"])  # type: ignore[arg-type]
        try:
            with self.transport() as t:
                t.run("sync; poweroff -f >/dev/null 2>&1 &", timeout=10)
        except TargetError:
            pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and process_alive(pid):
            time.sleep(0.1)
        self._kill(pid)
        # The lock is the truth: QEMU's main thread can be a zombie while its
        # other threads still run and hold the lock (and its ports).
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and lock_held(self.lock_file):
            time.sleep(0.05)
        self.state_file.unlink(missing_ok=True)
        return True
