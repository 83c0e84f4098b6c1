"""The emulated target's device tree: QEMU's own DTB plus our overlays.

QEMU generates the virt board's DT from the machine options; we dump it for
exactly the options we boot with, compile our nodes (``dts/*.dtso``) as
overlays with dtc warnings treated as errors, apply them with fdtoverlay, and
check that every reserved region lies inside the machine's RAM (a region
outside RAM crashes the kernel before the console is up).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from gcma import paths, runner
from gcma.errors import UserError
from gcma.targets.machine import Machine

#: QEMU virt puts RAM at 1 GiB.
VIRT_RAM_BASE = 0x40000000
#: QEMU dumping its DTB starts no guest: seconds are plenty.
DUMPDTB_TIMEOUT = 120.0
DEFAULT_OVERLAYS = ("virt-gcma.dtso", "virt-cma-guarantee.dtso")
#: The DTB every target boots by default: our areas, plain CMA, guaranteed CMA.
DEFAULT_DTB = "virt-gcma"
#: The same without the guaranteed CMA pool, for benchmarks that need a kernel
#: with no cleancache pool at boot (GCMA takes a "guarantee" pool at boot).
NO_GUARANTEE_DTB = "virt-gcma-no-guarantee"
NO_GUARANTEE_OVERLAYS = ("virt-gcma.dtso",)

#: Properties that dt-schema does not know yet, with where they come from.
#: A node whose only unknown properties are these is not a schema problem.
PENDING_PROPERTIES = {
    "guarantee": "the Guaranteed CMA series (gki/patches/0006), not yet in "
                 "dt-schema's shared-dma-pool binding",
}

#: An overlay fragment that targets "/" must restate the root's cell sizes for
#: dtc to check the nodes below, and dtc then flags them as unnecessary on the
#: fragment itself. That one check is off; every other warning is an error.
DTC_FLAGS = ("-W", "no-avoid_unnecessary_addr_size", "-@")


def dt_dir() -> Path:
    return paths.out_dir() / "dt"


def compile_overlay(source: Path, dest: Path, log: Path, strict: bool = True) -> None:
    """dtc with every warning fatal: our nodes must be clean. ``strict=False``
    silences the warnings, for test overlays that are malformed on purpose."""
    if not source.is_file():
        raise UserError(f"device-tree overlay not found: {source}")
    quiet = () if strict else ("-q",)
    res = runner.run(["dtc", *DTC_FLAGS, *quiet, "-I", "dts", "-O", "dtb", "-o", dest, source],
                     log=log, check=False, capture=True)
    messages = [ln for ln in res.output.splitlines() if ln.strip()]
    if res.returncode != 0 or messages:
        dest.unlink(missing_ok=True)
        raise UserError(f"dtc rejected {source} (warnings are errors):\n  "
                        + "\n  ".join(messages or [f"exit code {res.returncode}"]))


def _cells(dtb: Path, node: str, prop: str) -> list[int] | None:
    res = runner.run(["fdtget", "-t", "x", dtb, node, prop], check=False, capture=True)
    if res.returncode != 0:
        return None
    return [int(v, 16) for v in res.output.split()]


def _ranges(cells: list[int]) -> list[tuple[int, int]]:
    """(start, size) pairs from 2-cell address, 2-cell size values."""
    out = []
    for i in range(0, len(cells) - 3, 4):
        out.append(((cells[i] << 32) | cells[i + 1], (cells[i + 2] << 32) | cells[i + 3]))
    return out


def reserved_regions(dtb: Path) -> dict[str, list[tuple[int, int]]]:
    """Each /reserved-memory child's static (reg) or allowed (alloc-ranges) ranges."""
    res = runner.run(["fdtget", "-l", dtb, "/reserved-memory"], check=False, capture=True)
    if res.returncode != 0:
        return {}
    regions = {}
    for child in res.output.split():
        node = f"/reserved-memory/{child}"
        cells = _cells(dtb, node, "reg") or _cells(dtb, node, "alloc-ranges") or []
        regions[child] = _ranges(cells)
    return regions


def check_inside_ram(regions: dict[str, list[tuple[int, int]]], machine: Machine) -> list[str]:
    ram_end = VIRT_RAM_BASE + machine.memory_mib * 1024 * 1024
    problems = []
    for name, ranges in regions.items():
        for start, size in ranges:
            if start < VIRT_RAM_BASE or start + size > ram_end:
                problems.append(f"/reserved-memory/{name}: {start:#x}+{size:#x} lies outside "
                                f"RAM {VIRT_RAM_BASE:#x}-{ram_end - 1:#x} "
                                f"(-m {machine.memory_mib})")
    return problems


def _existing_overlays(overlays: list[Path] | None) -> list[Path]:
    """``overlays`` (default: :data:`DEFAULT_OVERLAYS`), each checked to exist."""
    if overlays is None:
        overlays = [paths.PROJECT / "dts" / o for o in DEFAULT_OVERLAYS]
    for overlay in overlays:
        if not overlay.is_file():
            raise UserError(f"device-tree overlay not found: {overlay}")
    return overlays


def build(machine: Machine, overlays: list[Path] | None = None,
          name: str = "virt-gcma", check_ram: bool = True, strict: bool = True) -> Path:
    """Dump, overlay, check; returns the DTB path (with a .json of its machine).

    ``check_ram=False`` is for test DTBs that put a region outside RAM on
    purpose, ``strict=False`` for those whose property values are wrong on
    purpose (dtc's warnings silenced).
    """
    out = dt_dir()
    out.mkdir(parents=True, exist_ok=True)
    log = paths.logs_dir() / f"dt-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    # The user's input first, before any tool runs.
    overlays = _existing_overlays(overlays)
    base = out / f"virt-base-{machine.fingerprint()}.dtb"
    if not base.exists():
        runner.run(machine.dumpdtb_args(str(base)), log=log, timeout=DUMPDTB_TIMEOUT)
    dtbos = []
    for overlay in overlays:
        dtbo = out / (overlay.stem + ".dtbo")
        compile_overlay(overlay, dtbo, log, strict=strict)
        dtbos.append(dtbo)
    dtb = out / f"{name}.dtb"
    if dtbos:
        runner.run(["fdtoverlay", "-i", base, "-o", dtb, *dtbos], log=log)
    else:
        # QEMU's own tree alone (fdtoverlay wants at least one overlay),
        # packed as fdtoverlay packs its output: the dump is padded to 1 MiB,
        # which the guest does not boot with.
        runner.run(["dtc", "-q", "-I", "dtb", "-O", "dtb", "-o", dtb, base], log=log)
    problems = check_inside_ram(reserved_regions(dtb), machine) if check_ram else []
    if problems:
        raise UserError("reserved memory outside the target's RAM:\n  " + "\n  ".join(problems))
    # A readable copy for people; QEMU's own nodes make dtc warn here, harmlessly.
    runner.run(["dtc", "-q", "-I", "dtb", "-O", "dts", "-o", out / f"{name}.dts", dtb], log=log)
    (out / f"{name}.json").write_text(json.dumps(
        {"machine": asdict(machine), "fingerprint": machine.fingerprint(),
         "overlays": [str(o) for o in overlays]}, indent=2) + "\n")
    runner.info(f"dtb: {dtb}")
    return dtb


def machine_of(dtb: Path) -> dict[str, object]:
    sidecar = dtb.with_suffix(".json")
    if not sidecar.exists():
        raise UserError(f"{dtb}: no {sidecar.name}; build it with 'gcma dtb build'")
    return dict(json.loads(sidecar.read_text()))


BINDINGS = paths.PROJECT / "dts" / "bindings"
#: The smallest tree our overlays apply to: schema checks then see our nodes
#: only, not QEMU's (whose properties dtschema cannot type from a DTB).
_SCHEMA_BASE = """/dts-v1/;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	compatible = "linux,dummy-virt";
	model = "gcma binding check";
};
"""


def _dtschema_tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def processed_schema(log: Path) -> Path:
    """dtschema's core schemas plus ours (dts/bindings), preprocessed once."""
    out = dt_dir() / "schema.json"
    digest = hashlib.sha256()
    for f in sorted(BINDINGS.glob("*.yaml")):
        digest.update(f.name.encode() + f.read_bytes())
    stamp = dt_dir() / "schema.sha256"
    if out.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for binding in sorted(BINDINGS.glob("*.yaml")):
        res = runner.run([_dtschema_tool("dt-doc-validate"), "-u", BINDINGS, binding],
                         log=log, check=False, capture=True)
        if res.returncode != 0 or res.output.strip():
            raise UserError(f"binding {binding} is not a valid schema:\n{res.output.strip()}")
    # Without -u: the core schemas (reserved-memory among them) and ours.
    res = runner.run([_dtschema_tool("dt-mk-schema"), "-j", BINDINGS, "-o", out],
                     log=log, check=False, capture=True)
    if res.returncode != 0:
        out.unlink(missing_ok=True)
        raise UserError(f"dt-mk-schema failed:\n{res.output.strip()[-2000:]}")
    stamp.write_text(digest.hexdigest())
    return out


def validate(overlays: list[Path] | None = None) -> list[str]:
    """Schema problems of our overlays' nodes (empty: valid)."""
    overlays = _existing_overlays(overlays)
    out = dt_dir() / "schema-check"
    out.mkdir(parents=True, exist_ok=True)
    log = paths.logs_dir() / "dt-validate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    schema = processed_schema(log)
    base_src = out / "base.dts"
    base_src.write_text(_SCHEMA_BASE)
    runner.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", out / "base.dtb", base_src],
               log=log)
    dtbos = []
    for overlay in overlays:
        dtbo = out / (overlay.stem + ".dtbo")
        compile_overlay(overlay, dtbo, log)
        dtbos.append(dtbo)
    merged = out / "checked.dtb"
    runner.run(["fdtoverlay", "-i", out / "base.dtb", "-o", merged, *dtbos], log=log)
    res = runner.run([_dtschema_tool("dt-validate"), "-s", schema, merged], log=log,
                     check=False, capture=True)
    reported = [ln.split(".dtb: ", 1)[-1] for ln in res.output.splitlines()
                if ln.strip() and not ln.lstrip().startswith("from schema")]
    if res.returncode != 0 and not reported:
        return [f"dt-validate failed with exit code {res.returncode}"]
    return [p for p in reported if not _only_pending(p)]


_UNEXPECTED = re.compile(r"Unevaluated properties are not allowed \((.*) (?:was|were) unexpected\)")


def _only_pending(problem: str) -> bool:
    """True for a complaint about properties in :data:`PENDING_PROPERTIES` only."""
    m = _UNEXPECTED.search(problem)
    if not m:
        return False
    names = re.findall(r"'([^']+)'", m.group(1))
    return bool(names) and all(n in PENDING_PROPERTIES for n in names)
