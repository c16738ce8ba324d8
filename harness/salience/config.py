"""One salience configuration for a run, and the dispatch to its method."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from harness.salience import METHODS

METHOD_NAMES = tuple(METHODS)  # the package registry is the one list of methods


@dataclasses.dataclass(frozen=True)
class SalienceConfig:
    """How maps are computed; recorded with every result.

    Attributes:
        method: ``"occlusion"``, ``"rise"`` or ``"cam"`` (class activation maps read
            from the graph, at the feature map's resolution; the settings below do not
            apply to it).
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
        """Every setting checked once, wherever the config comes from (flags, TOML,
        Python), before any work starts."""
        from harness.salience.scoring import SCORES

        def integer(value, low):
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        checks = [
            (self.method in METHOD_NAMES, f"method must be one of {', '.join(METHOD_NAMES)}"),
            (integer(self.grid, 1), "grid must be an integer >= 1"),
            (integer(self.window, 1) and self.window <= self.grid,
             f"window must be an integer in [1, grid={self.grid}]"),
            (self.score in SCORES, f"score must be one of {', '.join(SCORES)}"),
            (integer(self.n_masks, 1), "n_masks must be >= 1"),
            (integer(self.cell, 1), "cell must be an integer >= 1"),
            (isinstance(self.p_keep, int | float) and 0.0 < self.p_keep <= 1.0,
             "p_keep must lie in (0, 1]"),
            (integer(self.batch_size, 1), "batch_size must be >= 1"),
            (self.baseline in ("blur", "mean") or (
                isinstance(self.baseline, int | float) and 0.0 <= self.baseline <= 1.0),
             "baseline must be 'blur', 'mean' or a number; a grey level must lie in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def passes_per_image(self) -> int:
        """Forward passes for one image's map beyond the image's own forward pass."""
        if self.method == "occlusion":
            return (self.grid - self.window + 1) ** 2
        if self.method == "cam":
            return 0  # the map comes out of the image's own pass
        return self.n_masks

    def to_json(self) -> str:
        """The settings that affect the maps, as canonical JSON."""
        fields = dataclasses.asdict(self)
        fields.pop("batch_size")
        if self.method == "cam":
            return json.dumps({"method": "cam"})
        if self.method == "occlusion":
            for key in ("n_masks", "cell", "p_keep", "seed"):
                fields.pop(key)
        else:
            fields.pop("window")
        return json.dumps(fields, sort_keys=True)


def explain_with_outputs(model, images: np.ndarray, config: SalienceConfig, target=None,
                         seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The model's ``(N, K)`` outputs on ``images`` and their raw maps for ``target``
    classes (None: the predicted ones), spending each forward pass once: for CAM the
    maps come out of the same pass as the outputs."""
    if config.method == "cam":
        from harness.salience.cam import cam_with_outputs

        maps, outputs = cam_with_outputs(model, images, target)
        return outputs, maps
    outputs = model.forward(images)
    return outputs, explain(model, images, config, target, outputs, seed)


def explain(model, images: np.ndarray, config: SalienceConfig, target, clean,
            seed: int | None = None) -> np.ndarray:
    """Raw ``(N, grid, grid)`` maps of ``images`` for ``target`` classes, reusing the
    clean outputs the caller already has (so no pass is spent twice)."""
    from harness.salience.cam import cam
    from harness.salience.occlusion import occlusion
    from harness.salience.rise import rise

    if config.method == "cam":
        return cam(model, images, target)
    if config.method == "occlusion":
        return occlusion(model, images, grid=config.grid, window=config.window,
                         baseline=config.baseline, target=target, score=config.score,
                         batch_size=config.batch_size, clean=clean)
    return rise(model, images, n_masks=config.n_masks, cell=config.cell, p_keep=config.p_keep,
                seed=config.seed if seed is None else seed, grid=config.grid,
                baseline=config.baseline, target=target, score=config.score,
                batch_size=config.batch_size, clean=clean)
