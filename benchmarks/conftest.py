import json

import pytest

from harness import warmup


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels():
    """Compile (or load) the Numba kernels before anything is timed."""
    warmup()


def enforce(benchmark, ratio: float, target: float, what: str, at_most: bool = False):
    """Assert a speed target (``ratio >= target``, or ``<=`` with ``at_most``) only when
    benchmarking is on: with --benchmark-disable (CI) a benchmark runs once, as a smoke
    test, on too little work to judge speed."""
    if benchmark.disabled:
        return
    if at_most:
        assert ratio <= target, f"{what}: ratio {ratio:.3f} is above the target {target}"
    else:
        assert ratio >= target, f"{what}: ratio {ratio:.3f} is below the target {target}"


def zoo_manifest(folder, keep):
    """A manifest of the built-in zoo's models for which ``keep(model)`` holds, with the
    zoo's data and out-of-set sets; returns its path and the chosen models."""
    from harness.inputs.zoo import builtin_manifest, read_manifest

    zoo = read_manifest(builtin_manifest())
    chosen = [m for m in zoo.models if keep(m)]
    lines = [f'data = "{zoo.data}"', 'split = "test"',
             f"out_of_set = {json.dumps([str(p) for p in zoo.out_of_set])}"]
    for m in chosen:
        lines += ["[[model]]", f'path = "{m.path}"', f'family = "{m.spec.family}"']
    path = folder / "zoo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, chosen
