"""deploy's decisions with a scripted target shell (a fake: no Android device
can run here; tests/e2e/test_deploy.py runs deploy for real on the emulated
target over adb and ssh)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from gcma import targets
from gcma.errors import CheckFailed, UserError
from gcma.targets import deploy
from gcma.targets.transport import CommandResult

from .fakes import FakeTransport, ok

BUILD_ID = "ab" * 20
# A module file with a GNU build-id note, as the linker writes it.
NOTE = b"\x04\x00\x00\x00\x14\x00\x00\x00\x03\x00\x00\x00GNU\x00" + bytes.fromhex(BUILD_ID)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "gcma_area.ko").write_bytes(b"\x7fELF...." + NOTE + b"rest")
    (tmp_path / "modules.load").write_text("gcma_area.ko\n")
    return tmp_path


def spec(text: str) -> targets.TargetSpec:
    return targets.parse("targets:\n  t:\n" + text, "t.yaml")["t"]


def test_build_id_is_read_from_the_note(dist: Path) -> None:
    assert deploy.build_id(dist / "gcma_area.ko") == BUILD_ID


def test_reserve_mem_areas_become_gcma_area_parameters() -> None:
    s = spec("    transport: adb\n    areas: {source: reserve_mem, names: [cam, vid]}\n")
    assert s.module_params("gcma_area") == "source=reserve_mem names=cam,vid"
    assert s.module_params("gcma_heap") == ""
    own = spec("    transport: adb\n    areas: {source: reserve_mem, names: [cam]}\n"
               "    params: {gcma_area: \"source=reserve_mem names=other\"}\n")
    assert own.module_params("gcma_area") == "source=reserve_mem names=other"


def _target(sums: str, dmesg_after: list[str], insmod: CommandResult) -> FakeTransport:
    """Not loaded yet; the files there have ``sums``; insmod answers ``insmod``."""
    dmesg = ["[    1.0] booted"]

    def on(command: str) -> CommandResult:
        if command.startswith("for m in"):
            return ok("gcma_area none\n")
        if command.startswith("cat ") and deploy.RECORD in command:
            return ok("")
        if command.startswith("cd ") and "sha256sum" in command:
            return ok(sums)
        if command == "dmesg":
            out = "\n".join(dmesg)
            dmesg.extend(dmesg_after)
            return ok(out + "\n")
        if command.startswith("insmod "):
            return insmod
        if command.endswith("> /dev/kmsg"):  # deploy's mark in the kernel log
            dmesg.append("[    1.5] " + shlex.split(command)[1])
        return ok()

    return FakeTransport(default=on)


def test_a_selinux_denial_is_named_with_what_to_do(dist: Path) -> None:
    mod = deploy.local_modules(dist)[0]
    denial = ("[    2.0] audit: type=1400 avc:  denied  { module_load } for pid=1 "
              "comm=\"insmod\" scontext=u:r:shell:s0")
    t = _target(f"{mod.sha256}  gcma_area.ko\n", [denial],
                CommandResult("insmod", 1, "", "insmod: Permission denied"))
    s = spec("    transport: adb\n    areas: {source: reserve_mem, names: [cam]}\n")
    with pytest.raises(CheckFailed) as err:
        deploy.deploy(t, s, dist)
    text = str(err.value)
    assert "insmod /data/local/tmp/gcma/gcma_area.ko source=reserve_mem names=cam failed: " \
           "insmod: Permission denied" in text
    assert "avc:  denied  { module_load }" in text
    assert "SELinux denied it" in text and "setenforce 0" in text
    assert t.pushed == []  # the file on the target already had the right content
    assert not any(deploy.RECORD in c and "printf" in c for c, _ in t.commands)  # no record
    assert "booted" not in text  # only what came after the mark


def test_unchanged_modules_are_left_alone(dist: Path) -> None:
    mod = deploy.local_modules(dist)[0]
    record = {"modules": {"gcma_area": {"build_id": BUILD_ID, "sha256": mod.sha256,
                                        "params": ""}}}

    def on(command: str) -> CommandResult:
        if command.startswith("for m in"):
            return ok(f"gcma_area {'0' * 32}{BUILD_ID}\n")
        if command.startswith("cat "):
            return ok(json.dumps(record))
        return ok("camera\n")

    t = FakeTransport(default=on)
    result = deploy.deploy(t, spec("    transport: adb\n"), dist)
    assert result.action == "unchanged" and result.loaded == [] and t.pushed == []
    assert not any(c.startswith(("insmod", "rmmod")) for c, _ in t.commands)


def _mod(name: str) -> deploy.LocalModule:
    return deploy.LocalModule(name, Path(f"{name}.ko"), "", "")


def test_what_cannot_be_unloaded_is_said_before_anything_changes() -> None:
    proc_modules = ("gcma_pin 12288 0 - Live 0xffff800078890000 (O)\n"
                    "gcma_stress 12288 2 - Live 0xffff800078898000 (O)\n"
                    "gcma_heap 12288 0 [permanent], Live 0xffff80007888d000 (O)\n"
                    "gcma_area 16384 1 gcma_heap, Live 0xffff800078880000 (O)\n")
    deploy.check_unloadable(proc_modules, [_mod("gcma_pin")])
    with pytest.raises(deploy.NeedsReboot, match="gcma_heap is loaded and cannot be unloaded"):
        deploy.check_unloadable(proc_modules, [_mod("gcma_heap"), _mod("gcma_area")])
    with pytest.raises(UserError, match="cannot unload gcma_area to replace it: in use by "
                                        "gcma_heap"):
        deploy.check_unloadable(proc_modules, [_mod("gcma_area")])
    with pytest.raises(UserError, match=r"gcma_stress .* in use by 2 open buffers or files"):
        deploy.check_unloadable(proc_modules, [_mod("gcma_stress")])
