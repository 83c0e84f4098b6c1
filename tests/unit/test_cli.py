"""The CLI as a user meets it: one-line errors, distinct exit codes, no tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def gcma(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GCMA_OUT=str(out))
    return subprocess.run([sys.executable, "-m", "gcma", *args], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("args", [
    ["frobnicate"],
    ["kernel", "build", "--jobs", "0"],
    ["kernel", "build", "--jobs", "many"],
    ["target", "start", "--timeout", "-5"],
    ["target"],
])
def test_bad_arguments_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    res = gcma(*args, out=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    cases = [
        (["kernel", "build", "--source", str(tmp_path / "nope.tar.xz")], "kernel source not found"),
        (["target", "shell", "--", "true"], "target default is not running"),
        (["target", "start", "--name", "Bad Name"], "bad target name"),
        (["dtb", "build", "--overlay", str(tmp_path / "x.dtso")], "overlay not found"),
        (["dtb", "validate", "--overlay", str(tmp_path / "x.dtso")], "overlay not found"),
        (["kernel", "build", "--variant", "nope"], "invalid choice"),
        (["modules", "build", "--src", str(tmp_path)], "no Kbuild or Makefile"),
        (["target", "push", str(tmp_path / "missing"), "/tmp/x"], "no such file"),
    ]
    for args, message in cases:
        res = gcma(*args, out=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith(f"gcma: error: {message}") or message in res.stderr, \
            (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_status_of_stopped_target(tmp_path: Path) -> None:
    res = gcma("target", "status", "--name", "nobody", out=tmp_path)
    assert res.returncode == 1
    assert res.stdout.strip() == "nobody: stopped"


def test_module_build_against_unbuilt_tree_is_user_error(tmp_path: Path) -> None:
    from gcma import paths
    kdir = tmp_path / "kdir"
    kdir.mkdir()
    res = gcma("modules", "build", "--src", str(paths.PROJECT / "vendor_modules"),
               "--kdir", str(kdir), out=tmp_path)
    assert res.returncode == 2
    assert "no Module.symvers" in res.stderr
