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
import uuid
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
    script = ("for m in " + " ".join(shlex.quote(n) for n in names) + "; do "
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


def _boot_id(t: Transport) -> str:
    return t.run("cat /proc/sys/kernel/random/boot_id", timeout=30).stdout.strip()


def _read_record(t: Transport, path: str, boot_id: str) -> dict[str, Any]:
    """What the last deploy of this boot loaded: name -> build_id, sha256,
    params. A record of an earlier boot says nothing about what runs now."""
    res = t.run(f"cat {shlex.quote(path)} 2>/dev/null", timeout=30)
    try:
        record = json.loads(res.stdout) if res.ok and res.stdout.strip() else {}
    except ValueError:
        return {}
    if not isinstance(record, dict) or record.get("boot_id") != boot_id:
        return {}
    modules = record.get("modules")
    return {k: v for k, v in modules.items() if isinstance(v, dict)} \
        if isinstance(modules, dict) else {}


def _write_record(t: Transport, path: str, boot_id: str, modules: dict[str, Any]) -> None:
    text = json.dumps({"boot_id": boot_id, "modules": modules})
    t.check(f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && "
            f"printf '%s\\n' {shlex.quote(text)} > {shlex.quote(path)}", timeout=30)


def _dmesg_lines(t: Transport) -> list[str]:
    return t.check("dmesg", timeout=60).splitlines()


def _mark_log(t: Transport) -> tuple[str, int]:
    """A line of ours in the kernel log, and the log's length, to find what
    came after: on a phone the ring buffer is full, and counting lines alone
    would point at the wrong place."""
    token = f"gcma-deploy: start {uuid.uuid4().hex[:12]}"
    t.run(f"echo {shlex.quote(token)} > /dev/kmsg", timeout=30)
    return token, len(_dmesg_lines(t))


def _log_since(t: Transport, mark: tuple[str, int]) -> list[str]:
    lines = _dmesg_lines(t)
    token, count = mark
    for i in range(len(lines) - 1, -1, -1):
        if token in lines[i]:
            return lines[i + 1:]
    return lines[count:]  # /dev/kmsg was not writable: the best we can do


def _quote_params(module: str, params: str) -> str:
    try:
        return " ".join(shlex.quote(w) for w in shlex.split(params))
    except ValueError as exc:
        raise UserError(f"parameters of {module} ({params!r}): {exc}") from None


def _why(log: list[str]) -> list[str]:
    lines = [ln for ln in log if _RELEVANT.search(ln)]
    lines += [f.line for f in klog.scan("\n".join(log)) if f.line not in lines]
    return lines[-30:]


def check_unloadable(modules_text: str, mods: list[LocalModule]) -> None:
    """Before anything changes: each of ``mods`` (loaded ones, to replace)
    can go, its only users being others of ``mods``. ``modules_text`` is
    /proc/modules: name size refcount holders state address."""
    going = {m.name for m in mods}
    table = {f[0]: f for f in (line.split() for line in modules_text.splitlines())
             if len(f) >= 4}
    for mod in mods:
        fields = table.get(mod.name)
        if fields is None:
            continue
        if "[permanent]" in fields[3]:
            raise NeedsReboot(f"{mod.name} is loaded and cannot be unloaded (a dma-buf heap "
                              f"has no removal): reboot the target and deploy again "
                              f"(gcma deploy --reboot does both)")
        holders = [h for h in fields[3].split(",") if h and h != "-" and not h.startswith("[")]
        outside = [h for h in holders if h not in going]
        refcount = int(fields[2]) if fields[2].isdigit() else 0
        if outside or refcount > len(holders):
            users = ", ".join(outside) or f"{refcount - len(holders)} open buffers or files"
            raise UserError(f"cannot unload {mod.name} to replace it: in use by {users}; "
                            f"free its buffers and users first")


def _unload(t: Transport, mods: list[LocalModule]) -> list[str]:
    """rmmod in the order given (check_unloadable said they can go)."""
    done = []
    for mod in mods:
        res = t.run(f"rmmod {shlex.quote(mod.name)}", timeout=60)
        if not res.ok:
            raise TargetError(f"rmmod {mod.name} failed: {(res.stderr or res.stdout).strip()} "
                              f"(unloaded before it: {', '.join(done) or 'nothing'})")
        done.append(mod.name)
    return done


def deploy(t: Transport, spec: TargetSpec, dist: Path) -> DeployResult:
    t0 = time.monotonic()
    mods = local_modules(dist)
    result = DeployResult(target=spec.name, action="unchanged")
    if hasattr(t, "root"):
        t.root()  # type: ignore[attr-defined]
    install = spec.install_path.rstrip("/")
    record_path = f"{install}/{RECORD}"
    boot = _boot_id(t)
    loaded = _loaded_build_ids(t, [m.name for m in mods])
    previous = _read_record(t, record_path, boot)

    def changed(mod: LocalModule) -> bool:
        """Not loaded, another build loaded, or loaded from another file (a
        re-signed module keeps its build-id) or with other parameters."""
        entry = previous.get(mod.name, {})
        return (loaded.get(mod.name) != mod.build_id
                or entry.get("sha256", mod.sha256) != mod.sha256
                or entry.get("params", "") != spec.module_params(mod.name))

    first = next((i for i, m in enumerate(mods) if changed(m)), None)
    record = {**previous, **{m.name: {"build_id": m.build_id, "sha256": m.sha256,
                                      "params": spec.module_params(m.name)} for m in mods}}
    if first is None:
        if record != previous:  # first sight this boot of modules loaded otherwise
            _write_record(t, record_path, boot, record)
        result.heaps = _heaps(t, spec)
        result.seconds = time.monotonic() - t0
        runner.info(f"deploy {spec.name}: {len(mods)} modules unchanged, nothing to do")
        return result

    redo = mods[first:]
    to_unload = [m for m in reversed(redo) if loaded.get(m.name) is not None]
    check_unloadable(t.check("cat /proc/modules", timeout=30), to_unload)
    _push(t, spec, redo, result)
    result.unloaded = _unload(t, to_unload)
    mark = _mark_log(t)
    result.action = "loaded"
    try:
        for mod in redo:
            params = _quote_params(mod.name, spec.module_params(mod.name))
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
        result.kernel_log = _log_since(t, mark)
        findings = klog.scan("\n".join(result.kernel_log))
        if findings:
            raise CheckFailed(f"the kernel reported {findings[0].kind} while loading: "
                              f"{findings[0].line}")
    except (CheckFailed, TargetError) as exc:
        _roll_back(t, spec, result, mark, exc)
    _write_record(t, record_path, boot, record)
    result.seconds = time.monotonic() - t0
    return result


def _push(t: Transport, spec: TargetSpec, mods: list[LocalModule], result: DeployResult) -> None:
    """Copy what the target lacks, and check what it has: before any module
    is unloaded, so that a failed copy changes nothing that runs."""
    install = spec.install_path.rstrip("/")
    names = " ".join(shlex.quote(m.path.name) for m in mods)
    t.check(f"mkdir -p {shlex.quote(install)}", timeout=30)
    there = t.run(f"cd {shlex.quote(install)} && sha256sum {names} 2>/dev/null",
                  timeout=60).stdout
    for mod in mods:
        if f"{mod.sha256}  {mod.path.name}" in there:
            continue
        runner.info(f"deploy {spec.name}: push {mod.path} -> {install}/{mod.path.name}")
        t.push(mod.path, f"{install}/{mod.path.name}", mode=0o644)
        result.pushed.append(mod.path.name)
    check = t.check(f"cd {shlex.quote(install)} && sha256sum {names}", timeout=60)
    for mod in mods:
        if f"{mod.sha256}  {mod.path.name}" not in check:
            raise TargetError(f"{install}/{mod.path.name} on {spec.name} does not match "
                              f"{mod.path} after the push")


def _roll_back(t: Transport, spec: TargetSpec, result: DeployResult,
               mark: tuple[str, int], exc: CheckFailed | TargetError) -> None:
    """Unload, in reverse, what this deploy loaded; raise with the kernel log
    lines that say why (the same error family: a dropped link stays an
    infrastructure error, a refused module a failed check)."""
    try:
        log = _log_since(t, mark)
        rolled = [n for n in reversed(result.loaded)
                  if t.run(f"rmmod {shlex.quote(n)}", timeout=60).ok]
    except TargetError:
        log, rolled = [], []
    denied = any("avc:" in ln and "denied" in ln for ln in log)
    hint = ("\nSELinux denied it: on a userdebug build, 'adb shell setenforce 0' or a "
            "policy that allows module loading" if denied else "")
    lines = "\n".join(f"  {ln}" for ln in _why(log)) or "  (nothing in the kernel log)"
    family = TargetError if isinstance(exc, TargetError) else CheckFailed
    raise family(f"deploy {spec.name}: {exc}\nunloaded again: "
                 f"{', '.join(rolled) or 'nothing'}; kernel log since the load:\n"
                 f"{lines}{hint}") from None


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
        if spec.arch != "arm64":
            raise UserError(f"smoke test on {spec.name}: our {SMOKE_PROGRAM} is built for "
                            f"arm64 and {spec.name} is {spec.arch}; put an {spec.arch} "
                            f"{SMOKE_PROGRAM} on its PATH")
        if not program.exists():
            raise UserError(f"{program} not built (gcma build)")
        run = shlex.quote(f"{spec.install_path.rstrip('/')}/bin/{SMOKE_PROGRAM}")
        t.push(program, run.strip("'"), mode=0o755)
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
