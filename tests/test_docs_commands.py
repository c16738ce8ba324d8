"""Every command of the bash blocks of the README and the guides, run as written, in
their order (tests/docs.py), in one fresh folder: a command that needs an earlier one's
output gets it from there.

Left out, each for a reason the document itself states in the command's comment: the
install lines (this environment is what they make: .ci/run runs the test line), runs
that take minutes ("~5 min"), a command that needs a running cluster to join, and one
that needs a converter this environment does not have ("needs tf2onnx").
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import blocks, reader_files

SKIP = re.compile(r"~\s*\d+\s*min|needs ")


def commands() -> list[tuple[str, str]]:
    """(command, its comment) of every line of every bash block, in order."""
    out = []
    for _, block in blocks("bash"):
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            command = command.strip()
            if command and not command.startswith("#"):
                out.append((command, comment.strip()))
    return out


def files() -> dict[str, str]:
    """The TOML blocks that name their file on the first line (``# gate.toml``); a name
    given twice takes its last block."""
    return dict(re.findall(r"\A# ([\w.-]+)\n(.*)", block, re.S)[0]
                for _, block in blocks("toml") if re.match(r"# [\w.-]+\n", block))


def test_the_blocks_are_found():
    found = commands()
    assert len(found) >= 15 and "gate.toml" in files()
    skipped = [c for c, why in found if SKIP.search(why) or c.startswith("python3 -m venv")]
    assert len(skipped) <= 8, skipped


@pytest.mark.slow
def test_every_command_runs_as_written(tmp_path):
    for name, text in files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    reader_files(tmp_path, per_label=3)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = 0
    for command, why in commands():
        if SKIP.search(why) or command.startswith("python3 -m venv"):
            continue
        res = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=240)
        # a gate's verdict may be a failure (exit 1); a usage error (2) never is
        gated = command.startswith("harness gate") or "--until-decided --rules" in command
        allowed = (0, 1) if gated else (0,)
        assert res.returncode in allowed, f"{command}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        ran += 1
    assert ran >= 12
