"""The salience measures of docs/measures.md, one module each.

``MEASURES`` maps a name to its :class:`~harness.measures.base.Measure`. Each module
holds the pure array functions; :func:`harness.runner.evaluate` runs models and
measures together. ``DEFAULT`` are the measures a run scores when none are named (the
paper's five, agreement and sanity); the faithfulness measures the field reports
(``FAITHFULNESS``: deletion, insertion, ROAD, faithfulness correlation) are asked for by
name, or all four as ``faithfulness``: a default that changed would move every
existing gate and pick.
"""

from harness.errors import HarnessError, did_you_mean
from harness.measures import (
    agreement,
    degradation,
    deletion,
    entropy,
    faithfulness_correlation,
    insertion,
    out_of_set,
    road,
    sanity,
    stability,
    transforms,
)

MEASURES = {m.MEASURE.name: m.MEASURE
            for m in (entropy, out_of_set, transforms, stability, degradation, agreement,
                      sanity, deletion, insertion, road, faithfulness_correlation)}
FAITHFULNESS = ("deletion", "insertion", "road", "faithfulness_correlation")
DEFAULT = tuple(name for name in MEASURES if name not in FAITHFULNESS)
GROUPS = {"faithfulness": FAITHFULNESS}


def get_measures(names) -> list:
    """Measures by name, in the order given; an unknown name is an error that suggests
    the closest known ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = []
    for name in (n for given in names for n in GROUPS.get(given, (given,))):
        if name not in MEASURES:
            hint = did_you_mean(name, [*MEASURES, *GROUPS], n=2, quote=False)
            raise HarnessError(f"unknown measure {name!r}{hint} (known: {', '.join(MEASURES)}"
                               f"; {', '.join(GROUPS)} for the four faithfulness measures)")
        if MEASURES[name] not in chosen:
            chosen.append(MEASURES[name])
    return chosen


def check_grid(measures, salience) -> int:
    """Refuse a perturbation grid too coarse for the chosen measures; returns the
    smallest map side they can score (a CAM's side is checked per model, once known)."""
    min_map = max((m.min_map for m in measures), default=0)
    if not salience.explainer.fixed_grid and salience.grid < min_map:
        raise HarnessError(f"grid {salience.grid} is too coarse for "
                           f"{too_small(measures, min_map)}; use a grid of at least "
                           f"{min_map} or leave those measures out")
    return min_map


def too_small(measures, min_map: int) -> str:
    """The measures that need maps of at least ``min_map`` a side, as text."""
    names = [m.name for m in measures if m.min_map == min_map]
    return f"{', '.join(names)} (their SSIM needs maps of at least {min_map}x{min_map})"


__all__ = ["DEFAULT", "FAITHFULNESS", "MEASURES", "check_grid", "get_measures", "too_small"]
