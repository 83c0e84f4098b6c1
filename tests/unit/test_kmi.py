"""KMI symbol-list checks on a dist folder written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcma.checks import kmi
from gcma.errors import UserError


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    manifest = {"modules": [
        {"name": "area", "file": "area.ko", "imports": [
            {"symbol": "dma_buf_export", "provider": "vmlinux", "namespace": "DMA_BUF"},
            {"symbol": "secret_helper", "provider": "vmlinux", "namespace": ""}]},
        {"name": "heap", "file": "heap.ko", "imports": [
            {"symbol": "area_find", "provider": "area", "namespace": ""},
            {"symbol": "dma_buf_export", "provider": "vmlinux", "namespace": "DMA_BUF"},
            {"symbol": "heap_core_add", "provider": "heap_core", "namespace": ""}]}]}
    (tmp_path / "modules.json").write_text(json.dumps(manifest))
    return tmp_path


def test_list_and_exports_are_both_checked(dist: Path, tmp_path: Path) -> None:
    lst = tmp_path / "abi_gki_aarch64_vendor"
    lst.write_text("[abi_symbol_list]\n  # dma-buf\n  dma_buf_export\n  heap_core_add\n")
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("0x1\tdma_buf_export\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n"
                       "0x2\tsecret_helper\tvmlinux\tEXPORT_SYMBOL\t\n")
    report = kmi.check(dist, lst, symvers)
    # area_find comes from one of the dist's own modules: never checked.
    assert report.not_in_list == {"secret_helper": ["area.ko"]}
    assert report.not_exported == {"heap_core_add": ["heap.ko"]}
    assert not report.ok


def test_written_list_reads_back_and_passes(dist: Path, tmp_path: Path) -> None:
    report = kmi.check(dist)
    out = tmp_path / "vendor.list"
    out.write_text(kmi.symbol_list(report, "test"))
    assert out.read_text().startswith("[abi_symbol_list]\n")
    assert kmi.read_symbol_list(out) == {"dma_buf_export", "secret_helper", "heap_core_add"}
    assert kmi.check(dist, out).ok


@pytest.mark.parametrize("text, message", [
    ("dma_buf_export\n", "1: 'dma_buf_export' comes before the [abi_symbol_list] line"),
    ("# only a comment\n", "no [abi_symbol_list] section"),
    ("[abi_symbol_list]\n  two words\n", "2: 'two words' is not a symbol name"),
])
def test_bad_lists_are_user_errors(tmp_path: Path, text: str, message: str) -> None:
    lst = tmp_path / "list"
    lst.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kmi.read_symbol_list(lst)


def test_only_the_abi_symbol_list_section_counts(tmp_path: Path) -> None:
    lst = tmp_path / "list"
    lst.write_text("[abi_symbol_list]\n  a\n[other_section]\n  b\n")
    assert kmi.read_symbol_list(lst) == {"a"}
