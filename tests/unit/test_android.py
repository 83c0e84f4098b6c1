"""The module manifest, the Android build files made from it (parsed back as
Starlark, Blueprint, make, ueventd and SELinux text and checked against the
manifest and Kbuild), and gcma flash against scripted launch_cvd, stop_cvd,
adb and fastboot that record their arguments."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gcma import paths
from gcma.android import files, flash, images, manifest
from gcma.build import cpio
from gcma.errors import UserError
from gcma.targets import TargetSpec

SRC = paths.PROJECT / "vendor_modules"


@pytest.fixture(scope="module")
def m() -> manifest.Manifest:
    return manifest.load()


def test_the_manifest_and_kbuild_agree(m: manifest.Manifest) -> None:
    assert [mod.name for mod in m.modules] == ["gcma_area", "gcma_heap"]
    assert manifest.kbuild_problems(m, SRC / "Kbuild") == []


def test_kbuild_drift_is_found(m: manifest.Manifest, tmp_path: Path) -> None:
    kbuild = tmp_path / "Kbuild"
    kbuild.write_text("obj-m += gcma_area.o\nobj-m += extra.o\n"
                      "gcma_area-y := gcma_area.o area_more.o\n")
    problems = manifest.kbuild_problems(m, kbuild)
    assert any("builds extra.ko, which modules.yaml does not list" in p for p in problems)
    assert any("does not build gcma_heap.ko" in p for p in problems)
    assert any("gcma_area.ko from area_more.c, gcma_area.c" in p for p in problems)


GOOD = """\
modules:
  a:
    description: d
    sources: [a.c]
    headers: []
    deps: []
    params: {}
    stage: vendor_dlkm
  b:
    description: d
    sources: [b.c]
    headers: [h.h]
    deps: [a]
    params: {x: 1}
    stage: vendor_dlkm
heaps:
  cam:
    mode: "0440"
    user: system
    group: camera
    selinux_type: t
    domains: [d]
"""


@pytest.mark.parametrize("change, message", [
    (("stage: vendor_dlkm\nheaps", "stage: boot\nheaps"),
     "module 'b': field 'stage': 'boot' is not one of"),
    (("deps: [a]", "deps: [c]"), "module 'b': field 'deps': 'c' is not a module listed before"),
    (("[b.c]", "[nope.c]"), "module 'b': no file 'nope.c'"),
    (("[b.c]", "[h.h]"), "module 'b': field 'sources': C files only"),
    (("  a:\n", "  A:\n"), "module 'A': not a valid module name"),
    (("    params: {}\n", "    params: {}\n    colour: red\n"), "module 'a': unknown field "
                                                               "'colour'"),
    (('mode: "0440"', "mode: 0440"), "heap 'cam': field 'mode' must be a quoted octal mode"),
    (('mode: "0440"', 'mode: "0666"'), "heap 'cam': field 'mode': world-writable"),
    (("stage: vendor_dlkm", "stage: vendor_dlkm\n"
      "  c:\n    description: d\n    sources: [a.c]\n    headers: []\n    deps: []\n"
      "    params: {}\n    stage: vendor_dlkm"), None),
    (("heaps:\n", "heapz:\n"), "top level: needs exactly 'modules' and 'heaps'"),
    (("deps: []\n    params: {}\n    stage: vendor_dlkm",
      "deps: []\n    params: {}\n    stage: vendor_ramdisk"),
     "module 'b': loads at vendor_dlkm, its dependency 'a' at vendor_ramdisk: depmod of one "
     "image cannot see the other"),
])
def test_manifest_mistakes_name_the_file_and_field(tmp_path: Path, change: tuple[str, str],
                                                   message: str | None) -> None:
    for name in ("a.c", "b.c", "h.h"):
        (tmp_path / name).write_text("")
    path = tmp_path / "modules.yaml"
    path.write_text(GOOD.replace(*change, 1))
    if message is None:
        manifest.load(path)
        return
    with pytest.raises(UserError) as err:
        manifest.load(path)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_a_module_and_its_dependency_share_a_stage(tmp_path: Path) -> None:
    for name in ("a.c", "b.c", "h.h"):
        (tmp_path / name).write_text("")
    path = tmp_path / "modules.yaml"
    path.write_text(GOOD.replace("stage: vendor_dlkm\nheaps", "stage: vendor_ramdisk\nheaps"))
    with pytest.raises(UserError, match="module 'b': loads at vendor_ramdisk, its dependency "
                                        "'a' at vendor_dlkm: depmod of one image cannot see "
                                        "the other; put both in one stage"):
        manifest.load(path)


def test_both_modules_load_in_the_second_stage(m: manifest.Manifest) -> None:
    """A first-stage module that fails to load stops an Android boot; ours
    load where a failure is only logged, both in one image for depmod."""
    assert [mod.name for mod in m.stage("vendor_dlkm")] == ["gcma_area", "gcma_heap"]
    assert m.stage("vendor_ramdisk") == []


def test_the_committed_android_files_are_the_generated_ones(m: manifest.Manifest) -> None:
    assert files.drift(m) == [], "run: gcma android files"


def test_drift_names_the_file_that_changed(m: manifest.Manifest, tmp_path: Path) -> None:
    (tmp_path / "device_tests").mkdir()
    for prog in files.device_programs():
        (tmp_path / "device_tests" / f"{prog}.c").write_text("")
    assert set(files.write(m, tmp_path)) == set(files.generate(m, tmp_path))
    assert files.drift(m, tmp_path) == []
    (tmp_path / "device_tests" / "new_tool.c").write_text("")
    # A test's configuration edited by hand is drift too.
    config = tmp_path / "device_tests" / "android" / "gcma_cc_race.xml"
    config.write_text(config.read_text().replace("2000", "1"))
    assert files.drift(m, tmp_path) == [tmp_path / "device_tests" / "Android.bp",
                                        tmp_path / "android" / "gcma_product.mk",
                                        tmp_path / "device_tests" / "android" /
                                        "gcma_cc_race.xml"]


def _starlark_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Top-level rule calls of a BUILD file (Starlark parses as Python)."""
    calls = []
    for node in ast.parse(text).body:
        assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        call = node.value
        assert isinstance(call.func, ast.Name)
        calls.append((call.func.id, {k.arg: ast.literal_eval(k.value) for k in call.keywords
                                     if k.arg}))
    return calls


def test_build_bazel_builds_what_the_manifest_and_kbuild_say(m: manifest.Manifest) -> None:
    calls = _starlark_calls((SRC / "BUILD.bazel").read_text())
    assert calls[0][0] == "load"
    headers = [kw for rule, kw in calls if rule == "ddk_headers"]
    assert len(headers) == 1
    assert sorted(headers[0]["hdrs"]) == sorted({h for mod in m.modules for h in mod.headers})
    for h in headers[0]["hdrs"]:
        assert (SRC / h).is_file(), h
    rules = {kw["name"]: kw for rule, kw in calls if rule == "ddk_module"}
    kbuild = (SRC / "Kbuild").read_text()
    assert set(rules) == {mod.name for mod in m.modules} == set(
        re.findall(r"^obj-m \+= (\w+)\.o$", kbuild, re.M))
    for mod in m.modules:
        rule = rules[mod.name]
        assert rule["srcs"] == list(mod.sources) and rule["out"] == mod.ko
        assert [d[1:] for d in rule["deps"] if d.startswith(":") and d != ":gcma_headers"] \
            == list(mod.deps)
        # What Kbuild derives from an Android tree, fixed: Android's GCMA API.
        assert "GCMA_API_ANDROID" in rule["local_defines"]


def _blueprint(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Blueprint modules: ``type { name: value, ... }`` with strings, bools,
    lists and maps; enough of the grammar for Android.bp files."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|[{}\[\]:,]',
                        re.sub(r"//[^\n]*", "", text))
    pos = 0

    def value() -> Any:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok.startswith('"'):
            return tok[1:-1]
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        if tok == "{":
            props = {}
            while tokens[pos] != "}":
                key = tokens[pos]
                assert tokens[pos + 1] == ":", tokens[pos:pos + 3]
                pos += 2
                props[key] = value()
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return props
        raise AssertionError(f"unexpected {tok!r}")

    modules = []
    while pos < len(tokens):
        kind = tokens[pos]
        pos += 1
        modules.append((kind, value()))
    return modules


def test_android_bp_has_every_device_program() -> None:
    mods = _blueprint((paths.PROJECT / "device_tests" / "Android.bp").read_text())
    programs = sorted(p.stem for p in (paths.PROJECT / "device_tests").glob("*.c"))
    built = {props["srcs"][0][:-2]: (kind, props) for kind, props in mods if "srcs" in props}
    assert sorted(built) == programs
    for prog, (kind, props) in built.items():
        assert props["defaults"] == ["gcma_device_tests_defaults"]
        # Soong names are global: ours are prefixed.
        assert props["name"] == f"gcma_{prog}"
        if prog in files.TEST_CASES:
            assert kind == "cc_test" and props["gtest"] is False and "stem" not in props
            assert props["test_suites"] == ["general-tests"]
            # Its Tradefed configuration runs each case with its arguments.
            config = ET.parse(paths.PROJECT / "device_tests" / props["test_config"]).getroot()
            push = config.find("target_preparer/option[@name='push-file']")
            assert push is not None and push.get("key") == props["name"]
            commands = {o.get("key"): o.get("value") for o in
                        config.findall("test/option[@name='test-command-line']")}
            assert set(commands) == set(files.TEST_CASES[prog]), commands
            for command in commands.values():
                assert f"{push.get('value')} " in command
        else:
            assert kind == "cc_binary" and props["stem"] == prog
    defaults = [p for k, p in mods if k == "cc_defaults"]
    assert defaults and "-Werror" in defaults[0]["cflags"] and defaults[0]["vendor"] is True


def _make_vars(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if match := re.match(r"^([A-Z_]+)\s*(\+=|\?=|:=)\s*(.*)$", line):
            values.setdefault(match.group(1), []).extend(match.group(3).split())
    return values


def test_makefiles_list_modules_by_stage_and_every_program(m: manifest.Manifest) -> None:
    board = _make_vars((paths.PROJECT / "android" / "gcma_board.mk").read_text())
    for stage, var in (("vendor_ramdisk", "BOARD_VENDOR_RAMDISK_KERNEL_MODULES"),
                       ("vendor_dlkm", "BOARD_VENDOR_KERNEL_MODULES")):
        want = [f"$(GCMA_KO_DIR)/{mod.ko}" for mod in m.stage(stage)]
        assert board.get(var, []) == want and board.get(f"{var}_LOAD", []) == want
    assert board["BOARD_VENDOR_SEPOLICY_DIRS"] == ["$(GCMA_DIR)/android/sepolicy"]
    assert not [v for v in board if not v.startswith(("BOARD_", "GCMA_"))], board
    product = _make_vars((paths.PROJECT / "android" / "gcma_product.mk").read_text())
    assert not [v for v in product if v.startswith("BOARD_")], product
    bp = _blueprint((paths.PROJECT / "device_tests" / "Android.bp").read_text())
    assert sorted(product["PRODUCT_PACKAGES_DEBUG"]) == sorted(
        p["name"] for k, p in bp if k != "cc_defaults")
    copies = dict(c.split(":", 1) for c in product["PRODUCT_COPY_FILES"])
    for src in copies:
        assert (paths.PROJECT / src.replace("$(GCMA_DIR)/", "")).is_file(), src
    # The vendor_dlkm modules are loaded by init, by name.
    rc = (paths.PROJECT / "android" / "init.gcma.rc").read_text()
    assert rc.rstrip().endswith("/vendor/bin/modprobe -a -d /vendor_dlkm/lib/modules "
                                + " ".join(mod.name for mod in m.stage("vendor_dlkm")))


@pytest.mark.parametrize("theirs, want", [
    # A device that lists its load order gets ours after its own.
    ("BOARD_VENDOR_KERNEL_MODULES_LOAD := x.ko\n", ["x.ko", "gcma_area.ko", "gcma_heap.ko"]),
    # One that leaves it empty loads every module of the stage (AOSP's
    # default): the list must stay empty, not become ours alone.
    ("", []),
])
def test_board_makefile_adds_to_a_load_list_only_when_the_device_made_one(
        tmp_path: Path, theirs: str, want: list[str]) -> None:
    """GNU make reads the generated file as a BoardConfig.mk would."""
    board = tmp_path / "BoardConfig.mk"
    board.write_text(f"GCMA_KO_DIR := ko\n{theirs}"
                     f"include {paths.PROJECT / 'android' / 'gcma_board.mk'}\n"
                     "show:\n"
                     "\t@echo 'ramdisk=$(BOARD_VENDOR_RAMDISK_KERNEL_MODULES_LOAD)'\n"
                     "\t@echo 'dlkm=$(BOARD_VENDOR_KERNEL_MODULES_LOAD)'\n"
                     "\t@echo 'all=$(BOARD_VENDOR_KERNEL_MODULES)'\n")
    out = subprocess.run(["make", "-s", "-f", str(board), "show"], capture_output=True,
                         text=True, check=True).stdout
    got = dict(ln.split("=", 1) for ln in out.splitlines())
    assert [Path(k).name for k in got["dlkm"].split()] == want
    assert got["ramdisk"] == ""
    assert got["all"].split() == ["ko/gcma_area.ko", "ko/gcma_heap.ko"]


def test_module_parameters_go_to_an_options_file(m: manifest.Manifest) -> None:
    with_params = manifest.Manifest(m.path, [
        manifest.Module("gcma_area", "d", ("gcma_area.c",), (), (), {"names": "a b"},
                        "vendor_ramdisk"),
        manifest.Module("gcma_heap", "d", ("gcma_heap.c",), (), ("gcma_area",),
                        {"x": "1"}, "vendor_dlkm")], m.heaps)
    out = files.generate(with_params)
    android = paths.PROJECT / "android"
    assert out[android / "vendor_ramdisk.modules.options"] == 'options gcma_area names="a b"\n'
    assert out[android / "vendor_dlkm.modules.options"] == "options gcma_heap x=1\n"
    board = _make_vars(out[android / "gcma_board.mk"])
    assert board["BOARD_VENDOR_RAMDISK_KERNEL_MODULES_OPTIONS_FILE"] == [
        "$(GCMA_DIR)/android/vendor_ramdisk.modules.options"]
    assert board["BOARD_VENDOR_KERNEL_MODULES_OPTIONS_FILE"] == [
        "$(GCMA_DIR)/android/vendor_dlkm.modules.options"]


def test_ueventd_and_selinux_files_agree_with_the_heaps(m: manifest.Manifest) -> None:
    android = paths.PROJECT / "android"
    rules = [ln.split() for ln in (android / "ueventd.gcma.rc").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert rules == [[f"/dev/dma_heap/{h.name}", h.mode, h.user, h.group] for h in m.heaps]
    contexts = [ln.split() for ln in (android / "sepolicy" / "file_contexts").read_text()
                .splitlines() if ln and not ln.startswith("#")]
    assert contexts == [[f"/dev/dma_heap/{h.name}", f"u:object_r:{h.selinux_type}:s0"]
                        for h in m.heaps]
    te = (android / "sepolicy" / "gcma_heap.te").read_text()
    for h in m.heaps:
        assert f"type {h.selinux_type}, dmabuf_heap_device_type, dev_type;" in te
        for d in h.domains:
            assert f"allow {d} {h.selinux_type}:chr_file r_file_perms;" in te
    # Nobody else: every allow rule is one the manifest asked for.
    assert te.count("allow ") == sum(len(h.domains) for h in m.heaps)


def test_cpio_reader_reads_what_the_writer_wrote() -> None:
    entries = [cpio.Entry("lib", 0o40755), cpio.Entry("lib/a.ko", 0o100644, b"x" * 5)]
    read = images.read_cpio(cpio.archive(entries))
    assert read == {"lib": (0o40755, b""), "lib/a.ko": (0o100644, b"xxxxx")}


CUTTLEFISH = TargetSpec("cvd", "adb", "t", serial="0.0.0.0:6520", arch="x86_64",
                        area_source="reserve_mem", area_names=("gcma_camera", "gcma_video"))


def test_cuttlefish_plan_passes_kernel_initramfs_and_areas(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    kernel = tmp_path / "bzImage"
    kernel.write_text("k")
    plan = flash.cuttlefish_plan(CUTTLEFISH, kernel, tmp_path / "i.cpio", "64M", restart=True)
    assert plan.commands == [
        ["stop_cvd"],
        ["launch_cvd", "--daemon", f"--kernel_path={kernel}",
         f"--initramfs_path={tmp_path / 'i.cpio'}",
         "--extra_kernel_cmdline=reserve_mem=64M:4M:gcma_camera reserve_mem=64M:4M:gcma_video "
         "gcma_area.source=reserve_mem gcma_area.names=gcma_camera,gcma_video"]]
    assert "neither launch_cvd nor cvd is on PATH" in plan.notes[0]
    with pytest.raises(UserError, match="give it reserve_mem areas"):
        flash.cuttlefish_plan(TargetSpec("x", "adb", "t", serial="0.0.0.0:6520"), kernel,
                              kernel, "64M", restart=False)


def _fakes(bin_dir: Path, log: Path, fail: str = "") -> dict[str, str]:
    """Scripted launch_cvd, stop_cvd, cvd, adb and fastboot: each records its
    name and arguments; the one named ``fail`` exits 1."""
    bin_dir.mkdir()
    for tool in ("launch_cvd", "stop_cvd", "adb", "fastboot"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n'
                          + ("exit 1\n" if tool == fail else "exit 0\n"))
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=str(paths.PROJECT / "host_tools"), GCMA_OUT=str(bin_dir.parent / "out"))
    return env


def _gcma(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gcma", *args], env=env, text=True,
                          capture_output=True, timeout=120)


def _base_ramdisk(path: Path) -> Path:
    """A GKI-style initramfs (gzip): an init, and a module of its own."""
    entries = [cpio.Entry("init", 0o100755, b"#!/bin/sh\n"),
               cpio.Entry("lib", 0o40755), cpio.Entry("lib/modules", 0o40755),
               cpio.Entry("lib/modules/virtio_blk.ko", 0o100644, b"not really a module"),
               cpio.Entry("lib/modules/modules.load", 0o100644, b"virtio_blk.ko\n")]
    cpio.write_gz(path, entries)
    return path


def _fake_dist(path: Path) -> Path:
    path.mkdir()
    for name in ("gcma_area", "gcma_heap"):
        (path / f"{name}.ko").write_bytes(f"{name} (not ELF: depmod skips it)".encode())
    return path


def test_the_cuttlefish_ramdisk_keeps_its_modules_and_adds_ours(m: manifest.Manifest,
                                                                tmp_path: Path) -> None:
    base = _base_ramdisk(tmp_path / "initramfs.img")
    out = images.merged_ramdisk(m, _fake_dist(tmp_path / "dist"), base, tmp_path / "m.cpio")
    merged = images.read_cpio(out.read_bytes())
    assert merged["init"] == (0o100755, b"#!/bin/sh\n")
    assert merged["lib/modules/virtio_blk.ko"][1] == b"not really a module"
    assert merged["lib/modules/gcma_heap.ko"][1].startswith(b"gcma_heap")
    assert merged["lib/modules/modules.load"][1].decode().split() == [
        "virtio_blk.ko", "gcma_area.ko", "gcma_heap.ko"]
    assert "lib/modules/modules.dep" in merged
    with pytest.raises(UserError, match="lz4-compressed"):
        lz4 = tmp_path / "lz4.img"
        lz4.write_bytes(images.LZ4_LEGACY + b"...")
        images.merged_ramdisk(m, tmp_path / "dist", lz4, tmp_path / "x.cpio")
    with pytest.raises(UserError, match=r"no lib/modules/modules\.load"):
        bare = tmp_path / "bare.cpio"
        bare.write_bytes(cpio.archive([cpio.Entry("init", 0o100755, b"")]))
        images.merged_ramdisk(m, tmp_path / "dist", bare, tmp_path / "x.cpio")


def test_no_first_stage_module_means_no_vendor_ramdisk_image(m: manifest.Manifest,
                                                             tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no module has stage vendor_ramdisk: "
                                        "no vendor_ramdisk image"):
        images.vendor_ramdisk(m, _fake_dist(tmp_path / "dist"), tmp_path / "r.cpio")
    assert not (tmp_path / "r.cpio").exists()


def test_flash_a_cuttlefish_runs_what_dry_run_prints(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = _fakes(tmp_path / "bin", log)
    kernel = tmp_path / "bzImage"
    kernel.write_text("k")
    base = _base_ramdisk(tmp_path / "initramfs.img")
    dist = _fake_dist(tmp_path / "dist")
    merged = tmp_path / "out" / "images" / "cuttlefish-cuttlefish.cpio"
    args = ["flash", "--target", "cuttlefish", "--kernel", str(kernel), "--initramfs",
            str(base), "--modules", str(dist), "--restart"]
    dry = _gcma(env, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not log.exists()
    cmdline = ("reserve_mem=128M:4M:gcma_camera gcma_area.source=reserve_mem "
               "gcma_area.names=gcma_camera")
    assert dry.stdout.splitlines() == [
        "stop_cvd",
        f"launch_cvd --daemon --kernel_path={kernel} --initramfs_path={merged} "
        f"'--extra_kernel_cmdline={cmdline}'"]
    real = _gcma(env, *args)
    assert real.returncode == 0, real.stderr
    assert log.read_text().splitlines() == [
        "stop_cvd ",
        f"launch_cvd --daemon --kernel_path={kernel} --initramfs_path={merged} "
        f"--extra_kernel_cmdline={cmdline}"]
    missing = _gcma(env, "flash", "--target", "cuttlefish", "--kernel", str(kernel),
                    "--dry-run")
    assert missing.returncode == 2 and "needs --initramfs" in missing.stderr, missing


def _flash_phone(tmp_path: Path, fail: str = "") -> tuple[subprocess.CompletedProcess[str],
                                                         dict[str, str], Path, Path]:
    """gcma flash of a vendor_dlkm image to the built-in phone, with fakes."""
    log = tmp_path / "calls.log"
    env = _fakes(tmp_path / "bin", log, fail=fail)
    image = tmp_path / "vendor_dlkm.img"
    image.write_bytes(b"\0" * 4096)
    return _gcma(env, "flash", "--target", "phone", "--vendor-dlkm", str(image)), env, log, image


def test_flash_a_device_goes_through_fastbootd(tmp_path: Path) -> None:
    res, env, log, image = _flash_phone(tmp_path)
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == [
        "adb reboot fastboot", f"fastboot flash vendor_dlkm {image}", "fastboot reboot"]
    assert "vendor_boot is not written" in res.stderr
    # Our emulated target's modules are not a phone's: it must be told which.
    res = _gcma(env, "flash", "--target", "phone", "--dry-run")
    assert res.returncode == 2 and "give --vendor-dlkm" in res.stderr, res


def test_a_failing_fastboot_stops_the_flash_with_its_command(tmp_path: Path) -> None:
    res, _, log, image = _flash_phone(tmp_path, fail="fastboot")
    assert res.returncode not in (0, 1, 5), res
    assert "Traceback" not in res.stderr
    assert "fastboot flash vendor_dlkm" in res.stderr
    assert log.read_text().splitlines() == ["adb reboot fastboot",
                                            f"fastboot flash vendor_dlkm {image}"]


@pytest.mark.parametrize("serial, local", [
    ("0.0.0.0:6520", True), ("127.0.0.1:6521", True), ("localhost:6530", True),
    ("lab-host:6520", False), ("1A2B3C4D", False), (None, False)])
def test_which_adb_serials_are_a_local_cuttlefish(serial: str | None, local: bool) -> None:
    assert flash.is_cuttlefish(TargetSpec("x", "adb", "t", serial=serial)) is local


def test_flash_refuses_to_replace_a_partition_by_surprise(tmp_path: Path) -> None:
    image = tmp_path / "ours.img"
    image.write_bytes(b"\0")
    spec = TargetSpec("p", "adb", "t")
    with pytest.raises(UserError, match="would replace the whole partition"):
        flash.device_plan(spec, image, ours=True, replace_partition=False)
    plan = flash.device_plan(TargetSpec("p", "adb", "t", serial="X1"), image, ours=True,
                             replace_partition=True)
    assert plan.commands[1] == ["fastboot", "-s", "X1", "flash", "vendor_dlkm", str(image)]


def test_flash_of_an_ssh_target_is_a_user_error(tmp_path: Path) -> None:
    env = _fakes(tmp_path / "bin", tmp_path / "log")
    targets_file = tmp_path / "t.yaml"
    targets_file.write_text("targets:\n  board:\n    transport: ssh\n    host: h\n")
    env["GCMA_TARGETS"] = str(targets_file)
    res = _gcma(env, "flash", "--target", "board", "--dry-run")
    assert res.returncode == 2 and "use gcma deploy" in res.stderr, res

