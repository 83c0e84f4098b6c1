"""The whole job: build everything, boot the emulated target, run, report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gcma import dt, kernel, modules, paths, rootfs, runner
from gcma.errors import CheckFailed
from gcma.machine import VIRT
from gcma.report import parse_kv, table
from gcma.target import EmulatedTarget
from gcma.toolchain import Toolchain


def build_all(tc: Toolchain | None = None) -> dict[str, float]:
    """Kernel, vendor modules, DTB, root filesystem; returns durations."""
    durations = {}
    t = time.monotonic()
    kernel.build(tc=tc)
    durations["kernel"] = time.monotonic() - t
    t = time.monotonic()
    modules.build()
    durations["modules"] = time.monotonic() - t
    t = time.monotonic()
    dt.build(VIRT)
    durations["dtb"] = time.monotonic() - t
    t = time.monotonic()
    rootfs.build_initramfs(modules.dist_dir())
    rootfs.build_data_disk()
    durations["rootfs"] = time.monotonic() - t
    return durations


#: The default on-target program: every heap, a few buffer sizes.
DEFAULT_RUNS = (("1M", 20), ("4M", 10), ("16M", 5))


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
