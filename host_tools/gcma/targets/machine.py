"""The emulated target's machine: one definition for dumping the DTB and booting.

QEMU's virt board generates its device tree from the machine options, so the
DTB we extend must be dumped with exactly the options we boot with (-smp in
particular: QEMU does not rewrite CPU nodes of a supplied DTB).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

#: Where the virt board's PL011 sits; earlycon shows crashes before the console driver.
PL011_BASE = 0x9000000


@dataclass(frozen=True)
class Machine:
    qemu: str = "qemu-system-aarch64"
    machine: str = "virt"
    cpu: str = "max"
    smp: int = 2
    memory_mib: int = 1024

    def base_args(self) -> list[str]:
        return [self.qemu, "-M", self.machine, "-cpu", self.cpu,
                "-smp", str(self.smp), "-m", str(self.memory_mib)]

    def dumpdtb_args(self, dest: str) -> list[str]:
        return [self.qemu, "-M", f"{self.machine},dumpdtb={dest}", "-cpu", self.cpu,
                "-smp", str(self.smp), "-m", str(self.memory_mib), "-display", "none"]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


VIRT = Machine()
