"""How a run made with ``--until-decided`` stopped, in words (its ``run.json``
``"sequential"`` record; :mod:`harness.sequential`)."""

from __future__ import annotations


def summary(record: dict) -> str:
    """One line: where the looks stopped, why, and what the full set would have cost."""
    used, full = record["passes_used"], record["passes_full"]
    why = {"failed": "a failure was shown", "decided": "every question decided",
           "budget": "the budget reached"}[record["stopped"]]
    share = f" ({used / full:.0%})" if full else ""
    return (f"Sequential: stopped at {record['images_used']} of {record['images_total']} "
            f"images (look {len(record['looks'])} of {len(record['looks_planned'])}), "
            f"{why}; {used:,} of the full set's {full:,} forward passes{share}")
