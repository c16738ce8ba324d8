"""What `harness run` says on a terminal, as a user sees it: a pseudo-terminal."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _read_all(master: int, proc, start: float, limit: float) -> list[tuple[float, bytes]]:
    """(seconds since ``start``, bytes) as they arrive, until the child closes the
    terminal."""
    got = []
    while time.monotonic() - start < limit:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child's side is closed
                break
            if not data:
                break
            got.append((time.monotonic() - start, data))
        elif proc.poll() is not None:
            break
    return got


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_run_on_a_terminal_speaks_within_two_seconds_and_sums_up(tmp_path):
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT),
           "COLUMNS": "120"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--method", "cam",
                             "--limit", "8", "--out", "out", "--cache", "cache"],
                            cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        got = _read_all(master, proc, started, 300)
    finally:
        os.close(master)
        proc.wait(60)
    text = b"".join(data for _, data in got).decode()
    assert proc.returncode == 0, text
    first = next(t for t, seen in _accumulate(got) if b"\n" in seen)
    assert first < 2.0, f"first line after {first:.2f} s:\n{text}"
    assert text.startswith("scoring 15 models (the built-in zoo) on data.npz [test], "
                           "8 drawn by label")
    assert "45 units of work (model x images): 8,985 forward passes to compute" in text
    assert "computing faces-xent-1 on in-set images 1-8" in text  # the running unit, named
    assert "passes/s, about" in text  # the rate over computed passes and the time left
    assert "done: 15 models, 8 images, 8,985 forward passes computed in" in text


def _accumulate(got):
    """(time, everything read up to then) for each read."""
    seen = b""
    for t, data in got:
        seen += data
        yield t, seen
