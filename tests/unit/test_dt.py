from pathlib import Path

import pytest

from gcma.build import dt
from gcma.errors import UserError
from gcma.targets.machine import Machine

MIB = 1 << 20


def test_regions_must_lie_inside_ram() -> None:
    m = Machine(memory_mib=512)  # RAM 0x40000000-0x5fffffff
    regions = {"ok@50000000": [(0x50000000, 64 * MIB)],
               "camera@60000000": [(0x60000000, 128 * MIB)],
               "low@0": [(0x0, MIB)]}
    problems = dt.check_inside_ram(regions, m)
    assert len(problems) == 2
    assert problems[0].startswith("/reserved-memory/camera@60000000: 0x60000000+0x8000000")
    assert "-m 512" in problems[0]
    assert problems[1].startswith("/reserved-memory/low@0")


def test_ranges_decode_two_cell_values() -> None:
    assert dt._ranges([0, 0x60000000, 0, 0x8000000, 1, 0, 0, 0x1000]) == [
        (0x60000000, 0x8000000), (0x100000000, 0x1000)]


def test_overlay_warning_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.dtso"
    # A unit address with no reg property: dtc warns, we refuse.
    src.write_text("/dts-v1/;\n/plugin/;\n&{/} {\n\tthing@1000 {\n\t\tlabel = \"x\";\n\t};\n};\n")
    with pytest.raises(UserError, match=r"dtc rejected .*bad.dtso.*\n.*unit_address_vs_reg"):
        dt.compile_overlay(src, tmp_path / "bad.dtbo", tmp_path / "log")
    assert not (tmp_path / "bad.dtbo").exists()


def test_project_overlay_compiles_clean(tmp_path: Path) -> None:
    from gcma import paths
    dt.compile_overlay(paths.PROJECT / "dts" / "virt-gcma.dtso", tmp_path / "o.dtbo",
                       tmp_path / "log")
    assert (tmp_path / "o.dtbo").stat().st_size > 0
