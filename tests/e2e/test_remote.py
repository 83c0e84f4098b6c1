"""Remote builds for real: an OpenSSH server on loopback with a throwaway key
stands in for the build machine; ``gcma modules build --on`` syncs the
checkout to it, builds there with fabric and fetches the modules back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcma import paths
from gcma.build import kernel
from gcma.targets.emulated import free_port

pytestmark = pytest.mark.e2e

SSHD = "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """sshd on 127.0.0.1 accepting one new key, for this module only."""
    d = tmp_path_factory.mktemp("sshd")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_key"],
                   check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "client_key"],
                   check=True)
    (d / "authorized_keys").write_bytes((d / "client_key.pub").read_bytes())
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", d / "sshd_config"],
                            stderr=open(d / "sshd.log", "wb"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert proc.poll() is None, (d / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.1)
        yield port, d / "client_key"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gcma(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GCMA_OUT": str(out)}
    return subprocess.run([sys.executable, "-m", "gcma", *args], capture_output=True,
                          text=True, env=env, timeout=1500)


def test_modules_build_on_a_remote_host(built: None, sshd: tuple[int, Path],
                                        tmp_path: Path) -> None:
    port, key = sshd
    kdir = kernel.kernel_paths("default").build  # the build machine's kernel tree
    res = gcma("modules", "build", "--on", f"root@127.0.0.1:{port}", "--ssh-key", str(key),
               "--kdir", str(kdir), out=tmp_path / "out")
    assert res.returncode == 0, res.stderr[-3000:]
    dist = Path(res.stdout.strip().splitlines()[-1])
    assert dist.is_relative_to(tmp_path / "out")
    assert (dist / "modules.load").read_text().split() == ["gcma_area.ko", "gcma_heap.ko"]
    # The same sources and kernel as the local build: the same module code.
    local = paths.out_dir() / "modules" / "default" / "vendor_modules" / "dist"
    for ko in ("gcma_area.ko", "gcma_heap.ko"):
        assert (dist / ko).stat().st_size > 0
        assert (local / ko).exists()
    # Every command is echoed so that it can be run again by hand.
    assert f"ssh -p {port}" in res.stderr and "./build.sh gcma modules build" in res.stderr
    assert (tmp_path / "out" / "logs" / "remote-modules-default.log").stat().st_size > 0


def test_remote_failures_are_clear(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = sshd
    bad = gcma("modules", "build", "--on", "root@127.0.0.1:99999", out=tmp_path)
    assert bad.returncode == 2 and "not [user@]host[:port]" in bad.stderr
    wrong_key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrong_key], check=True)
    refused = gcma("modules", "build", "--on", f"root@127.0.0.1:{port}", "--ssh-key",
                   str(wrong_key), out=tmp_path)
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "rsync" in refused.stderr and "exit code" in refused.stderr
