"""(g) Sanity: does the explanation depend on what the model learned? The
model-randomisation test of Adebayo et al. 2018 on the ONNX file itself: the model's
clean maps against those of K randomised twins (:mod:`harness.model.twin`), all
explaining the model's class.

Per image and twin, Spearman's rank correlation rho of the cells of the two *raw* maps
(signed, before the ReLU and the normalisation), Adebayo et al.'s own similarity: no map
drops out for being flat, and a twin whose map is the model's up to sign is as
uninformative as one that is the same. The image's value is 1 - the mean over twins of
|rho|, in [0, 1]; higher is better: near 0, the maps look the same whatever the weights
(they show the image, not the model), near 1 they are unrelated. The SSIM of the 8-bit
maps, the earlier headline, stays as statistic ``ssim`` with the share of flat twin maps:
one twin's draw moved it more than models differ, and flat twin maps dropped up to half
of the images."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    mean_stat,
    plain_stat,
    stat_name,
)
from harness.numerics.similarity import WIN, spearman, ssim
from harness.stats.bootstrap import column_means


def unrelatedness(raw: np.ndarray, twins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image and twin ``1 - |rho|`` of the raw maps, and per image its mean over the
    twins that give one (NaN where a map is constant for every twin).

    Args:
        raw: ``(N, h, w)`` the model's raw maps.
        twins: K ``(N, h, w)`` twins' raw maps of the same images.

    Returns:
        ``(per_twin (K, N), per_image (N,))``.
    """
    per_twin = np.stack([1.0 - np.abs(spearman(raw, t)) for t in twins])
    return per_twin, column_means(per_twin)


def dissimilarity(q: np.ndarray, flat: np.ndarray, q_twin: np.ndarray,
                  flat_twin: np.ndarray) -> np.ndarray:
    """Per image 1 - SSIM of the model's and a twin's 8-bit maps; NaN where either map
    is flat."""
    return np.where(flat | flat_twin, np.nan, 1.0 - ssim(q, q_twin))


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize

    m = inp.maps
    twins = [t for t in m.twins if t.raw.size]
    if not twins:
        # no twin: the model has no weight tensor to randomise (its maps cannot depend on
        # learned weights, so the test has nothing to test)
        return MeasureResult("sanity", True, (plain_stat("headline", None, 0),
                                              plain_stat("randomised_tensors", 0.0, 0)))
    per_twin, per_image = unrelatedness(m.clean.raw, [t.raw for t in twins])
    ssims, flats, agree = [], [], []
    for twin in twins:
        q_twin, flat_twin = normalize(twin.raw)
        ssims.append(dissimilarity(m.q, m.flat, q_twin, flat_twin))
        flats.append(flat_twin.astype(float))
        agree.append((twin.predicted == m.clean.predicted).astype(float))
    # the cascade: steps 1 .. J - 1 redraw the top j/J of the weights; step J is twin 0
    cascade = [mean_stat(f"cascade@{j}/{steps}",
                         unrelatedness(m.clean.raw, [m.cascade[j, steps].raw])[1]
                         if m.cascade[j, steps].raw.size else np.full(len(per_image), np.nan),
                         inp.boot) for j, steps in sorted(m.cascade)]
    if m.cascade:
        steps = min(m.cascade)[1]
        cascade.append(mean_stat(f"cascade@{steps}/{steps}", per_twin[0], inp.boot))
    return headline_result("sanity", True, per_image, inp.boot, (
        *(mean_stat(stat_name("twin", k), v, inp.boot) for k, v in enumerate(per_twin)),
        *cascade,
        mean_stat("ssim", column_means(np.stack(ssims)), inp.boot),
        mean_stat("twin_flat_fraction", np.mean(flats, axis=0), inp.boot),
        mean_stat("twin_agreement", np.mean(agree, axis=0), inp.boot)))


MEASURE = Measure("sanity", True, frozenset({"clean", "twin"}), compute,
                  "Do the maps depend on what the model learned? 1 - |Spearman rho| between "
                  "the raw maps of the model and of twins with randomised weights.",
                  min_map=WIN)
