"""targets.yaml: what it describes, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcma import targets
from gcma.errors import UserError

GOOD = """\
targets:
  cf:
    transport: adb
    serial: 0.0.0.0:6520
    arch: x86_64
    kernel: {out_dir: ~/gki/out}
    install_path: /vendor_dlkm/lib/modules
    params: {gcma_area: "source=reserve_mem names=gcma_camera"}
    areas: {source: reserve_mem, names: [gcma_camera]}
    heaps: [gcma_camera]
  board:
    transport: ssh
    host: 192.0.2.7
    port: 2222
    key: ~/.ssh/lab
"""


def test_a_full_description_reads_back(tmp_path: Path) -> None:
    specs = targets.parse(GOOD, "t.yaml")
    cf = specs["cf"]
    assert (cf.transport, cf.serial, cf.arch) == ("adb", "0.0.0.0:6520", "x86_64")
    assert cf.kernel.out_dir == Path("~/gki/out").expanduser() and cf.kernel.variant is None
    assert cf.params == {"gcma_area": "source=reserve_mem names=gcma_camera"}
    assert (cf.area_source, cf.area_names, cf.heaps) == ("reserve_mem", ("gcma_camera",),
                                                         ("gcma_camera",))
    assert cf.source == "t.yaml:3"
    board = specs["board"]
    assert (board.host, board.port, board.user) == ("192.0.2.7", 2222, "root")


def test_user_files_override_builtins_by_name(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text("targets:\n  cuttlefish:\n    transport: adb\n    serial: 127.0.0.1:6521\n")
    specs = targets.load([path])
    assert specs["cuttlefish"].serial == "127.0.0.1:6521"
    assert specs["emulated-adb"].connect == "adb"  # built-ins stay


@pytest.mark.parametrize("text, message", [
    ("targets:\n  x:\n    transport: usb\n", "t.yaml:3: target 'x': field 'transport': 'usb' "
                                               "is not one of emulated, adb, ssh"),
    ("targets:\n  x:\n    serial: a\n", "t.yaml:3: target 'x': field 'transport' is missing"),
    ("targets:\n  x:\n    transport: adb\n    colour: red\n",
     "t.yaml:4: target 'x': unknown field 'colour' (transport adb takes:"),
    ("targets:\n  x:\n    transport: ssh\n    host: h\n    port: 99999\n",
     "t.yaml:5: target 'x': field 'port': '99999' is not a TCP port"),
    ("targets:\n  x:\n    transport: ssh\n", "t.yaml:3: target 'x': an ssh target needs 'host'"),
    ("targets:\n  x:\n    transport: adb\n    arch: mips\n", "t.yaml:4: target 'x': field 'arch'"),
    ("targets:\n  x:\n    transport: adb\n    heaps: camera\n",
     "t.yaml:4: target 'x': field 'heaps' must be a list"),
    ("targets:\n  x:\n    transport: adb\n    areas: {source: reserve_mem}\n",
     "t.yaml:4: target 'x': field 'areas': reserve_mem needs 'names'"),
    ("targets:\n  x:\n    transport: adb\n    kernel: {tree: a, out_dir: b}\n",
     "t.yaml:4: target 'x': field 'kernel': give exactly one of"),
    ("targets:\n  x:\n    transport: adb\n    install_path: data/tmp\n",
     "t.yaml:4: target 'x': field 'install_path': must be an absolute path"),
    ("targets:\n  x: [1, 2]\n", "t.yaml:2: target 'x' must be a mapping"),
    ("targets:\n  x:\n    transport: adb\n  x:\n    transport: ssh\n",
     "t.yaml:4: 'targets': 'x' given twice"),
    ("devices: {}\n", "t.yaml:1: unknown top-level field 'devices'"),
    ("targets:\n  x:\n    transport: adb\n   serial: [\n", "t.yaml:4: not valid YAML"),
    # Hostile files: one line each, never a crash.
    ("[" * 20000, "t.yaml: nested too deeply to be a targets file"),
    ("targets:\n" + "#" * (1 << 20), "t.yaml: 1,048,585 characters: too large"),
    ("\x00\x01binary", "t.yaml: not valid YAML: character U+0000 at offset 0 is not"),
    ("targets: 3\n", "t.yaml:1: 'targets' must be a mapping"),
])
def test_bad_descriptions_name_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        targets.parse(text, "t.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such targets file"):
        targets.load([tmp_path / "nope.yaml"])


def test_unknown_target_lists_the_known_ones(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCMA_OUT", str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"target nope is not running .* and is not in "
                                        r"targets.yaml \(known: cuttlefish, emulated"):
        targets.resolve("nope", [])
