"""Build the GKI-equivalent kernel for the emulated target.

Steps, each skipped when its inputs have not changed:
unpack Debian's linux-source tarball -> apply gki/patches/series ->
merge gki/configs/*.config onto allnoconfig -> olddefconfig -> verify every
requested symbol -> make Image modules (ccache) -> metadata.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gcma import paths, runner
from gcma.build import kconfig, patches
from gcma.build.toolchain import Toolchain
from gcma.errors import CommandFailed, UserError

DEBIAN_PACKAGE = "linux-source-6.12"
DEFAULT_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
SOURCE_STAMP = ".gcma-source.json"
CONFIG_STAMP = ".gcma-config-inputs"
#: Step timeouts, s: unpacking the source, and a cold build of one variant
#: (about 13 min on 2 cores here; generous for slower machines).
UNPACK_TIMEOUT = 1800.0
BUILD_TIMEOUT = 4 * 3600.0


@dataclass(frozen=True)
class KernelPaths:
    root: Path
    src_parent: Path

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def image(self) -> Path:
        return self.build / "arch" / "arm64" / "boot" / "Image"

    @property
    def headers(self) -> Path:
        """UAPI headers (make headers_install)."""
        return self.build / "usr" / "include"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata.json"

    @property
    def log(self) -> Path:
        return paths.logs_dir() / f"{self.root.name}-build.log"


#: "default" is the kernel the target runs; other variants add
#: gki/configs/variants/<name>.config (e.g. "debug": lockdep, DEBUG_VM).
DEFAULT_VARIANT = "default"
#: The variants CI builds and tests; the others (kasan) are nightly runs.
CI_VARIANTS = (DEFAULT_VARIANT, "debug")


def variant_cmdline(variant: str) -> str:
    """What a variant needs on the kernel command line, from
    gki/configs/variants/<variant>.cmdline (comments and blank lines aside)."""
    path = paths.PROJECT / "gki/configs/variants" / f"{variant}.cmdline"
    if not path.exists():
        return ""
    words = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return " ".join(w for w in words if w)


def variants() -> list[str]:
    extra = sorted(p.stem for p in (paths.PROJECT / "gki/configs/variants").glob("*.config"))
    return [DEFAULT_VARIANT, *extra]


def kernel_paths(variant: str = DEFAULT_VARIANT) -> KernelPaths:
    """Each variant has its own build folder; they share the source tree."""
    if variant not in variants():
        raise UserError(f"unknown kernel variant {variant!r} (known: {', '.join(variants())})")
    suffix = "" if variant == DEFAULT_VARIANT else f"-{variant}"
    return KernelPaths(paths.out_dir() / f"kernel{suffix}", paths.out_dir() / "kernel" / "src")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def debian_package_version(tarball: Path) -> str | None:
    """Version of the Debian package that owns ``tarball``, if one does."""
    try:
        owner = runner.output(["dpkg-query", "-S", str(tarball)]).split(":")[0]
        return runner.output(["dpkg-query", "-W", "-f", "${Version}", owner])
    except Exception:  # noqa: BLE001 - not from a package: nothing to record
        return None


def tree_version(tree: Path) -> str:
    """6.12.117 and the like, from the top Makefile."""
    fields = {}
    for line in (tree / "Makefile").read_text().splitlines()[:10]:
        if m := re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line):
            fields[m.group(1)] = m.group(2)
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields.get("SUBLEVEL", "0") != "0":
        version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def reproducible_vars(tarball: Path) -> list[str]:
    """Make variables that keep the build's own identity out of the Image.

    Without them the Image carries who built it, on which host, when, and a
    counter bumped by every link ("#7 SMP Thu Nov 26 ..."), so its hash
    changes with nothing else changed. The timestamp is the source tarball's
    (dpkg gives every installation the same mtime). Paths need no prefix
    map: objects are named relative to the build folder (out/kernel/src from
    out/kernel/build) and -fmacro-prefix-map strips the source tree from
    __FILE__.
    """
    stamp = datetime.fromtimestamp(int(tarball.stat().st_mtime), tz=UTC)
    return [f"KBUILD_BUILD_TIMESTAMP={stamp.strftime('%a %b %d %H:%M:%S UTC %Y')}",
            "KBUILD_BUILD_USER=gcma", "KBUILD_BUILD_HOST=gcma-build",
            "KBUILD_BUILD_VERSION=1"]


def find_tree(kp: KernelPaths) -> Path | None:
    stamp = kp.src_parent / SOURCE_STAMP
    if not stamp.exists():
        return None
    tree = kp.src_parent / json.loads(stamp.read_text())["dir"]
    return tree if tree.is_dir() else None


def unpack(tarball: Path, kp: KernelPaths, log: Path) -> Path:
    """Unpack ``tarball`` unless the same one is unpacked already."""
    if not tarball.is_file():
        hint = (f" (install {DEBIAN_PACKAGE}: ./build.sh setup)"
                if tarball == DEFAULT_TARBALL else "")
        raise UserError(f"kernel source not found: {tarball}{hint}")
    st = tarball.stat()
    identity = {"tarball": str(tarball), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    stamp = kp.src_parent / SOURCE_STAMP
    if stamp.exists():
        recorded = json.loads(stamp.read_text())
        tree = kp.src_parent / recorded["dir"]
        if {k: recorded.get(k) for k in identity} == identity and tree.is_dir():
            return tree
    # Unpacked beside the current tree and checked before anything is removed:
    # a wrong tarball must not cost the trees and builds that exist.
    fresh = kp.src_parent.with_name(kp.src_parent.name + ".new")
    if fresh.exists():
        shutil.rmtree(fresh)
    tmp = fresh / ".unpack"
    tmp.mkdir(parents=True)
    try:
        runner.run(["tar", "-xf", tarball, "-C", tmp], log=log, progress="unpack",
                   timeout=UNPACK_TIMEOUT)
    except CommandFailed as exc:
        shutil.rmtree(fresh)
        raise UserError(f"{tarball}: not a readable tar archive (log: {log})") from exc
    tops = list(tmp.iterdir())
    if len(tops) != 1 or not (tops[0] / "Makefile").is_file() or \
            not (tops[0] / "mm").is_dir():
        shutil.rmtree(fresh)
        raise UserError(f"{tarball}: not a kernel source archive (expected one top-level "
                        f"folder with Makefile and mm/, found {len(tops)} entries)")
    tops[0].rename(fresh / tops[0].name)
    tmp.rmdir()
    # tar keeps the archive's mtimes, which may be older than objects built from
    # another source: a build folder that outlives its source could look up to date.
    # The variants share one source; another tree (bisect-build) has its own.
    shared = kp.src_parent == kernel_paths(DEFAULT_VARIANT).src_parent
    builds = sorted(paths.out_dir().glob("kernel*/build")) if shared else [kp.build]
    for old in (kp.src_parent, *builds):
        if old.exists():
            runner.info(f"removing {old} (new kernel source)")
            shutil.rmtree(old)
    fresh.rename(kp.src_parent)
    tree = kp.src_parent / tops[0].name
    stamp.write_text(json.dumps({**identity, "dir": tree.name}, indent=1) + "\n")
    return tree


def _config_inputs(fragments: list[Path], series: list[patches.Patch], version: str,
                   tc: Toolchain) -> str:
    digest = hashlib.sha256()
    digest.update(version.encode())
    digest.update(" ".join(tc.make_vars()).encode())
    for frag in fragments:
        digest.update(frag.name.encode() + b"\0" + frag.read_bytes())
    for patch in series:
        digest.update(patch.name.encode() + patch.sha256.encode())
    return digest.hexdigest()


def configure(tree: Path, kp: KernelPaths, fragments: list[Path],
              series: list[patches.Patch], version: str, tc: Toolchain, log: Path,
              unchecked: frozenset[str] = frozenset()) -> None:
    """allnoconfig + fragments (merge_config.sh -n), olddefconfig, then verify
    every requested symbol but those in ``unchecked``."""
    if not fragments:
        raise UserError("no config fragments given")
    requests = {name: req for name, req in kconfig.parse_fragments(fragments).items()
                if name not in unchecked}
    inputs = _config_inputs(fragments, series, version, tc)
    stamp = kp.build / CONFIG_STAMP
    dotconfig = kp.build / ".config"
    if not (dotconfig.exists() and stamp.exists() and stamp.read_text().strip() == inputs):
        kp.build.mkdir(parents=True, exist_ok=True)
        runner.run([tree / "scripts/kconfig/merge_config.sh", "-n", "-O", kp.build,
                    *fragments], cwd=tree, env=tc.env(), log=log)
        runner.run(["make", "-C", tree, f"O={kp.build}", *tc.make_vars(), "olddefconfig"],
                   env=tc.env(), log=log)
        stamp.write_text(inputs + "\n")
    problems = kconfig.verify(requests, kconfig.read_dotconfig(dotconfig))
    if problems:
        stamp.unlink(missing_ok=True)
        raise UserError("config symbols did not get the requested value "
                        "(a dependency is missing?):\n  " + "\n  ".join(problems))


def build(tarball: Path = DEFAULT_TARBALL, *, variant: str = DEFAULT_VARIANT,
          patch_dir: Path | None = None, config_dir: Path | None = None,
          tc: Toolchain | None = None, kp: KernelPaths | None = None,
          unchecked: frozenset[str] = frozenset()) -> dict[str, object]:
    """The whole kernel pipeline; returns the metadata it writes.

    ``kp`` builds elsewhere than the variant's folder; ``unchecked`` names
    config symbols not to verify (those a part of the series adds later)."""
    tc = tc or Toolchain()
    kp = kp or kernel_paths(variant)
    patch_dir = patch_dir or paths.PROJECT / "gki" / "patches"
    config_dir = config_dir or paths.PROJECT / "gki" / "configs"
    fragments = sorted(config_dir.glob("*.config"))
    if variant != DEFAULT_VARIANT:
        fragments.append(config_dir / "variants" / f"{variant}.config")
    log = kp.log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    start_history = len(runner.history)
    durations: dict[str, float] = {}

    t = time.monotonic()
    series = patches.read_series(patch_dir)
    tree = unpack(tarball, kp, log)
    durations["unpack"] = time.monotonic() - t
    version = tree_version(tree)
    package_version = debian_package_version(tarball)
    runner.info(f"kernel: Linux {version}"
                + (f" ({DEBIAN_PACKAGE} {package_version})" if package_version else ""))

    t = time.monotonic()
    patches.sync(tree, series, f"{version}" + (f" ({DEBIAN_PACKAGE} {package_version})"
                                               if package_version else ""), log)
    durations["patch"] = time.monotonic() - t

    t = time.monotonic()
    configure(tree, kp, fragments, series, version, tc, log, unchecked)
    durations["config"] = time.monotonic() - t

    t = time.monotonic()
    runner.info(f"kernel: building Image and modules, log in {log}")
    # headers_install: the UAPI headers on-target programs (selftests) build with.
    runner.run(["make", "-C", tree, f"O={kp.build}", *tc.make_vars(),
                *reproducible_vars(tarball), f"-j{tc.jobs}",
                "Image", "modules", "headers_install"], env=tc.env(), log=log, progress="kernel",
               timeout=BUILD_TIMEOUT)
    durations["build"] = time.monotonic() - t

    release = (kp.build / "include/config/kernel.release").read_text().strip()
    uts = (kp.build / "include/generated/utsversion.h").read_text()
    uts_version = re.search(r'UTS_VERSION "([^"]*)"', uts)
    metadata: dict[str, object] = {
        "source": {
            "tarball": str(tarball),
            "sha256": _sha256(tarball),
            "package": DEBIAN_PACKAGE if package_version else None,
            "package_version": package_version,
            "kernel_version": version,
            "tree": str(tree),
        },
        "patches": [{"name": p.name, "sha256": p.sha256} for p in series],
        "config": {
            "fragments": [{"name": f.name, "sha256": _sha256(f)} for f in fragments],
            "sha256": _sha256(kp.build / ".config"),
        },
        "toolchain": {**tc.versions(), "make_vars": tc.make_vars()},
        "kernel": {
            "release": release,
            "uts_version": uts_version.group(1) if uts_version else None,
            "image": str(kp.image),
            "image_sha256": _sha256(kp.image),
            "build_dir": str(kp.build),
        },
        "durations_s": {k: round(v, 2) for k, v in durations.items()},
        "variant": variant,
        "reproducer": " ".join(["gcma", "kernel", "build", "--source", str(tarball),
                                "--variant", variant, "--jobs", str(tc.jobs)]),
        "commands": runner.history[start_history:],
        "python": sys.version.split()[0],
    }
    kp.metadata.write_text(json.dumps(metadata, indent=2) + "\n")
    runner.info(f"kernel: {release} built in {sum(durations.values()):.1f}s -> {kp.image}")
    return metadata
