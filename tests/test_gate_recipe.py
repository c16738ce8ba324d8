"""The CI recipe of docs/ci.md, played step by step by `.ci/gate_recipe.sh`: a new repository's
first pull request passes without a baseline, an unchanged one passes against main's
run, and a regressed checkpoint fails."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "gate_recipe.sh"


def test_the_ci_recipe_passes_on_day_one_and_catches_a_regression():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    for step in ("step 1: first pull request, no baseline: passed",
                 "step 2: unchanged pull request against main's run: passed",
                 "step 3: regressed checkpoint: failed"):
        assert step in res.stdout, res.stdout
