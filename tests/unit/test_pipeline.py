"""build_all's wiring, with every step replaced by a recorder."""

from __future__ import annotations

from typing import Any

import pytest

from gcma.build import dt, kernel, modules, pipeline, rootfs
from gcma.build.toolchain import Toolchain


def test_module_builds_use_the_callers_toolchain(monkeypatch: pytest.MonkeyPatch) -> None:
    """-j and --no-ccache reach the module builds, not only the kernel's."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, kwargs))
        return record

    monkeypatch.setattr(kernel, "build", recorder("kernel"))
    monkeypatch.setattr(modules, "build", recorder("modules"))
    monkeypatch.setattr(dt, "build", recorder("dt"))
    for step in ("build_initramfs", "build_data_disk", "build_erofs_disk", "build_data1k_disk"):
        monkeypatch.setattr(rootfs, step, recorder(step))
    monkeypatch.setattr(modules, "dist_dir", lambda *a, **k: None)
    tc = Toolchain(jobs=1, use_ccache=False)
    pipeline.build_all(tc, ("default", "debug"))
    module_calls = [kw for name, kw in calls if name == "modules"]
    assert len(module_calls) == 4
    assert all(kw["tc"] is tc for kw in module_calls)
    assert [kw["tc"] for name, kw in calls if name == "kernel"] == [tc, tc]
    # Both DTBs: the default one and the one without the guaranteed pool.
    assert [kw.get("name", dt.DEFAULT_DTB) for name, kw in calls if name == "dt"] == \
        [dt.DEFAULT_DTB, dt.NO_GUARANTEE_DTB]
