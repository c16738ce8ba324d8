"""What Grad-CAM's self-checks cost in a CAM run of the built-in zoo: the run of each
model that exposes every tensor (the shapes the feature-map search follows) and the
forward and gradient checks on the first batch, timed inside the run, over the run's
wall time. Target <= 0.05.
"""

import time

from click.testing import CliRunner

from harness.cli import cli
from harness.model.classifier import OnnxClassifier
from harness.salience import cam as cam_module


def test_self_checks_cost_under_five_percent_of_a_cam_run(benchmark, tmp_path, monkeypatch):
    spent = [0.0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    monkeypatch.setattr(OnnxClassifier, "inner_tensors", timed(OnnxClassifier.inner_tensors))
    monkeypatch.setattr(cam_module, "check_head", timed(cam_module.check_head))
    args = ["run", "--method", "cam", "--quiet", "--limit", "6" if benchmark.disabled else "0"]
    CliRunner().invoke(cli, args + ["--out", str(tmp_path / "warm"), "--limit", "2",
                                   "--cache", str(tmp_path / "warm-cache")])
    spent[0] = 0.0
    start = time.perf_counter()
    res = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "run"),
                                          "--cache", str(tmp_path / "cache")])
    wall = time.perf_counter() - start
    assert res.exit_code == 0, res.output
    ratio = spent[0] / wall
    benchmark.extra_info.update(checks_s=spent[0], wall_s=wall, ratio=ratio)
    print(f"\nGrad-CAM self-checks: {spent[0]:.2f} s of a {wall:.1f} s CAM run of the zoo: "
          f"ratio {ratio:.3f} (target <= 0.05)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if not benchmark.disabled:
        assert ratio <= 0.05
    assert spent[0] > 0
