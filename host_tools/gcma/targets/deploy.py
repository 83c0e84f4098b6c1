"""Deploy built modules to a target over any transport, and prove they loaded.

``deploy`` pushes a module folder (``.ko`` files and ``modules.load``) to the
target's install path and loads the modules in ``modules.load`` order with
the target's parameters. Each module is then checked: it is in
``/proc/modules``, the build-id the kernel recorded
(``/sys/module/<name>/notes/.note.gnu.build-id``) is the one of the file we
pushed, and the target's heaps appear in ``/dev/dma_heap``. The kernel log
since the first load comes back with the result.

Unchanged modules (same build-id loaded, same parameters) are left alone.
A changed module is reloaded together with every module loaded after it
(they may depend on it). A failure unloads what this deploy loaded, in
reverse, and reports the kernel log lines that say why.

gcma_heap cannot be unloaded (dma-buf heaps have no removal), so a changed
gcma_heap, or a changed module that it depends on, needs a reboot; that is
said plainly instead of attempted.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcma import runner
from gcma.checks import klog
from gcma.errors import CheckFailed, TargetError, UserError
from gcma.targets import TargetSpec
from gcma.targets.transport import Transport

#: The record of the last deploy, in the install path.
RECORD = ".gcma-deploy.json"
#: Seconds heaps may take to appear after the modules load.
HEAP_WAIT = 10.0
#: Kernel log lines that explain a failed load.
_RELEVANT = re.compile(r"gcma|insmod|module|Unknown symbol|disagrees about|avc: +denied|"
                       r"taint|reserved[- ]mem|dma.heap", re.IGNORECASE)


class NeedsReboot(UserError):
    """A loaded module that must be replaced cannot be unloaded."""


@dataclass(frozen=True)
class LocalModule:
    name: str
    path: Path
    build_id: str
    sha256: str


@dataclass
class DeployResult:
    target: str
    action: str  # "unchanged", "loaded"
    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    heaps: list[str] = field(default_factory=list)
    kernel_log: list[str] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)
    rebooted: bool = False
    seconds: float = 0.0


def build_id(ko: Path) -> str:
    """The GNU build-id of an ELF file, as hex ('' if it has none)."""
    data = ko.read_bytes()
    # NT_GNU_BUILD_ID notes: namesz=4, descsz, type=3, "GNU\0", desc.
    for m in re.finditer(rb"\x04\x00\x00\x00(.)\x00\x00\x00\x03\x00\x00\x00GNU\x00", data,
                         re.DOTALL):
        size = m.group(1)[0]
        return data[m.end():m.end() + size].hex()
    return ""


def local_modules(dist: Path) -> list[LocalModule]:
    order = dist / "modules.load"
    if not order.exists():
        raise UserError(f"{dist}: no modules.load (build the modules first: gcma modules build)")
    mods = []
    for line in order.read_text().split():
        ko = dist / line
        if not ko.exists():
            raise UserError(f"{order} names {line}, which is not in {dist}")
        mods.append(LocalModule(ko.stem.replace("-", "_"), ko, build_id(ko),
                                hashlib.sha256(ko.read_bytes()).hexdigest()))
    return mods


def _loaded_build_ids(t: Transport, names: list[str]) -> dict[str, str | None]:
    """name -> build-id of the loaded module ('' if it has none), None if not loaded."""
    script = ("for m in " + " ".join(names) + "; do "
              "if [ -d /sys/module/$m/sections ] || grep -q \"^$m \" /proc/modules; then "
              "n=/sys/module/$m/notes/.note.gnu.build-id; "
              "if [ -r $n ]; then echo \"$m $(od -An -v -tx1 $n | tr -d ' \\n')\"; "
              "else echo \"$m -\"; fi; else echo \"$m none\"; fi; done")
    out = t.check(script, timeout=60)
    result: dict[str, str | None] = {}
    for line in out.splitlines():
        name, _, note = line.partition(" ")
        if note == "none":
            result[name] = None
        elif note == "-":
            result[name] = ""
        else:
            # The note as the kernel keeps it: 12 header bytes, "GNU\0", the id.
            result[name] = note[32:]
    return result


def _read_record(t: Transport, path: str) -> dict[str, Any]:
    res = t.run(f"cat {shlex.quote(path)} 2>/dev/null", timeout=30)
    try:
        return dict(json.loads(res.stdout)) if res.ok and res.stdout.strip() else {}
    except ValueError:
        return {}


def _write_record(t: Transport, path: str, record: dict[str, Any]) -> None:
    t.check(f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && "
            f"echo {shlex.quote(json.dumps(record))} > {shlex.quote(path)}", timeout=30)


def _dmesg_lines(t: Transport) -> list[str]:
    return t.check("dmesg", timeout=60).splitlines()


def _why(log: list[str]) -> list[str]:
    lines = [ln for ln in log if _RELEVANT.search(ln)]
    lines += [f.line for f in klog.scan("\n".join(log)) if f.line not in lines]
    return lines[-30:]


def _unload(t: Transport, mods: list[LocalModule]) -> list[str]:
    """rmmod in the order given; returns the names unloaded. A module that
    cannot go is a UserError naming it and why."""
    done = []
    for mod in mods:
        res = t.run(f"rmmod {mod.name}", timeout=60)
        if res.ok:
            done.append(mod.name)
            continue
        refs = t.run(f"grep '^{mod.name} ' /proc/modules", timeout=30).stdout.strip()
        why = (res.stderr or res.stdout).strip()
        if "[permanent]" in refs:
            raise NeedsReboot(f"{mod.name} is loaded and cannot be unloaded (a dma-buf heap "
                              f"has no removal): reboot the target and deploy again "
                              f"(gcma deploy --reboot does both)")
        raise UserError(f"cannot unload {mod.name} to replace it: {why or 'in use'} "
                        f"({refs}); free its buffers and users first")
    return done


def deploy(t: Transport, spec: TargetSpec, dist: Path) -> DeployResult:
    t0 = time.monotonic()
    mods = local_modules(dist)
    result = DeployResult(target=spec.name, action="unchanged")
    if hasattr(t, "root"):
        t.root()  # type: ignore[attr-defined]
    install = spec.install_path.rstrip("/")
    record_path = f"{install}/{RECORD}"
    loaded = _loaded_build_ids(t, [m.name for m in mods])
    record = _read_record(t, record_path)
    previous = record.get("modules", {}) if isinstance(record.get("modules"), dict) else {}

    def changed(mod: LocalModule) -> bool:
        """Not loaded, another build loaded, or loaded from another file (a
        re-signed module keeps its build-id) or with other parameters."""
        entry = previous.get(mod.name)
        entry = entry if isinstance(entry, dict) else {}
        return (loaded.get(mod.name) != mod.build_id
                or entry.get("sha256", mod.sha256) != mod.sha256
                or entry.get("params", "") != spec.module_params(mod.name))

    first = next((i for i, m in enumerate(mods) if changed(m)), None)
    record = {"modules": {**previous, **{
        m.name: {"build_id": m.build_id, "sha256": m.sha256,
                 "params": spec.module_params(m.name)} for m in mods}}}
    if first is None:
        if record["modules"] != previous:  # first sight of modules loaded otherwise
            _write_record(t, record_path, record)
        result.heaps = _heaps(t, spec)
        result.seconds = time.monotonic() - t0
        runner.info(f"deploy {spec.name}: {len(mods)} modules unchanged, nothing to do")
        return result

    redo = mods[first:]
    result.unloaded = _unload(t, [m for m in reversed(redo) if loaded.get(m.name) is not None])
    t.check(f"mkdir -p {shlex.quote(install)}", timeout=30)
    remote_sums = t.run(f"cd {shlex.quote(install)} && sha256sum "
                        + " ".join(m.path.name for m in redo) + " 2>/dev/null", timeout=60).stdout
    for mod in redo:
        if f"{mod.sha256}  {mod.path.name}" in remote_sums:
            continue
        runner.info(f"deploy {spec.name}: push {mod.path} -> {install}/{mod.path.name}")
        t.push(mod.path, f"{install}/{mod.path.name}")
        result.pushed.append(mod.path.name)
    check = t.check(f"cd {shlex.quote(install)} && sha256sum "
                    + " ".join(m.path.name for m in redo), timeout=60)
    for mod in redo:
        if f"{mod.sha256}  {mod.path.name}" not in check:
            raise TargetError(f"{install}/{mod.path.name} on {spec.name} does not match "
                              f"{mod.path} after the push")

    mark = len(_dmesg_lines(t))
    result.action = "loaded"
    try:
        for mod in redo:
            params = spec.module_params(mod.name)
            command = f"insmod {shlex.quote(f'{install}/{mod.path.name}')} {params}".strip()
            runner.info(f"deploy {spec.name}: {command}")
            res = t.run(command, timeout=120)
            if not res.ok:
                raise CheckFailed(f"{command} failed: {(res.stderr or res.stdout).strip()}")
            result.loaded.append(mod.name)
        now = _loaded_build_ids(t, [m.name for m in redo])
        for mod in redo:
            if now.get(mod.name) is None:
                raise CheckFailed(f"{mod.name} is not in /proc/modules after insmod")
            if mod.build_id and now[mod.name] != mod.build_id:
                raise CheckFailed(f"{mod.name}: the kernel runs build-id {now[mod.name]}, "
                                  f"not the pushed {mod.build_id}")
        result.heaps = _wait_heaps(t, spec)
    except (CheckFailed, TargetError) as exc:
        log = _dmesg_lines(t)[mark:]
        rolled = []
        for name in reversed(result.loaded):
            if t.run(f"rmmod {name}", timeout=60).ok:
                rolled.append(name)
        denied = any("avc:" in ln and "denied" in ln for ln in log)
        hint = ("\nSELinux denied it: on a userdebug build, 'adb shell setenforce 0' or a "
                "policy that allows module loading" if denied else "")
        lines = "\n".join(f"  {ln}" for ln in _why(log)) or "  (nothing in the kernel log)"
        raise CheckFailed(f"deploy {spec.name}: {exc}\nunloaded again: "
                          f"{', '.join(rolled) or 'nothing'}; kernel log since the load:\n"
                          f"{lines}{hint}") from None
    result.kernel_log = _dmesg_lines(t)[mark:]
    findings = klog.scan("\n".join(result.kernel_log))
    if findings:
        raise CheckFailed(f"deploy {spec.name}: the kernel reported {findings[0].kind} while "
                          f"loading: {findings[0].line}")
    _write_record(t, record_path, record)
    result.seconds = time.monotonic() - t0
    return result


def with_skipped(cmdline: str, names: list[str]) -> str:
    """``cmdline`` whose gcma.skip= also names ``names`` (the emulated target's
    start-up then leaves those modules of its initramfs unloaded)."""
    words = cmdline.split()
    skip: list[str] = []
    for w in words:
        if w.startswith("gcma.skip="):
            skip += [n for n in w.removeprefix("gcma.skip=").split(",") if n]
    skip += [n for n in names if n not in skip]
    rest = [w for w in words if not w.startswith("gcma.skip=")]
    return " ".join([*rest, f"gcma.skip={','.join(skip)}"])


def reboot(spec: TargetSpec, dist: Path) -> None:
    """Reboot so that no module of ``dist`` is loaded; then deploy again."""
    names = [m.name for m in local_modules(dist)]
    if spec.transport == "emulated":
        from gcma.targets.emulated import EmulatedTarget

        emu = EmulatedTarget(spec.instance or spec.name)
        state = emu.state() or {}
        runner.info(f"deploy {spec.name}: restarting the emulated target without "
                    f"{', '.join(names)}")
        emu.restart(with_skipped(str(state.get("extra_cmdline", "")), names))
        return
    from gcma import targets

    with targets.connect(spec) as t:
        runner.info(f"deploy {spec.name}: rebooting")
        if hasattr(t, "reboot"):
            t.reboot()  # type: ignore[attr-defined]
        else:
            raise UserError(f"target {spec.name}: reboot it by hand ({spec.transport}), "
                            f"then deploy again")


#: The smoke test: a few buffers of each heap, zeroed, written and read back.
SMOKE_PROGRAM = "heap_alloc"
SMOKE_ARGS = "-s 1M -n 4"


def smoke(t: Transport, spec: TargetSpec, heaps: list[str], program: Path) -> list[str]:
    """heap_alloc on each heap (pushed to the install path if the target
    lacks it); its summary lines. A failure is a CheckFailed."""
    if not heaps:
        raise CheckFailed(f"smoke test on {spec.name}: no heap to test (set 'heaps' in "
                          f"targets.yaml)")
    run = SMOKE_PROGRAM
    if not t.run(f"command -v {SMOKE_PROGRAM}", timeout=30).ok:
        if not program.exists():
            raise UserError(f"{program} not built (gcma build)")
        run = f"{spec.install_path.rstrip('/')}/bin/{SMOKE_PROGRAM}"
        t.push(program, run, mode=0o755)
    lines = []
    for heap in heaps:
        command = f"{run} {SMOKE_ARGS} {shlex.quote(heap)}"
        runner.info(f"smoke {spec.name}: {command}")
        res = t.run(command, timeout=300)
        lines += [ln for ln in res.stdout.splitlines() if ln.strip()]
        if not res.ok:
            raise CheckFailed(f"smoke test on {spec.name}: {command} exited "
                              f"{res.exit_status}: {(res.stderr or res.stdout).strip()[-500:]}")
    return lines


def _heaps(t: Transport, spec: TargetSpec) -> list[str]:
    out = t.run("ls /dev/dma_heap 2>/dev/null", timeout=30).stdout.split()
    return sorted(h for h in out if h in spec.heaps) if spec.heaps else sorted(out)


def _wait_heaps(t: Transport, spec: TargetSpec) -> list[str]:
    deadline = time.monotonic() + HEAP_WAIT
    while True:
        have = set(t.run("ls /dev/dma_heap 2>/dev/null", timeout=30).stdout.split())
        missing = [h for h in spec.heaps if h not in have]
        if not missing:
            return _heaps(t, spec)
        if time.monotonic() > deadline:
            raise CheckFailed(f"heaps {', '.join(missing)} did not appear in /dev/dma_heap "
                              f"(there: {', '.join(sorted(have)) or 'none'})")
        time.sleep(0.2)
