import pytest

from harness.salience import warmup


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels():
    """Compile (or load) the Numba kernels before anything is timed."""
    warmup()


def enforce(benchmark, ratio: float, target: float, what: str):
    """Assert a speed target only when benchmarking is on: with --benchmark-disable
    (CI) a benchmark runs once, as a smoke test, on too little work to judge speed."""
    if not benchmark.disabled:
        assert ratio >= target, f"{what}: ratio {ratio:.3f} is below the target {target}"
