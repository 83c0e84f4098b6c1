"""The CLI as a user meets it: one-line errors, distinct exit codes, no tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gcma import cli


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
        (["bench", "heaps", "--size", "12X"], "not a size like 4K or 32M"),
        (["bench", "heaps", "--size", "0M"], "not a size like 4K or 32M"),
    ]
    for args, message in cases:
        res = gcma(*args, out=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith(f"gcma: error: {message}") or message in res.stderr, \
            (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
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


def test_internal_error_is_one_line_with_its_own_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A bug of ours is neither a user error (2) nor "a check said no" (1)."""
    from gcma import cli

    def broken(args: object) -> int:
        raise KeyError("oops")

    monkeypatch.setenv("GCMA_OUT", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert cli.main(["doctor"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gcma: internal error: KeyError: 'oops'")
    assert "please report it" in err[0]
    assert "Traceback" in (tmp_path / "logs" / "internal-error.log").read_text()


def test_a_failed_run_still_writes_its_report(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """gcma integrity (and every command run on a target) writes its report
    before it reports the failure."""
    import argparse
    import json

    from gcma import cli
    from gcma.errors import CheckFailed

    class FakeTarget:
        stopped = False

        def __init__(self, name: str) -> None:
            self.name = name

        def start(self, *args: object, **kwargs: object) -> "FakeTarget":
            return self

        def __enter__(self) -> "FakeTarget":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def stop(self) -> None:
            FakeTarget.stopped = True

    def failing(shell: object) -> dict[str, object]:
        raise CheckFailed("page-cache integrity: ext4: 1 mismatches",
                          {"mismatches": 1, "phases": []})

    monkeypatch.setenv("GCMA_OUT", str(tmp_path))
    monkeypatch.setattr(cli, "EmulatedTarget", FakeTarget)
    monkeypatch.setattr(cli.Artefacts, "default", staticmethod(lambda variant, dtb: None))
    args = argparse.Namespace(name="t", variant="default", timeout=1)
    with pytest.raises(CheckFailed, match=r"1 mismatches \(report: .*integrity-default.json\)"):
        cli._on_target(args, failing, "integrity")
    report = json.loads((tmp_path / "report" / "integrity-default.json").read_text())
    assert report == {"mismatches": 1, "phases": []}
    assert FakeTarget.stopped


def test_commands_that_need_no_target_work_without_fabric(tmp_path: Path) -> None:
    """fabric and paramiko are imported only by commands that talk to a target."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fabric', 'paramiko', 'invoke'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from gcma import cli\n"
        "assert cli.main(['target', 'status', '--name', 'nobody']) == 1\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "print('no fabric needed')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, GCMA_OUT=str(tmp_path)), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "no fabric needed" in res.stdout


@pytest.mark.parametrize("argv, want", [
    # Before the action, after it, or not at all: the action's own default.
    (["bench", "--size", "8M", "heaps"], {"size": "8M", "count": 20, "action": "heaps"}),
    (["bench", "heaps", "--size", "8M"], {"size": "8M", "count": 20}),
    (["bench", "heaps"], {"size": "32M", "count": 20}),
    (["bench", "--count", "5", "free-stall"], {"count": 5}),
    (["bench", "free-stall"], {"count": 300}),
    (["bench", "--variant", "debug", "--target", "t1", "--timeout", "60", "cost"],
     {"variant": "debug", "name": "t1", "timeout": 60, "rounds": 5}),
    (["bench", "cost", "--variant", "debug"], {"variant": "debug", "name": "bench"}),
    # The matrix (no action) keeps its own defaults.
    (["bench"], {"size": "16M", "count": 20, "variant": "default", "timeout": 300}),
    (["bench", "--size", "4M"], {"size": "4M", "action": None}),
])
def test_bench_options_hold_before_or_after_the_action(argv: list[str],
                                                       want: dict[str, object]) -> None:
    args = cli.parse_args(argv)
    assert {k: getattr(args, k) for k in want} == want
