"""The patch series under gki/patches: parse it, apply it, revert it.

The kernel tree keeps a record of what has been applied (a copy of each patch
under ``.gcma-applied/``). Bringing the tree to a new series reverts only the
patches that changed, from the top, and applies the new ones, so a rebuild
recompiles only the files they touch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from gcma import runner
from gcma.errors import CommandFailed, UserError

APPLIED_DIR = ".gcma-applied"


@dataclass(frozen=True)
class Patch:
    name: str
    path: Path
    sha256: str


def read_series(patch_dir: Path) -> list[Patch]:
    """Patches named in ``series``, in order ('#' comments and blanks ignored)."""
    series = patch_dir / "series"
    if not series.exists():
        return []
    patches = []
    seen: set[str] = set()
    for lineno, raw in enumerate(series.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]
        if name in seen:
            raise UserError(f"{series}:{lineno}: {name} is listed twice")
        seen.add(name)
        path = patch_dir / name
        if not path.is_file():
            raise UserError(f"{series}:{lineno}: no such patch: {path}")
        patches.append(Patch(name, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return patches


def _applied(tree: Path) -> list[dict[str, str]]:
    record = tree / APPLIED_DIR / "applied.json"
    if not record.exists():
        return []
    return list(json.loads(record.read_text()))


def _save(tree: Path, applied: list[dict[str, str]]) -> None:
    record = tree / APPLIED_DIR / "applied.json"
    record.parent.mkdir(exist_ok=True)
    record.write_text(json.dumps(applied, indent=1) + "\n")


def sync(tree: Path, series: list[Patch], version: str, log: Path) -> None:
    """Make ``tree`` carry exactly ``series``.

    A patch that does not apply raises :class:`UserError` naming the patch and
    the kernel version, and leaves the tree as it was before that patch.
    """
    applied = _applied(tree)
    keep = 0
    for done, want in zip(applied, series, strict=False):
        if done["name"] != want.name or done["sha256"] != want.sha256:
            break
        keep += 1
    for done in reversed(applied[keep:]):
        copy = tree / APPLIED_DIR / done["name"]
        runner.info(f"reverting {done['name']}")
        try:
            runner.run(["patch", "-p1", "-R", "--batch", "--quiet", "-i", copy],
                       cwd=tree, log=log)
        except CommandFailed as exc:
            raise UserError(f"cannot revert {done['name']} from the kernel tree {tree} "
                            f"(edited by hand?); remove the tree to start over") from exc
        applied.pop()
        copy.unlink()
        _save(tree, applied)
    for patch in series[keep:]:
        runner.info(f"applying {patch.name}")
        argv: list[str | Path] = ["patch", "-p1", "--forward", "--batch", "-i", patch.path]
        dry = runner.run([*argv, "--dry-run"], cwd=tree, log=log, check=False, capture=True)
        if dry.returncode != 0:
            raise UserError(f"patch {patch.name} does not apply to Linux {version}:\n"
                            f"{dry.output.strip()}")
        runner.run([*argv, "--quiet"], cwd=tree, log=log)
        copy = tree / APPLIED_DIR / patch.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(patch.path.read_bytes())
        applied.append({"name": patch.name, "sha256": patch.sha256})
        _save(tree, applied)
