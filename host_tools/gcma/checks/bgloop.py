"""A shell loop run in the background on a target, beside a check: it
counts its rounds, and stops between two rounds when asked (or is killed
when it does not, which the caller hears of)."""

from __future__ import annotations

from gcma.targets.transport import Transport


def start(t: Transport, folder: str, body: str) -> None:
    """Run ``body`` round after round until :func:`stop`; ``folder`` (made
    anew) holds its pid, its round count and the stop and done marks. A loop
    left there by an aborted run is killed first."""
    t.run(f"[ -f {folder}/pid ] && kill $(cat {folder}/pid) 2>/dev/null; true")
    t.check(f"rm -rf {folder} && mkdir -p {folder}")
    t.check(f"(n=0; while [ ! -e {folder}/stop ]; do {body}; n=$((n+1)); "
            f"echo $n > {folder}/rounds.new; mv {folder}/rounds.new {folder}/rounds; "
            f"done; touch {folder}/done) > /dev/null 2>&1 & echo $! > {folder}/pid")


def stop(t: Transport, folder: str, wait_s: int = 60) -> tuple[int, bool]:
    """Ask the loop to finish its round and wait up to ``wait_s``; one still
    running then is killed. Returns the rounds it ran, and whether it
    stopped by itself."""
    res = t.run(f"touch {folder}/stop; i=0; while [ ! -e {folder}/done ] && "
                f"[ $i -lt {wait_s * 10} ]; do sleep 0.1; i=$((i+1)); done; "
                f"[ -e {folder}/done ] || {{ kill $(cat {folder}/pid); exit 1; }}",
                timeout=wait_s + 60)
    rounds = t.run(f"cat {folder}/rounds 2>/dev/null").stdout.strip()
    return int(rounds or 0), res.ok
