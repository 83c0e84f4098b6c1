"""gcma doctor: what is missing, and the commands that install it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gcma import doctor, paths


def _build_sh_packages() -> set[str]:
    text = (paths.PROJECT / "build.sh").read_text()
    block = re.search(r"APT_PACKAGES=\((.*?)\n\)", text, re.S)
    assert block, "APT_PACKAGES not found in build.sh"
    words = []
    for line in block.group(1).splitlines():
        words += line.split("#", 1)[0].split()
    return set(words)


def test_every_required_package_is_installed_by_build_sh() -> None:
    """The two lists cannot drift: what doctor asks for, setup installs."""
    needed = {r.package for r in doctor.REQUIREMENTS if r.package}
    assert needed <= _build_sh_packages(), needed - _build_sh_packages()


def test_the_packages_a_fresh_debian_lacked_are_checked() -> None:
    """ipxe-qemu, libc6-dev-arm64-cross and patch: missing on a fresh Debian 12."""
    packages = {r.package for r in doctor.REQUIREMENTS}
    assert {"ipxe-qemu", "libc6-dev-arm64-cross", "patch"} <= packages


def test_all_present_passes() -> None:
    n = doctor.check(which=lambda name: f"/usr/bin/{name}", exists=lambda p: True,
                     foreign_archs=lambda: {"arm64"})
    assert n == len(doctor.REQUIREMENTS)


def test_missing_items_are_named_with_the_install_command() -> None:
    with pytest.raises(doctor.EnvironmentIncomplete) as err:
        doctor.check(which=lambda name: None if name == "patch" else f"/usr/bin/{name}",
                     exists=lambda p: not p.endswith("efi-virtio.rom"),
                     foreign_archs=set)
    msg = str(err.value)
    assert "missing command patch (package patch)" in msg
    assert "missing file /usr/lib/ipxe/qemu/efi-virtio.rom (package ipxe-qemu)" in msg
    assert "missing foreign architecture arm64" in msg
    assert "sudo dpkg --add-architecture arm64" in msg
    assert "sudo apt-get install --no-install-recommends ipxe-qemu patch" in msg
    assert err.value.exit_code == 3


def test_cli_exit_code_and_one_message_without_traceback() -> None:
    """With an empty PATH every command is missing: exit 3, no traceback."""
    res = subprocess.run([sys.executable, "-m", "gcma", "doctor"], capture_output=True,
                         text=True, env={"PATH": "/nonexistent"}, timeout=60)
    assert res.returncode == 3, res.stderr
    assert "missing command make" in res.stderr
    assert "Traceback" not in res.stderr


def _setup_on(tmp_path: Path, os_release: str, **env: str) -> subprocess.CompletedProcess[str]:
    release = tmp_path / "os-release"
    release.write_text(os_release)
    return subprocess.run(
        ["bash", str(paths.PROJECT / "build.sh"), "setup"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "GCMA_OS_RELEASE": str(release),
                          "GCMA_OUT": str(tmp_path / "out"), **env})


def test_build_sh_refuses_other_hosts_before_changing_anything(tmp_path: Path) -> None:
    res = _setup_on(tmp_path, 'ID=ubuntu\nVERSION_ID="24.04"\nID_LIKE=debian\n')
    assert res.returncode == 2
    assert "needs Debian 12" in res.stderr and "ubuntu 24.04 (like debian)" in res.stderr
    assert "Nothing was changed" in res.stderr
    assert "+ " not in res.stderr  # no command ran
    assert not (tmp_path / "out").exists()
    res = _setup_on(tmp_path, "ID=debian\nVERSION_ID=11\n")
    assert res.returncode == 2 and "debian 11" in res.stderr
