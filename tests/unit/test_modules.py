from pathlib import Path

import pytest

from gcma.build import modules
from gcma.errors import UserError


def test_load_order_puts_providers_first() -> None:
    mods = {"heap": ["area", "dma_buf_core"], "area": [], "stats": ["heap"]}
    assert modules.load_order(mods, ["stats", "heap", "area"]) == ["area", "heap", "stats"]


def test_load_order_keeps_build_order_between_independent_modules() -> None:
    assert modules.load_order({"b": [], "a": [], "c": []}, ["c", "a", "b"]) == ["c", "a", "b"]


def test_load_order_rejects_cycles() -> None:
    with pytest.raises(UserError, match="cycle among: a, b"):
        modules.load_order({"a": ["b"], "b": ["a"], "c": []}, ["a", "b", "c"])


def test_read_symvers(tmp_path: Path) -> None:
    f = tmp_path / "Module.symvers"
    f.write_text("0x1\tdma_buf_export\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n"
                 "0x2\tfoo\t/tmp/x/mymod\tEXPORT_SYMBOL\t\n")
    table = modules.read_symvers(f)
    assert table["dma_buf_export"] == ("vmlinux", "DMA_BUF")
    assert table["foo"] == ("mymod", "")


def test_gcma_api_detection(tmp_path: Path) -> None:
    ours, android, none = tmp_path / "ours", tmp_path / "android", tmp_path / "none"
    (ours / "source/include/linux").mkdir(parents=True)
    (ours / "source/include/linux/gcma.h").write_text(
        "int gcma_register_area(const char *name, unsigned long start_pfn,\n")
    (android / "include/linux").mkdir(parents=True)
    (android / "include/linux/gcma.h").write_text(
        "extern int register_gcma_area(const char *name, phys_addr_t base,\n")
    none.mkdir()
    assert modules.gcma_api(ours) == "upstream"
    assert modules.gcma_api(android) == "android"
    assert modules.gcma_api(none) is None


def test_kernel_features_from_headers(tmp_path: Path) -> None:
    old, new, extra = tmp_path / "old", tmp_path / "new", tmp_path / "extra"
    (old / "include/linux").mkdir(parents=True)
    (old / "include/linux/dma-heap.h").write_text(
        "struct dma_buf *(*allocate)(struct dma_heap *heap, unsigned long len,\n"
        "\t\tunsigned long fd_flags, unsigned long heap_flags);\n")
    (old / "include/linux/dma-buf.h").write_text(
        "struct dma_buf_attachment {\n\tunsigned long dma_map_attrs;\n};\n")
    (new / "source/include/linux").mkdir(parents=True)
    (new / "source/include/linux/dma-heap.h").write_text("u32 fd_flags, u64 heap_flags);\n")
    (new / "source/include/linux/dma-buf.h").write_text("struct dma_buf_attachment {\n};\n")
    assert modules.kernel_features(old) == ["GCMA_HEAP_FLAGS=ulong", "GCMA_DMA_MAP_ATTRS=y"]
    assert modules.kernel_features(new) == []
    # An include folder put first wins over the tree's header.
    (extra / "linux").mkdir(parents=True)
    (extra / "linux/dma-heap.h").write_text("unsigned long fd_flags,\n")
    assert modules.kernel_features(new, include=extra) == ["GCMA_HEAP_FLAGS=ulong"]
