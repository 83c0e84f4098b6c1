"""``gcma flash``: put the kernel and the GCMA modules on a Cuttlefish or a
device, as commands that ``--dry-run`` prints instead of running.

- **Cuttlefish** (a target whose adb serial is a local Cuttlefish's): one
  ``launch_cvd`` (or ``cvd start``) with ``-kernel_path``, ``-initramfs_path``
  (the GKI build's initramfs with every module of the manifest added after
  its own: Cuttlefish's first stage loads them all) and
  ``-extra_kernel_cmdline`` with one ``reserve_mem=`` per area and
  gcma_area's parameters. ``--restart`` stops the running instance first
  (``stop_cvd``).
- **A device**: ``adb reboot fastboot`` (fastbootd, where the logical
  partitions are), ``fastboot flash vendor_dlkm IMAGE``, ``fastboot reboot``.
  Our image holds only the GCMA modules, so flashing it replaces whatever the
  partition held: ``--replace-partition`` says that is meant (a board whose
  vendor_dlkm is ours alone); otherwise flash the vendor_dlkm your Android
  build made with ``android/gcma_board.mk`` (``--vendor-dlkm IMAGE``).
- **vendor_boot is not written.** Its header v3 and v4 images carry the
  device's own DTB, ramdisk fragments and command line, so a fragment can
  only be added by repacking the device's image (mkbootimg from the vendor
  tree); v0-v2 boot images have no vendor ramdisk at all. The
  ``vendor_ramdisk`` modules reach a device through that repack, or as the
  Cuttlefish initramfs.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gcma import runner
from gcma.errors import UserError
from gcma.targets import CUTTLEFISH_SERIAL, TargetSpec

#: The reserve_mem alignment of an area: its heap's largest alignment (1 MiB)
#: and a GCMA range's, with room to spare.
RESERVE_ALIGN = "4M"


@dataclass
class Plan:
    """What flashing does: each command, in order, and what to know first."""

    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def script(self) -> str:
        return "\n".join(shlex.join(c) for c in self.commands) + "\n"


#: A local Cuttlefish's adbd: instance N listens on 6520 + N - 1.
_CUTTLEFISH = re.compile(r"^(0\.0\.0\.0|127\.0\.0\.1|localhost):65[2-9][0-9]$")


def is_cuttlefish(spec: TargetSpec) -> bool:
    serial = spec.serial or ""
    return spec.transport == "adb" and (serial == CUTTLEFISH_SERIAL
                                        or _CUTTLEFISH.match(serial) is not None)


def kernel_cmdline(spec: TargetSpec, size: str) -> str:
    """One reserve_mem= per area, and gcma_area's parameters (module
    parameters on the command line apply when first-stage init loads it)."""
    if spec.area_source != "reserve_mem" or not spec.area_names:
        raise UserError(f"target {spec.name}: a Cuttlefish has no device tree of ours; "
                        "give it reserve_mem areas in targets.yaml "
                        "(areas: {source: reserve_mem, names: [...]})")
    areas = [f"reserve_mem={size}:{RESERVE_ALIGN}:{n}" for n in spec.area_names]
    params = [f"gcma_area.{p}" for p in spec.module_params("gcma_area").split()]
    return " ".join(areas + params)


def cuttlefish_plan(spec: TargetSpec, kernel: Path, initramfs: Path, area_size: str,
                    restart: bool) -> Plan:
    if not kernel.is_file():
        raise UserError(f"no kernel image {kernel} (give --kernel: the GKI build's bzImage)")
    plan = Plan()
    launch = shutil.which("launch_cvd")
    # The newer cvd front end only where it is all there is.
    use_cvd = not launch and shutil.which("cvd") is not None
    if not launch and not use_cvd:
        plan.notes.append("neither launch_cvd nor cvd is on PATH: the commands assume "
                          "launch_cvd (host package of Cuttlefish)")
    if restart:
        plan.commands.append(["cvd", "stop"] if use_cvd else ["stop_cvd"])
    flags = ["--daemon", f"--kernel_path={kernel}", f"--initramfs_path={initramfs}",
             f"--extra_kernel_cmdline={kernel_cmdline(spec, area_size)}"]
    plan.commands.append(["cvd", "start", *flags] if use_cvd else ["launch_cvd", *flags])
    return plan


def device_plan(spec: TargetSpec, image: Path, ours: bool, replace_partition: bool) -> Plan:
    if not image.is_file():
        raise UserError(f"no vendor_dlkm image {image} (gcma image vendor-dlkm)")
    if ours and not replace_partition:
        raise UserError("our vendor_dlkm image holds only the GCMA modules and would replace "
                        "the whole partition: pass --replace-partition if that is meant, or "
                        "--vendor-dlkm with the image your Android build made "
                        "(android/gcma_board.mk)")
    serial = ["-s", spec.serial] if spec.serial else []
    plan = Plan(commands=[["adb", *serial, "reboot", "fastboot"],
                          ["fastboot", *serial, "flash", "vendor_dlkm", str(image)],
                          ["fastboot", *serial, "reboot"]])
    plan.notes.append("vendor_boot is not written: header v3/v4 images must be repacked "
                      "from the device's own (mkbootimg), and v0-v2 have no vendor ramdisk")
    return plan


def run(plan: Plan, timeout: float = 600.0) -> None:
    """Each command in turn; the first that fails stops the flash."""
    for command in plan.commands:
        if shutil.which(command[0]) is None:
            raise UserError(f"{command[0]} is not on PATH (needed for: {shlex.join(command)})")
        runner.run(command, timeout=timeout)
