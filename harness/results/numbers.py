"""Numbers as the terminal and the report print them, where a value may be missing: an
interval has no finite end below 3 images, and a pair with fewer has no test."""

from __future__ import annotations

import math

NO_INTERVAL = "[no finite interval]"


def interval(low, high, spec: str = ".3g") -> str:
    """``[low, high]`` in ``spec``, or :data:`NO_INTERVAL` where either end is missing."""
    if _missing(low) or _missing(high):
        return NO_INTERVAL
    return f"[{low + 0.0:{spec}}, {high + 0.0:{spec}}]"  # + 0.0: -0.0 prints as 0


def p_value(p, spec: str = ".2g") -> str:
    """``p`` in ``spec``, or ``n/a`` where there was no test."""
    return "n/a" if _missing(p) else f"{p:{spec}}"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
