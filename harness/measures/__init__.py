"""The salience measures of SPEC section 3, one module each.

``MEASURES`` maps a name to its :class:`~harness.measures.base.Measure`. Each module
holds the pure array functions; ``evaluate`` runs models and measures together.
"""

from harness.errors import HarnessError, did_you_mean
from harness.measures import agreement, degradation, entropy, out_of_set, stability, transforms

MEASURES = {m.MEASURE.name: m.MEASURE
            for m in (entropy, out_of_set, transforms, stability, degradation, agreement)}
ALL = tuple(MEASURES)


def get_measures(names) -> list:
    """Measures by name, in the order given; an unknown name is an error that suggests
    the closest known ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = []
    for name in names:
        if name not in MEASURES:
            hint = did_you_mean(name, MEASURES, n=2, quote=False)
            raise HarnessError(f"unknown measure {name!r}{hint} (known: {', '.join(MEASURES)})")
        chosen.append(MEASURES[name])
    return chosen


def evaluate(*args, **kwargs):
    """Score models on measures; see :func:`harness.runner.evaluate`."""
    from harness.runner import evaluate as run

    return run(*args, **kwargs)


__all__ = ["ALL", "MEASURES", "evaluate", "get_measures"]
