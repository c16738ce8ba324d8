"""(e) Salience-guided degradation: blurring what the model looked at should hurt far
more than blurring what it did not. Higher gap is better."""


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

MODES = ("object", "background")


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
        q_d, _ = normalize(d.raw)
        details.append(mean_stat(stat_name("ssim", mode), masked(ssim(m.q, q_d), keep), inp.boot))
        if inp.labels is not None:
            details.append(mean_stat(stat_name("accuracy", mode),
                                     masked(d.predicted == inp.labels, keep), inp.boot))
    if len(drops) != 2:
        return MeasureResult("degradation", True, (plain_stat("headline", None, 0), *details))
    return headline_result("degradation", True, drops["object"] - drops["background"], inp.boot,
                           details)


MEASURE = Measure("degradation", True, frozenset({"clean", "degradation"}), compute,
                  "Does blurring what the model looked at hurt more than blurring the rest? "
                  "Faithfulness gap: log-odds drop (object) - drop (background).",
                  min_map=WIN)
