"""Ranks that admit ties: within a measure, a model's rank is 1 + the number of models
*separably* better, i.e. whose whole 95% interval lies on the better side of its own.
Models the data cannot tell apart share a rank."""


def separable_ranks(rows: list[dict], higher: bool) -> dict[str, tuple[int, bool]]:
    """model -> (rank, tied with the model just above) for the rows with a value.

    Args:
        rows: one per model: ``model``, ``value``, ``ci_low``, ``ci_high`` (an interval
            of None is the value itself).
        higher: whether higher values are better.
    """
    sign = 1.0 if higher else -1.0

    def interval(r):  # in "higher is better" orientation
        low = r["ci_low"] if r["ci_low"] is not None else r["value"]
        high = r["ci_high"] if r["ci_high"] is not None else r["value"]
        return (sign * low, sign * high) if higher else (sign * high, sign * low)

    scored = sorted((r for r in rows if r["value"] is not None),
                    key=lambda r: (-sign * r["value"], r["model"]))
    out = {}
    for pos, r in enumerate(scored):
        low, high = interval(r)
        better = sum(interval(o)[0] > high for o in scored if o is not r)
        tied = pos > 0 and interval(scored[pos - 1])[0] <= high
        out[r["model"]] = (1 + better, tied)
    return out
