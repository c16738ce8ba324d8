"""How still the sanity measure holds: the built-in zoo's sanity headline under three
run seeds, which draw three different sets of randomised twins.

Grad-CAM maps, every zoo model, the default 50 twins: the headline may move by at most
0.05 between seeds and is never null. Occlusion (7 x 7) on three models with its default
10 twins: the spread is printed (a twin costs a whole map there, 50 passes an image).
"""

import json

import numpy as np
from click.testing import CliRunner

from harness.cli import cli

SEEDS = (0, 1, 2)
OCCLUSION_MODELS = ("faces-xent-1", "faces-cyborg-1", "faces-guided-1")


def sanity_by_seed(tmp_path, *flags) -> dict[str, list]:
    """model -> its sanity headline under each seed (maps shared through one cache)."""
    values = {}
    for seed in SEEDS:
        res = CliRunner().invoke(cli, ["run", "--measures", "sanity", "--seed", str(seed),
                                       "--out", str(tmp_path / f"s{seed}"), "--cache",
                                       str(tmp_path / "cache"), "--json", *flags])
        assert res.exit_code == 0, res.output
        for row in json.loads(res.output):
            values.setdefault(row["model"], []).append(row["sanity"])
    return values


def spreads(values: dict[str, list]) -> dict[str, float]:
    return {m: max(v) - min(v) for m, v in values.items() if None not in v}


def report(title, values):
    print(f"\n{title}: sanity under seeds {SEEDS}, and its spread")
    for m, v in values.items():
        shown = ", ".join("null" if x is None else f"{x:.3f}" for x in v)
        spread = f"{max(v) - min(v):.3f}" if None not in v else "n/a"
        print(f"  {m}: {shown}  spread {spread}")


def test_cam_sanity_holds_still_across_twin_draws(benchmark, tmp_path):
    values = sanity_by_seed(tmp_path, "--method", "cam")
    report("Grad-CAM, 50 twins", values)
    benchmark.extra_info["cam_max_spread"] = max(spreads(values).values())
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert len(values) == 15 and all(None not in v for v in values.values())
    assert max(spreads(values).values()) <= 0.05, spreads(values)


def test_occlusion_sanity_spread_on_three_models(benchmark, tmp_path):
    manifest = tmp_path / "three.toml"
    from harness.inputs.zoo import builtin_manifest

    text = builtin_manifest().read_text()
    root = builtin_manifest().parent
    blocks = text.split("[[model]]")
    kept = [b for b in blocks[1:] if any(f'name = "{m}"' in b for m in OCCLUSION_MODELS)]
    head = blocks[0].replace('"./', f'"{root}/')
    manifest.write_text(head + "".join("[[model]]" + b.replace('path = "', f'path = "{root}/')
                                       for b in kept))
    values = sanity_by_seed(tmp_path, "--zoo", str(manifest))
    report("occlusion 7x7, 10 twins", values)
    benchmark.extra_info["occlusion_spreads"] = spreads(values)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert sorted(values) == sorted(OCCLUSION_MODELS)
    assert all(np.isfinite(v).all() for v in map(np.array, values.values()))
