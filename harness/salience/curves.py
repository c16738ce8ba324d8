"""Scoring the copies of the faithfulness measures (docs/measures.md): deletion and
insertion curves, ROAD's imputed copies and faithfulness correlation's random subsets,
for a model's own maps and for random maps (the chance level).

Every order, subset and noise draw comes from the run seed and the image's content hash,
so an image gets the same copies in whichever shard, order or machine it is scored, and
every model of a run reads the same random maps. The scores are those of the class the
clean map explains, in the settings' score (log-odds by default).
"""

from __future__ import annotations

import zlib

import numpy as np

from harness.errors import NonFiniteOutput
from harness.maps import upsample
from harness.numerics import faithfulness as fa
from harness.numerics.imputation import impute
from harness.salience.batched import score_perturbations
from harness.salience.scoring import class_scores

CURVES = ("deletion", "deletion/chance", "insertion", "insertion/chance", "road",
          "road/chance", "faithcorr")
_STREAM = zlib.crc32(b"faithfulness")
# Part of every faithfulness curve's cache key, as methods.CODE_VERSION is of a map's:
# raise it whenever a change alters the bytes of any curve. 4: ROAD's imputation solved
# with bilinear interpolation between its grids (the same system, within its tolerance).
CURVE_VERSION = "4"
_BYTES = 256 * 2 ** 20  # ROAD copies held at once


def copies(what: str, cells: int) -> int:
    """Forward passes per image of curve ``what`` over maps of ``cells`` cells."""
    kind = what.split("/")[0]
    if kind in ("deletion", "insertion"):
        return fa.steps(cells) + 1
    if kind == "road":
        return 2 * len(fa.ROAD_PERCENTS)
    return fa.SUBSETS + 1


def rng_for(seed: int, image_hash: str, what: str) -> np.random.Generator:
    """The generator of one image's draws of kind ``what``."""
    return np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(_STREAM, zlib.crc32(what.encode()), int(image_hash[:16], 16))))


def random_maps(shape: tuple[int, int], hashes, seed: int) -> np.ndarray:
    """The chance level's maps: i.i.d. uniform cells per image, ``(n, *shape)``."""
    return np.stack([rng_for(seed, h, "chance-map").random(shape) for h in hashes])


def curve(clf, x: np.ndarray, raw: np.ndarray, hashes, seed: int, config,
          targets: np.ndarray, what: str) -> np.ndarray:
    """The scores of curve ``what`` (one of :data:`CURVES`) for each image.

    Args:
        clf: the model.
        x: ``(n, H, W, 3) float32`` the clean images.
        raw: ``(n, gh, gw)`` the model's raw maps of them.
        hashes: the images' content hashes (what their draws are seeded by).
        seed: the run seed.
        config: the salience settings (baseline, score, batch size).
        targets: ``(n,) int64`` the class explained.
        what: ``deletion``, ``insertion``, ``road`` or ``faithcorr``; ``/chance`` for a
            random map instead of the model's.

    Returns:
        ``(n, rows, P) float32``: row 0 the scores of the P copies; for ``faithcorr``
        also row 1, each subset's sum of the model's map, and row 2, of a random map.
    """
    kind, _, chance = what.partition("/")
    maps = random_maps(raw.shape[1:], hashes, seed) if chance else np.asarray(raw, np.float64)
    if kind == "road":
        return _road(clf, x, maps, hashes, seed, config, targets, what)[:, None, :]
    cells = maps[0].size
    if kind == "faithcorr":
        subsets = np.stack([fa.subset_hidden(cells, rng_for(seed, h, "subsets")) for h in hashes])
        scores = _hidden_scores(clf, x, maps.shape[1:], subsets, config.baseline, config,
                                targets)
        chance_maps = random_maps(raw.shape[1:], hashes, seed)
        sums = [np.einsum("npc,nc->np", subsets, m.reshape(len(m), -1))
                for m in (maps, chance_maps)]
        return np.stack([scores, *sums], axis=1).astype(np.float32)
    order = "order/chance" if chance else "order"
    cell_ranks = np.stack([fa.ranks(m, rng_for(seed, h, order)) for m, h in zip(maps, hashes,
                                                                                  strict=True)])
    if kind == "deletion":
        hidden, baseline = fa.deletion_hidden(cell_ranks), config.baseline
    else:  # insertion starts from the blurred image, whatever the occlusion baseline
        hidden, baseline = fa.insertion_hidden(cell_ranks), "blur"
    return _hidden_scores(clf, x, maps.shape[1:], hidden, baseline, config,
                          targets)[:, None, :].astype(np.float32)


def _hidden_scores(clf, x, grid, hidden, baseline, config, targets) -> np.ndarray:
    """``(n, P)`` scores of the copies that take the cells ``hidden`` ``(n, P, C)`` marks
    from the baseline."""
    cells = fa.cell_index(x.shape[1:3], grid)

    def fill(src, base, item_img, item_copy, prev_img, prev_copy, out, channels_first):
        fa.fill_hidden(src, base, item_img, item_copy, hidden, cells, out, channels_first)

    return score_perturbations(clf, x, baseline, grid[0], hidden.shape[1], fill, targets,
                               config.score, config.batch_size, need_clean=False).scores


def _road(clf, x, maps, hashes, seed, config, targets, what) -> np.ndarray:
    """``(n, 2F)`` scores of ROAD's copies: the pixels ranked by the map upsampled to
    image size, removed most relevant first then least relevant first at each fraction,
    imputed with seeded noise."""
    n, h, w, c = x.shape
    per = 2 * len(fa.ROAD_PERCENTS)
    pixel_maps = upsample(maps, (h, w))
    chunk = max(1, _BYTES // (per * h * w * c * 4))
    out = np.empty((n, per))
    for start in range(0, n, chunk):
        rows = range(start, min(n, start + chunk))
        removed = np.stack([fa.road_removed(fa.ranks(pixel_maps[i], rng_for(
            seed, hashes[i], "road-order")), (h, w)) for i in rows])
        noise = np.stack([fa.road_noise(rng_for(seed, hashes[i], f"{what}-noise"), (h, w, c))
                          for i in rows])
        copies_ = impute(x[rows.start:rows.stop], removed.reshape(-1, h, w), noise,
                         np.repeat(np.arange(len(rows)), per))
        try:
            outputs = clf.forward(copies_)
        except NonFiniteOutput as exc:
            raise exc.remapped(np.repeat(np.arange(rows.start, rows.stop), per)) from None
        out[rows.start:rows.stop] = class_scores(
            outputs, clf.output_kind, np.repeat(targets[rows.start:rows.stop], per),
            config.score).reshape(-1, per)
    return out
