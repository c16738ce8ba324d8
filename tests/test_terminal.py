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
    assert "at this machine's rate so far, and grows when other work shares" in text
    assert "done: 15 models, 8 images, 8,985 forward passes computed in" in text


def _accumulate(got):
    """(time, everything read up to then) for each read."""
    seen = b""
    for t, data in got:
        seen += data
        yield t, seen


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_ctrl_c_says_what_was_kept_and_the_exact_resume_command(tmp_path):
    """Ctrl-C (SIGINT, as the terminal sends it) ends a run with one line: the units
    kept and the command that finishes it; that command, run as printed, finishes it."""
    import pty
    import shlex
    import signal

    master, slave = pty.openpty()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT),
           "COLUMNS": "120"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--measures",
                             "transforms", "--limit", "8", "--out", "my run",
                             "--cache", "cache"],
                            cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    try:
        while b"[3/" not in seen and time.monotonic() - started < 120:  # two units kept
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                seen += os.read(master, 4096)
        proc.send_signal(signal.SIGINT)
        seen += b"".join(data for _, data in _read_all(master, proc, time.monotonic(), 60))
    finally:
        os.close(master)
        proc.wait(60)
    text = seen.decode()
    assert proc.returncode == 130, text
    assert "Aborted!" not in text and "Traceback" not in text, text
    line = text[text.index("interrupted: "):].splitlines()[0]  # after the erased bar
    kept = int(line.split()[1])
    assert kept >= 2 and "units of work finished and kept in my run/" in line, line
    command = line.split("go on with: ")[1]
    assert command == "harness run --resume 'my run'"
    args = shlex.split(command)[2:]
    resumed = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "my run" / "leaderboard.csv").is_file()
