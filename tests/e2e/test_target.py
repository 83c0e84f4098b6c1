"""The emulated target as a whole: our kernel, our DT, heaps, ssh control."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gcma import paths
from gcma.build import kernel, modules
from gcma.checks import klog
from gcma.errors import TargetError
from gcma.report import parse_kv
from gcma.targets.emulated import READY_MARKER, Artefacts, EmulatedTarget, process_alive

from .conftest import Target, wait_for

MIB = 1 << 20


def test_boot_log_is_clean(target: Target) -> None:
    assert klog.scan(target.shell.check("dmesg")) == []


def test_running_kernel_is_the_one_just_built(target: Target) -> None:
    meta = json.loads(kernel.kernel_paths(target.variant).metadata.read_text())
    assert target.shell.check("uname -r").strip() == meta["kernel"]["release"]
    assert target.shell.check("uname -v").strip() == meta["kernel"]["uts_version"]
    assert meta["source"]["kernel_version"].startswith("6.12")


def _dt_u32s(target: Target, path: str) -> list[int]:
    raw = target.shell.check(f"od -An -tx1 -v {path}").split()
    data = bytes(int(b, 16) for b in raw)
    return [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]


@pytest.mark.parametrize(("node", "base", "size"), [
    ("camera@60000000", 0x60000000, 128 * MIB),
    ("video@68000000", 0x68000000, 64 * MIB),
])
def test_reserved_memory_nodes_visible(target: Target, node: str, base: int, size: int) -> None:
    rm = "/proc/device-tree/reserved-memory"
    assert node in target.shell.check(f"ls {rm}").split()
    assert _dt_u32s(target, f"{rm}/{node}/reg") == [0, base, 0, size]
    end = base + size - 1
    assert f"0x{base:016x}..0x{end:016x} ({size // 1024} KiB) map non-reusable {node}" \
        in target.shell.check("dmesg")


def test_area_nodes_point_at_their_regions(target: Target) -> None:
    for label in ("camera", "video"):
        node = f"/proc/device-tree/gcma-area-{label}"
        assert target.shell.check(f"cat {node}/label").rstrip("\0\n") == label
        assert target.shell.check(f"cat {node}/compatible").rstrip("\0\n") == "gcma,area"


def test_default_cma_pool_from_dt(target: Target) -> None:
    assert "linux,cma" in target.shell.check("ls /proc/device-tree/reserved-memory").split()
    meminfo = dict(line.split(":", 1) for line in target.shell.check("cat /proc/meminfo")
                   .splitlines())
    # Plain CMA and the guaranteed pool; only plain CMA's pages are ever in
    # the page allocator, so only they can be free CMA pages.
    assert meminfo["CmaTotal"].split()[0] == str(2 * 128 * 1024)
    assert int(meminfo["CmaFree"].split()[0]) <= 128 * 1024


@pytest.mark.parametrize("heap", ["system", "linux,cma", "cma-guarantee"])
def test_heap_allocates_and_maps(target: Target, heap: str) -> None:
    assert heap in target.shell.check("ls /dev/dma_heap").split()
    res = target.shell.run(f"heap_alloc -s 1M -n 5 {heap}", timeout=300)
    assert res.ok, res.stdout + res.stderr
    row = parse_kv(res.stdout.strip())
    assert row["heap"] == heap and row["ok"] == "5"
    assert row["not_zero"] == "0" and row["bad_data"] == "0"


def test_heap_alloc_reports_missing_heap(target: Target) -> None:
    res = target.shell.run("heap_alloc no-such-heap")
    assert res.exit_status == 1
    assert "heap=no-such-heap error=open:No such file or directory" in res.stdout


def test_out_of_tree_module_builds_loads_unloads(target: Target) -> None:
    src = paths.PROJECT / "tests" / "fixtures" / "modules"
    manifest = modules.build(src, variant=target.variant)
    dist = modules.dist_dir(src, target.variant)
    order = (dist / "modules.load").read_text().split()
    assert order == ["gcma_fixture_lookup.ko", "gcma_fixture_user.ko"]
    imports = (dist / "gcma_fixture_user.imports").read_text()
    assert "gcma_fixture_find_area\tgcma_fixture_lookup\n" in imports
    assert "of_reserved_mem_lookup\tvmlinux\n" in (dist / "gcma_fixture_lookup.imports").read_text()
    assert manifest["modules"][1]["depends"] == ["gcma_fixture_lookup"]  # type: ignore[index]

    target.shell.check("mkdir -p /tmp/fixture")
    for ko in order:
        target.shell.push(dist / ko, f"/tmp/fixture/{ko}")
    target.shell.check("insmod /tmp/fixture/gcma_fixture_lookup.ko")
    target.shell.check("insmod /tmp/fixture/gcma_fixture_user.ko area=camera")
    log = target.shell.check("dmesg | grep gcma_fixture_user")
    assert "area camera: camera@60000000 base=0x0000000060000000 size=0x0000000008000000" in log
    # gcma_area.ko lent the region to GCMA at boot, which cleared PG_reserved.
    assert "first pfn=0x60000 valid=1 reserved=0" in log
    assert "last pfn=0x67fff valid=1 reserved=0" in log
    # The provider cannot go while its user holds it.
    assert not target.shell.run("rmmod gcma_fixture_lookup").ok
    target.shell.check("rmmod gcma_fixture_user")
    target.shell.check("rmmod gcma_fixture_lookup")
    assert "gcma_fixture" not in target.shell.check("cat /proc/modules")
    # A missing area is refused with an error, not a crash.
    target.shell.check("insmod /tmp/fixture/gcma_fixture_lookup.ko")
    res = target.shell.run("insmod /tmp/fixture/gcma_fixture_user.ko area=nowhere")
    assert not res.ok
    assert "area nowhere: no reserved memory found" in target.shell.check("dmesg | tail -5")
    target.shell.check("rmmod gcma_fixture_lookup")


def test_data_disk_checksums(target: Target) -> None:
    res = target.shell.run("cd /data && sha256sum -c MANIFEST.sha256", timeout=300)
    assert res.ok, res.stdout[-2000:]
    assert res.stdout.count(": OK") == 48


def test_shell_returns_exit_status_and_output(target: Target) -> None:
    env = dict(os.environ, GCMA_OUT=str(paths.out_dir()))
    res = subprocess.run([sys.executable, "-m", "gcma", "target", "shell", "--name",
                          target.emulated.name, "--", "echo", "hi;", "exit", "3"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 3, res.stderr
    assert res.stdout == "hi\n"


def test_push_pull_round_trip(target: Target, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 17)
    src, back = tmp_path / "blob", tmp_path / "back"
    src.write_bytes(data)
    target.shell.push(src, "/tmp/blob")
    remote = target.shell.check("sha256sum /tmp/blob").split()[0]
    assert remote == hashlib.sha256(data).hexdigest()
    target.shell.pull("/tmp/blob", back)
    assert back.read_bytes() == data


def test_two_targets_at_once(target: Target) -> None:
    second = EmulatedTarget(f"{target.emulated.name}-b")
    shell = second.start(Artefacts.default(target.variant), timeout=300)
    try:
        ports = {target.emulated.state()["ssh_port"], second.state()["ssh_port"]}  # type: ignore[index]
        assert len(ports) == 2
        assert shell.check("hostname").strip() == "gcma-target"
        assert target.shell.check("echo first").strip() == "first"
        # The second target's kernel is held to the same standard.
        assert klog.scan(shell.check("dmesg")) == []
    finally:
        shell.close()
        assert second.stop()
    assert second.state() is None


def test_boot_failure_reports_console(built: None) -> None:
    broken = EmulatedTarget(f"pytest-{os.getpid()}-panic")
    with pytest.raises(TargetError) as info:
        broken.start(timeout=120, extra_cmdline="rdinit=/does-not-exist")
    message = str(info.value)
    assert "Kernel panic" in message
    assert "last console lines" in message
    assert broken.state() is None


@pytest.mark.parametrize("sig,when", [(signal.SIGKILL, "boot"), (signal.SIGTERM, "run")])
def test_no_qemu_outlives_the_cli(built: None, sig: int, when: str) -> None:
    """Kill the CLI while its target boots (SIGKILL: no cleanup can run) or
    while it runs (SIGTERM, as a cancelled CI job sends): QEMU goes too."""
    name = f"pytest-{os.getpid()}-orphan-{when}"
    target = EmulatedTarget(name)
    cli = subprocess.Popen([sys.executable, "-m", "gcma", "integrity", "--name", name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: target.state_file.exists(), 120), "QEMU never started"
        pid = int(json.loads(target.state_file.read_text())["pid"])
        if when == "run":
            assert wait_for(lambda: READY_MARKER in target.console.read_text(
                errors="replace"), 120), target.console_tail()
            time.sleep(2)
        assert process_alive(pid)
        cli.send_signal(sig)
        code = cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert wait_for(lambda: not process_alive(pid), 15), f"QEMU {pid} outlived the CLI"
    if sig == signal.SIGTERM:
        # Unwound like Ctrl-C: it stopped its target itself and says how it ended.
        assert code == 128 + signal.SIGTERM
        assert target.state() is None
