"""The GPU path without a GPU: the simulator checks run in a process of their own, and
what needs no simulator is checked here."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.model.session import Deadline, run_options

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_path_under_the_cuda_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "cuda_sim" / "check_bound.py")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "skipped" not in res.stdout, res.stdout[-2000:]


def test_deadline_raises_the_terminate_flag_only_once_a_run_is_late():
    deadline = Deadline(0.2)
    try:
        for _ in range(4):  # re-armed in time: never raised
            deadline.arm()
            time.sleep(0.1)
        assert not deadline.options.terminate
        deadline.arm()
        time.sleep(0.6)
        assert deadline.options.terminate
    finally:
        deadline.close()


def test_run_options_spare_onnx_runtime_its_exception_per_run():
    # the Python layer reads this entry before every run; unset, reading it raises
    assert run_options().get_run_config_entry("gpu_graph_id") == "-1"


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version")
                    or os.path.exists("/dev/nvidiactl"), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_in_one_line():
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "error: no NVIDIA GPU on this machine (no driver in /proc/driver/nvidia); "
        "nothing to check"]
