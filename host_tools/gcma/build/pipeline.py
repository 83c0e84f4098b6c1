"""The whole job: build everything, boot the emulated target, run, report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gcma import paths, runner
from gcma.build import dt, kernel, modules, rootfs
from gcma.build.toolchain import Toolchain
from gcma.errors import CheckFailed
from gcma.report import parse_kv, table
from gcma.targets.emulated import EmulatedTarget
from gcma.targets.machine import VIRT

VENDOR_MODULES = paths.PROJECT / "vendor_modules"
#: Kernel modules that test scenarios load on the target (not vendor modules).
TEST_MODULES = paths.PROJECT / "device_tests" / "kmod"


def build_all(tc: Toolchain | None = None,
              variants: tuple[str, ...] = (kernel.DEFAULT_VARIANT,)) -> dict[str, float]:
    """Kernel(s), vendor modules, DTB, root filesystem; returns durations.

    Modules and initramfs are built per variant: their symbol versions differ.
    """
    durations: dict[str, float] = {}

    def done(step: str, since: float) -> None:
        durations[step] = durations.get(step, 0.0) + time.monotonic() - since

    for variant in variants:
        t = time.monotonic()
        kernel.build(tc=tc, variant=variant)
        done(f"kernel-{variant}", t)
        t = time.monotonic()
        # The same toolchain (-j, --no-ccache, LLVM) for modules as for the kernel.
        modules.build(tc=tc, variant=variant)
        modules.build(TEST_MODULES, tc=tc, variant=variant, uses=(VENDOR_MODULES,))
        done("modules", t)
    t = time.monotonic()
    dt.build(VIRT)
    dt.build(VIRT, [paths.PROJECT / "dts" / o for o in dt.NO_GUARANTEE_OVERLAYS],
             name=dt.NO_GUARANTEE_DTB)
    done("dtb", t)
    t = time.monotonic()
    for variant in variants:
        rootfs.build_initramfs(modules.dist_dir(variant=variant),
                               modules.dist_dir(TEST_MODULES, variant=variant), variant)
    rootfs.build_data_disk()
    rootfs.build_erofs_disk()
    rootfs.build_data1k_disk()
    rootfs.build_slow_disk()
    done("rootfs", t)
    return durations


#: The default on-target program: every heap, a few buffer sizes.
DEFAULT_RUNS = (("1M", 100), ("4M", 40), ("16M", 20))


def run_default(name: str = "main", timeout: float = 180.0) -> Path:
    """Boot, run heap_alloc on every heap at each size, print and save a table."""
    target = EmulatedTarget(name)
    t0 = time.monotonic()
    transport = target.start(timeout=timeout)
    boot_s = time.monotonic() - t0
    rows = []
    failed = []
    try:
        loaded = transport.check("cat /proc/modules").splitlines()
        for size, count in DEFAULT_RUNS:
            res = transport.run(f"heap_alloc -a -s {size} -n {count}", timeout=600)
            rows += [parse_kv(line) for line in res.stdout.splitlines() if line.strip()]
            if not res.ok:
                failed.append(f"heap_alloc -s {size} exited {res.exit_status}")
        release = transport.check("uname -r").strip()
    finally:
        transport.close()
        target.stop()
    report_dir = paths.out_dir() / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    report = {"kernel": release, "boot_to_ready_s": round(boot_s, 2),
              "modules_loaded": [m.split()[0] for m in loaded], "results": rows}
    (report_dir / "run.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(rows, ["heap", "size", "count", "ok", "p50_us", "p99_us", "max_us",
                        "alloc_fail", "not_zero", "bad_data"])
    (report_dir / "run.txt").write_text(text + "\n")
    print(f"kernel {release}, boot to ready {boot_s:.1f}s, "
          f"modules loaded: {len(loaded)}")
    print(text)
    runner.info(f"report: {report_dir / 'run.json'}")
    if failed or not rows:
        raise CheckFailed("on-target run failed: " + ("; ".join(failed) or "no results"))
    return report_dir / "run.json"
