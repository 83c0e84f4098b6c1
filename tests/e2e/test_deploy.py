"""adb and deploy, for real: the emulated target's gcma-adbd, the host's adb
server and adbutils, and ``gcma deploy`` over adb and over ssh.

One target of the default kernel, booted with the vendor modules left
unloaded (gcma.skip), so that deploy is what loads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gcma.build import dt, modules, pipeline
from gcma.errors import TargetError
from gcma.targets.emulated import Artefacts, EmulatedTarget

pytestmark = pytest.mark.e2e

SKIP = "gcma.skip=gcma_area,gcma_heap"


@pytest.fixture(scope="module")
def emu(built: None) -> Iterator[EmulatedTarget]:
    target = EmulatedTarget(f"pytest-{os.getpid()}-deploy")
    target.start(Artefacts.default("default", dt.DEFAULT_DTB), timeout=300,
                 extra_cmdline=SKIP).close()
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture(scope="module")
def targets_file(emu: EmulatedTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("targets") / "targets.yaml"
    path.write_text(f"""\
targets:
  via-adb:
    transport: emulated
    instance: {emu.name}
    connect: adb
    kernel: {{variant: default}}
    heaps: [camera, video]
  via-ssh:
    transport: emulated
    instance: {emu.name}
    connect: ssh
    kernel: {{variant: default}}
    heaps: [camera, video]
  bad-stress:
    transport: emulated
    instance: {emu.name}
    connect: adb
    params: {{gcma_stress: "area=nosuch"}}
  changed-params:
    transport: emulated
    instance: {emu.name}
    connect: adb
    kernel: {{variant: default}}
    params: {{gcma_area: "donate=0"}}
""")
    return path


def gcma(targets_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GCMA_TARGETS": str(targets_file)}
    return subprocess.run([sys.executable, "-m", "gcma", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def adb_processes() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "adb"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_adb_shell_push_pull_and_timeouts(emu: EmulatedTarget, tmp_path: Path) -> None:
    before = adb_processes()
    with emu.adb_transport() as t:
        res = t.run("echo out; echo err >&2; exit 3")
        assert (res.exit_status, res.stdout, res.stderr) == (3, "out\n", "err\n")
        data = os.urandom(3 << 20)
        (tmp_path / "blob").write_bytes(data)
        t.push(tmp_path / "blob", "/tmp/adb-test/sub/blob")
        assert t.check("sha256sum /tmp/adb-test/sub/blob").split()[0] == \
            hashlib.sha256(data).hexdigest()
        t.pull("/tmp/adb-test/sub/blob", tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == data
        with pytest.raises(TargetError, match="timed out after 2"):
            t.run("sleep 60", timeout=2)
        # The host's timeout closed the stream: the command is gone too.
        assert t.run("ps -o pid,args | grep '[s]leep 60'").stdout == ""
        with pytest.raises(TargetError, match=r"No such file or directory"):
            t.pull("/nonexistent", tmp_path / "x")
        assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
        with pytest.raises(TargetError, match="the device refused"):
            t.push(tmp_path / "blob", "/proc/no/such/dir")
    # The private adb server went with the transport.
    assert adb_processes() <= before


def test_deploy_over_adb_loads_checks_and_is_idempotent(emu: EmulatedTarget,
                                                       targets_file: Path) -> None:
    res = gcma(targets_file, "deploy", "--target", "via-adb")
    assert res.returncode == 0, res.stderr
    assert "loaded gcma_area, gcma_heap" in res.stdout and "heaps camera, video" in res.stdout
    assert "/dev/dma_heap/camera" in res.stdout  # the kernel log since the load
    report = json.loads(Path(res.stdout.split("report: ")[1].strip()).read_text())
    assert report["action"] == "loaded"
    assert report["pushed"] == ["gcma_area.ko", "gcma_heap.ko"]
    with emu.transport() as t:
        assert "gcma_heap" in t.check("cat /proc/modules")
        assert {"camera", "video"} <= set(t.check("ls /dev/dma_heap").split())

    again = gcma(targets_file, "deploy", "--target", "via-adb")
    assert again.returncode == 0, again.stderr
    assert "modules unchanged" in again.stdout
    over_ssh = gcma(targets_file, "deploy", "--target", "via-ssh")
    assert over_ssh.returncode == 0 and "modules unchanged" in over_ssh.stdout, over_ssh.stderr


def test_deploy_refuses_to_replace_a_heap_module(emu: EmulatedTarget, targets_file: Path) -> None:
    gcma(targets_file, "deploy", "--target", "via-adb")
    res = gcma(targets_file, "deploy", "--target", "changed-params")
    assert res.returncode == 2, res.stderr
    assert "gcma_heap is loaded and cannot be unloaded" in res.stderr
    assert "reboot the target" in res.stderr
    assert "Traceback" not in res.stderr
    with emu.transport() as t:  # nothing was lost: the heaps are still there
        assert {"camera", "video"} <= set(t.check("ls /dev/dma_heap").split())


def test_deploy_reloads_a_changed_module(emu: EmulatedTarget, targets_file: Path,
                                         tmp_path: Path) -> None:
    gcma(targets_file, "deploy", "--target", "via-adb")
    dist = tmp_path / "kmod"
    src = modules.dist_dir(pipeline.TEST_MODULES, "default")
    dist.mkdir()
    shutil.copy2(src / "gcma_pin.ko", dist)
    (dist / "modules.load").write_text("gcma_pin.ko\n")
    first = gcma(targets_file, "deploy", "--target", "via-ssh", "--modules", str(dist))
    assert first.returncode == 0 and "loaded gcma_pin" in first.stdout, first.stderr
    # Another file of the same build (as re-signing makes): it is reloaded.
    (tmp_path / "note").write_text("changed\n")
    subprocess.run(["aarch64-linux-gnu-objcopy", "--add-section",
                    f".gcma_test={tmp_path / 'note'}", str(dist / "gcma_pin.ko")], check=True)
    second = gcma(targets_file, "deploy", "--target", "via-adb", "--modules", str(dist))
    assert second.returncode == 0, second.stderr
    report = json.loads(Path(second.stdout.split("report: ")[1].strip()).read_text())
    assert (report["unloaded"], report["loaded"], report["pushed"]) == \
        (["gcma_pin"], ["gcma_pin"], ["gcma_pin.ko"])
    with emu.transport() as t:
        t.check("rmmod gcma_pin")


def test_failed_load_unloads_what_it_loaded_and_says_why(emu: EmulatedTarget,
                                                         targets_file: Path,
                                                         tmp_path: Path) -> None:
    gcma(targets_file, "deploy", "--target", "via-adb")
    dist = tmp_path / "kmod"
    src = modules.dist_dir(pipeline.TEST_MODULES, "default")
    dist.mkdir()
    for ko in ("gcma_pin.ko", "gcma_stress.ko"):
        shutil.copy2(src / ko, dist)
    (dist / "modules.load").write_text("gcma_pin.ko\ngcma_stress.ko\n")
    res = gcma(targets_file, "deploy", "--target", "bad-stress", "--modules", str(dist))
    assert res.returncode == 4, res.stderr
    assert "insmod /data/local/tmp/gcma/gcma_stress.ko area=nosuch failed" in res.stderr
    assert "unloaded again: gcma_pin" in res.stderr
    assert "kernel log since the load:" in res.stderr
    with emu.transport() as t:
        loaded = t.check("cat /proc/modules")
    assert "gcma_pin" not in loaded and "gcma_stress" not in loaded


def test_reboot_replaces_a_heap_module_then_smoke_tests(emu: EmulatedTarget,
                                                        targets_file: Path) -> None:
    gcma(targets_file, "deploy", "--target", "via-adb")
    res = gcma(targets_file, "deploy", "--target", "changed-params", "--reboot", "--smoke")
    assert res.returncode == 0, res.stderr
    report = json.loads(Path(res.stdout.split("report: ")[1].strip()).read_text())
    assert report["rebooted"] and report["loaded"] == ["gcma_area", "gcma_heap"]
    smoked = {line.split("heap=")[1].split()[0] for line in report["smoke"] if "heap=" in line}
    assert {"camera", "video"} <= smoked
    assert all(" ok=4 " in f" {line} " for line in report["smoke"]), report["smoke"]
    with emu.transport() as t:
        # donate=0: the areas are carve-outs now, nothing lent to cleancache.
        assert t.check("cat /sys/module/gcma_area/parameters/donate").strip() == "N"


def test_a_dt_less_target_gets_its_areas_from_reserve_mem(built: None, tmp_path: Path) -> None:
    """As on x86_64 Cuttlefish: the areas are reserve_mem= regions, and
    deploy tells gcma_area.ko so from the target's description."""
    emu = EmulatedTarget(f"pytest-{os.getpid()}-rmem")
    emu.start(Artefacts.default("default", dt.DEFAULT_DTB), timeout=300,
              extra_cmdline=f"{SKIP} reserve_mem=16M:4096:gcma_rm").close()
    try:
        path = tmp_path / "targets.yaml"
        path.write_text(f"targets:\n  cf-like:\n    transport: emulated\n"
                        f"    instance: {emu.name}\n    connect: adb\n"
                        f"    kernel: {{variant: default}}\n"
                        f"    areas: {{source: reserve_mem, names: [gcma_rm]}}\n"
                        f"    heaps: [gcma_rm]\n")
        res = gcma(path, "deploy", "--target", "cf-like", "--smoke")
        assert res.returncode == 0, res.stderr
        assert "heaps gcma_rm" in res.stdout
        assert "smoke: heap=gcma_rm size=1048576 count=4 ok=4" in res.stdout
        with emu.transport() as t:
            assert t.check("cat /sys/module/gcma_area/parameters/source").strip() == \
                "reserve_mem"
            assert "camera" not in t.check("ls /dev/dma_heap").split()
    finally:
        emu.stop()
