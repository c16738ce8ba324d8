"""One salience configuration for a run, and the dispatch to its method."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

METHOD_NAMES = ("occlusion", "rise")


@dataclasses.dataclass(frozen=True)
class SalienceConfig:
    """How maps are computed; recorded with every result.

    Attributes:
        method: ``"occlusion"`` or ``"rise"``.
        grid: cells per side of the maps.
        window: occlusion window in cells.
        baseline: ``"blur"``, ``"mean"`` or a grey level.
        score: ``"log_odds"``, ``"logit"`` or ``"probability"``.
        n_masks, cell, p_keep, seed: RISE's mask bank.
        batch_size: perturbed copies per ONNX Runtime call.
    """

    method: str = "occlusion"
    grid: int = 7
    window: int = 1
    baseline: str | float = "blur"
    score: str = "log_odds"
    n_masks: int = 1000
    cell: int = 7
    p_keep: float = 0.5
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self):
        if self.method not in METHOD_NAMES:
            raise ValueError(f"method must be one of {', '.join(METHOD_NAMES)}, "
                             f"got {self.method!r}")

    def passes_per_image(self) -> int:
        """Forward passes for one image's map when its target is known."""
        if self.method == "occlusion":
            return (self.grid - self.window + 1) ** 2
        return self.n_masks

    def to_json(self) -> str:
        """The settings that affect the maps, as canonical JSON."""
        fields = dataclasses.asdict(self)
        fields.pop("batch_size")
        if self.method == "occlusion":
            for key in ("n_masks", "cell", "p_keep", "seed"):
                fields.pop(key)
        else:
            fields.pop("window")
        return json.dumps(fields, sort_keys=True)


def explain(model, images: np.ndarray, config: SalienceConfig, target, clean,
            seed: int | None = None) -> np.ndarray:
    """Raw ``(N, grid, grid)`` maps of ``images`` for ``target`` classes, reusing the
    clean outputs the caller already has (so no pass is spent twice)."""
    from harness.salience.occlusion import occlusion
    from harness.salience.rise import rise

    if config.method == "occlusion":
        return occlusion(model, images, grid=config.grid, window=config.window,
                         baseline=config.baseline, target=target, score=config.score,
                         batch_size=config.batch_size, clean=clean)
    return rise(model, images, n_masks=config.n_masks, cell=config.cell, p_keep=config.p_keep,
                seed=config.seed if seed is None else seed, grid=config.grid,
                baseline=config.baseline, target=target, score=config.score,
                batch_size=config.batch_size, clean=clean)
