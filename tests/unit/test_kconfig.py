from pathlib import Path

import pytest

from gcma.build import kconfig
from gcma.errors import UserError


def test_parse_set_unset_and_comments() -> None:
    reqs = kconfig.parse_config(
        "# a comment\nCONFIG_A=y\n\nCONFIG_B=\"str\"\n# CONFIG_C is not set\nCONFIG_D=32\n",
        "frag")
    assert {s: r.value for s, r in reqs.items()} == {
        "CONFIG_A": "y", "CONFIG_B": '"str"', "CONFIG_C": "n", "CONFIG_D": "32"}
    assert reqs["CONFIG_D"].source == "frag:6"


def test_bad_line_names_file_and_line() -> None:
    with pytest.raises(UserError, match=r"frag:2: not a Kconfig line"):
        kconfig.parse_config("CONFIG_A=y\nCONFIG_B y\n", "frag")


def test_later_fragment_overrides(tmp_path: Path) -> None:
    a, b = tmp_path / "a.config", tmp_path / "b.config"
    a.write_text("CONFIG_X=y\nCONFIG_Y=y\n")
    b.write_text("# CONFIG_X is not set\n")
    reqs = kconfig.parse_fragments([a, b])
    assert reqs["CONFIG_X"].value == "n"
    assert reqs["CONFIG_Y"].value == "y"


def test_verify_lists_each_symbol_that_did_not_stick() -> None:
    reqs = kconfig.parse_config(
        "CONFIG_OK=y\nCONFIG_DROPPED=y\nCONFIG_NUM=32\n# CONFIG_OFF is not set\n"
        "CONFIG_MOD=m\n", "f")
    final = {"CONFIG_OK": "y", "CONFIG_NUM": "16", "CONFIG_OFF": "y", "CONFIG_MOD": "y"}
    problems = kconfig.verify(reqs, final)
    assert problems == [
        "CONFIG_DROPPED: requested y (f:2), got not set",
        "CONFIG_MOD: requested m (f:5), got y",
        "CONFIG_NUM: requested 32 (f:3), got 16",
        "CONFIG_OFF: requested n (f:4), got y",
    ]


def test_verify_accepts_exact_match() -> None:
    reqs = kconfig.parse_config("CONFIG_A=y\n# CONFIG_B is not set\n")
    assert kconfig.verify(reqs, {"CONFIG_A": "y"}) == []


def test_project_fragments_parse() -> None:
    from gcma import paths
    frags = sorted((paths.PROJECT / "gki" / "configs").glob("*.config"))
    assert frags, "no config fragments in gki/configs"
    reqs = kconfig.parse_fragments(frags)
    for sym in ("CONFIG_DMABUF_HEAPS", "CONFIG_OF_RESERVED_MEM", "CONFIG_MODULE_UNLOAD"):
        assert reqs[sym].value == "y"
