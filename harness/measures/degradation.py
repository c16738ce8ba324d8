"""(e) Salience-guided degradation: blurring what the model looked at should hurt more
than blurring as much in random places (the control: the same map with its cells
shuffled). Higher gap is better. The paper's object - background gap is kept as
``paper_gap``: it compares unequal areas (a focused map blurs a few cells in ``object``
mode and most of the image in ``background`` mode), so it mostly measures how much was
blurred."""


from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    masked,
    mean_stat,
    plain_stat,
    stat_name,
)
from harness.numerics.similarity import WIN, ssim

MODES = ("object", "background", "control")


def score_drops(clean_score, clean_prob, degraded_score, degraded_prob):
    """``(log-odds drop, probability drop)`` of the clean target class, per image."""
    return clean_score - degraded_score, clean_prob - degraded_prob


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize

    m = inp.maps
    keep = ~m.flat  # the blur is guided by the clean map: a flat map guides nothing
    drops, details = {}, []
    for mode in MODES:
        if mode not in m.degraded:
            continue
        d = m.degraded[mode]
        drop, drop_p = score_drops(m.clean.target_score, m.clean.target_prob, d.target_score,
                                   d.target_prob)
        drops[mode] = masked(drop, keep)
        details.append(mean_stat(stat_name("score_drop", mode), drops[mode], inp.boot))
        details.append(mean_stat(stat_name("prob_drop", mode), masked(drop_p, keep), inp.boot))
        if d.raw.size:  # the control is scored, not explained
            q_d, _ = normalize(d.raw)
            details.append(mean_stat(stat_name("ssim", mode), masked(ssim(m.q, q_d), keep),
                                     inp.boot))
        if inp.labels is not None:
            details.append(mean_stat(stat_name("accuracy", mode),
                                     masked(d.predicted == inp.labels, keep), inp.boot))
    if "object" in drops and "background" in drops:
        details.insert(0, mean_stat("paper_gap", drops["object"] - drops["background"],
                                    inp.boot))
    if "object" not in drops or "control" not in drops:
        return MeasureResult("degradation", True, (plain_stat("headline", None, 0), *details))
    return headline_result("degradation", True, drops["object"] - drops["control"], inp.boot,
                           details)


MEASURE = Measure("degradation", True, frozenset({"clean", "degradation"}), compute,
                  "Does blurring what the model looked at hurt more than blurring as much "
                  "at random? Faithfulness gap: log-odds drop (object blurred) - drop "
                  "(the same blur on the map's shuffled cells).", min_map=WIN)
