"""The kconfiglib compatibility layer and the explainer, on a small Kconfig
tree written here in the kernel's syntax (tests/e2e/test_gki_checks.py runs
them on the real 6.12 tree)."""

from __future__ import annotations

from pathlib import Path

import kconfiglib
import pytest

from gcma.build import kconfig
from gcma.checks import kconfig_tree
from gcma.errors import UserError

KCONFIG = """\
config MODULES
\tbool "Enable loadable module support"
\tmodules

config MMU
\tbool
\tdefault y

config HAVE_DMA
\tbool

config CMA
\tbool "Contiguous Memory Allocator"
\tdepends on MMU

config DMA_CMA
\tbool "DMA CMA"
\tdepends on HAVE_DMA && CMA

config CLEANCACHE
\tbool "cleancache"

config GCMA
\tbool "GCMA"
\tdepends on CLEANCACHE && (MMU || HAVE_DMA)

config CAMERA
\ttristate "a camera driver"
\tdepends on MODULES
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "Kconfig").write_text(KCONFIG)
    return tmp_path


def wanted(text: str) -> dict[str, kconfig.Request]:
    return kconfig.parse_config(text, "want.config")


def test_plain_kconfiglib_cannot_read_the_bare_modules_keyword(tree: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(tree)
    with pytest.raises(kconfiglib.KconfigError, match="modules"):
        kconfiglib.Kconfig("Kconfig", warn_to_stderr=False)


def test_the_compat_layer_reads_it_as_option_modules(tree: Path) -> None:
    kconf = kconfig_tree.load_tree(tree, "x86_64")
    assert kconf.modules is kconf.syms["MODULES"]
    assert not kconf.warnings
    # MODULES=y lets a tristate be m: the modules symbol works as in Kbuild.
    (tree / "cfg").write_text("CONFIG_MODULES=y\nCONFIG_CAMERA=m\n")
    kconf = kconfig_tree.load_tree(tree, "x86_64", config=tree / "cfg")
    assert kconf.syms["CAMERA"].str_value == "m"
    (tree / "cfg").write_text("# CONFIG_MODULES is not set\nCONFIG_CAMERA=m\n")
    kconf = kconfig_tree.load_tree(tree, "x86_64", config=tree / "cfg")
    assert kconf.syms["CAMERA"].str_value == "n"


def test_an_off_option_gets_its_unmet_dependencies_with_values(tree: Path) -> None:
    (tree / "cfg").write_text("CONFIG_CLEANCACHE=y\nCONFIG_GCMA=y\n# CONFIG_CMA is not set\n"
                              "CONFIG_DMA_CMA=y\n")
    kconf = kconfig_tree.load_tree(tree, "x86_64", config=tree / "cfg")
    values = kconfig.read_dotconfig(tree / "cfg")
    findings = {f.symbol: f for f in kconfig_tree.check(
        kconf, values, wanted("CONFIG_CMA=y\nCONFIG_DMA_CMA=y\nCONFIG_GCMA=y\n"))}
    assert findings["CONFIG_GCMA"].ok
    cma = findings["CONFIG_CMA"]
    assert (cma.got, cma.source) == ("n", "want.config:1")
    assert cma.why == ["CMA (Kconfig:12): its dependencies are met; it is simply not set "
                       "(add CONFIG_CMA=y)"]
    # The .config says DMA_CMA=y, but the build would drop it: what counts is
    # the value Kconfig gives it.
    dma = findings["CONFIG_DMA_CMA"]
    assert dma.got == "n"
    assert dma.why[0] == "DMA_CMA (Kconfig:16) depends on HAVE_DMA [=n] && CMA [=n]"
    assert "  unmet: HAVE_DMA [=n]" in dma.why and "  unmet: CMA [=n]" in dma.why
    # One level down: why HAVE_DMA is off.
    assert "    HAVE_DMA (Kconfig:9) has no prompt here; only a select can turn it on, " \
           "and nothing selects it" in dma.why


def test_an_option_this_kernel_lacks_says_so(tree: Path) -> None:
    kconf = kconfig_tree.load_tree(tree, "x86_64", config=None)
    (finding,) = kconfig_tree.check(kconf, {}, wanted("CONFIG_DMABUF_HEAPS=y\n"))
    assert finding.why == ["DMABUF_HEAPS is not defined by this kernel's Kconfig"]


def test_not_a_tree_and_no_compiler_are_user_errors(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(UserError, match="no Kconfig at the top"):
        kconfig_tree.load_tree(tmp_path / "nothing")
    with pytest.raises(UserError, match="compiler no-such-cc not found"):
        kconfig_tree.load_tree(tree, "x86_64", cc="no-such-cc")


def test_x86_64_reads_arch_x86_and_relative_paths_mean_the_callers(
        tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "Kconfig").write_text(KCONFIG + 'source "arch/$(SRCARCH)/Kconfig"\n')
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "arch" / "x86" / "Kconfig").write_text("config X86_64\n\tdef_bool y\n")
    (tree / "my.config").write_text("# CONFIG_CMA is not set\n")  # not the one given
    work = tmp_path / "work"
    work.mkdir()
    (work / "my.config").write_text("CONFIG_CMA=y\n")
    monkeypatch.chdir(work)
    kconf = kconfig_tree.load_tree(Path(".."), "x86_64", config=Path("my.config"))
    assert kconf.syms["X86_64"].str_value == "y"
    assert kconf.syms["CMA"].str_value == "y"
