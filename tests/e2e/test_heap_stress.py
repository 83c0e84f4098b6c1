"""heap_stress, the on-target allocation driver (device_tests/heap_stress.c):
bursts of buffers from one heap, each timed, mapped, checked zeroed and
pattern-verified, one JSON line per allocation."""

from __future__ import annotations

import itertools
import json

from .conftest import Target, pool_stat

MIB = 1 << 20
OUT = "/tmp/heap_stress.jsonl"


def _lines(target: Target, path: str = OUT) -> list[dict[str, object]]:
    text = target.shell.check(f"cat {path}")
    return [json.loads(line) for line in text.splitlines()]


def test_bursts_on_two_threads_allocate_zeroed_verified_buffers(target: Target) -> None:
    # 2 threads x 4 bursts x 3 buffers, sizes in turn, about 30 fps, held 40 ms.
    res = target.shell.run(f"heap_stress -H camera -s 4M,8M -b 3 -i 33 -h 40 -t 2 -n 4 -o {OUT}",
                           timeout=300)
    assert res.exit_status == 0, res.stderr
    assert "heap=camera allocs=24 ok=24 failed=0 bad=0" in res.stderr
    rows = _lines(target)
    assert len(rows) == 24
    assert all(r["ok"] and r["zeroed"] and r["verified"] and r["errno"] == 0 for r in rows)
    assert all(isinstance(r["lat_ns"], int) and r["lat_ns"] > 0 for r in rows)
    for thread in (0, 1):
        mine = [r for r in rows if r["thread"] == thread]
        assert sorted((r["burst"], r["index"]) for r in mine) == [
            (b, i) for b in range(4) for i in range(3)]
        # Sizes alternate from the thread's own starting point.
        sizes = [r["size"] for r in sorted(mine, key=lambda r: (r["burst"], r["index"]))]
        assert set(sizes) == {4 * MIB, 8 * MIB}
        assert all(a != b for a, b in itertools.pairwise(sizes))
    # Every buffer went back: the whole area is lent to cleancache again.
    assert pool_stat(target, "camera", "donated") == 128 * MIB // 4096


def test_a_failed_allocation_is_recorded_with_its_errno(target: Target) -> None:
    # The camera area is 128 MiB: a 256 MiB buffer cannot exist.
    res = target.shell.run(f"heap_stress -H camera -s 256M -n 1 -o {OUT}", timeout=120)
    assert res.exit_status == 1
    assert "allocs=1 ok=0 failed=1 bad=0" in res.stderr
    (row,) = _lines(target)
    assert row["ok"] is False and row["errno"] == 12  # ENOMEM
    assert row["zeroed"] is None and row["verified"] is None


def test_bad_arguments_get_one_line_and_exit_2(target: Target) -> None:
    cases = {
        "heap_stress -H no-such-heap": "/dev/dma_heap/no-such-heap: No such file or directory",
        "heap_stress -H camera -s 4X": "-s: bad size '4X'",
        "heap_stress -H camera -s 4M,,8M": "-s: bad size ''",
        "heap_stress -H camera -s 0": "-s: bad size '0'",
        "heap_stress -H camera -b 0": "-b 0: must be a number from 1 to 256",
        "heap_stress -H camera -d 100 -n 2": "-d and -n: give one of them",
        "heap_stress -s 4M": "-H: name a heap of /dev/dma_heap",
        "heap_stress -H ../camera": "-H: name a heap of /dev/dma_heap",
        "heap_stress -H camera extra": "unexpected argument 'extra'",
    }
    for command, message in cases.items():
        res = target.shell.run(command, timeout=60)
        assert res.exit_status == 2, command
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (command, res.stderr)
        assert res.stdout == "", command


def test_a_killed_run_leaves_only_whole_lines(target: Target) -> None:
    out = "/tmp/heap_stress-killed.jsonl"
    res = target.shell.run(
        f"heap_stress -H camera -s 1M -b 4 -t 2 -d 60000 -o {out} & pid=$!; "
        "sleep 3; kill -KILL $pid; wait $pid; echo status=$?", timeout=120)
    assert "status=137" in res.stdout
    rows = _lines(target, out)  # json.loads fails on a torn line
    assert rows, "nothing was recorded in 3 s"
    assert all(r["ok"] and r["verified"] for r in rows)
    # The killed process's buffers were released with its files.
    target.shell.check("sleep 1")
    assert pool_stat(target, "camera", "donated") == 128 * MIB // 4096
