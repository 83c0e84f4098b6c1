"""gcma kernel bisect-build: which config symbols a patch introduces."""

from __future__ import annotations

from pathlib import Path

from gcma import bisect, patches


def test_introduced_symbols_are_the_added_kconfig_entries(tmp_path: Path) -> None:
    patch = tmp_path / "0001-x.patch"
    patch.write_text(
        "--- a/mm/Kconfig\n+++ b/mm/Kconfig\n@@ -1,3 +1,9 @@\n"
        " config CMA\n"            # context: not introduced here
        "+config GCMA\n+\tbool \"x\"\n"
        "+menuconfig FOO_MENU\n"
        "-config GONE\n"           # removed, not introduced
        "+\thelp\n+\t  config WORDS in help text do not count\n")
    series = [patches.Patch(patch.name, patch, "0")]
    assert bisect.introduced_symbols(series[0]) == {"CONFIG_GCMA", "CONFIG_FOO_MENU"}


def test_real_series_introduces_our_symbols() -> None:
    found: set[str] = set()
    for p in patches.read_series(bisect.paths.PROJECT / "gki" / "patches"):
        found |= bisect.introduced_symbols(p)
    assert {"CONFIG_CLEANCACHE", "CONFIG_GCMA", "CONFIG_CLEANCACHE_KUNIT_TEST"} <= found
