"""The salience settings of a run, validated once; what they mean for a method is the
method's to say (:mod:`harness.salience.methods`)."""

from __future__ import annotations

import dataclasses
import json

from harness.errors import HarnessError
from harness.limits import RISE_MASKS
from harness.salience.methods import INCREMENTAL, METHODS, Method
from harness.salience.scoring import SCORES

TARGETS = ("clean", "own")


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
        target: which class a map explains: ``"clean"`` (the class predicted on the
            clean image, so all of an image's maps explain one decision), ``"own"`` (the
            class predicted on the perturbed image itself, as the authors' scripts did;
            scores and drops stay the clean class's), or a class of the models, by name
            or index (``"face"``, ``"0"``): every map of every image explains that class,
            and every score and drop is that class's.
        layer: cam only: the tensor whose maps Grad-CAM weighs (a 4-D tensor of the
            graph); None: the last spatial feature map before the class score.
        incremental: occlusion only: ``"auto"`` recomputes only the regions a window
            changes where the graph allows it and it is predicted to pay, ``"on"``
            wherever the graph allows it, ``"off"`` never
            (:mod:`~harness.salience.incremental`). The maps are the same up to float
            rounding, so it is not part of the cache key.
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
    target: str = "clean"
    layer: str | None = None
    incremental: str = "auto"

    def __post_init__(self):
        """Every setting checked once, wherever the config comes from (flags, TOML,
        Python), before any work starts."""

        def integer(value, low):
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        def number(value):
            return isinstance(value, int | float) and not isinstance(value, bool)

        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}"),
            (integer(self.grid, 1), "grid must be an integer >= 1"),
            (integer(self.window, 1) and self.window <= self.grid,
             f"window must be an integer in [1, grid={self.grid}]"),
            (self.score in SCORES, f"score must be one of {', '.join(SCORES)}"),
            (integer(self.n_masks, 1), "n_masks must be >= 1"),
            (integer(self.cell, 1), "cell must be an integer >= 1"),
            (number(self.p_keep) and 0.0 < self.p_keep <= 1.0, "p_keep must lie in (0, 1]"),
            (integer(self.seed, 0) and self.seed < 2**63 - 1,
             "seed must be an integer in [0, 2^63 - 1)"),
            (integer(self.batch_size, 1), "batch_size must be >= 1"),
            (isinstance(self.target, str) and self.target.strip() != "",
             f"target must be one of {', '.join(TARGETS)}, or a class name or index"),
            (self.layer is None or (isinstance(self.layer, str) and self.layer != ""),
             "layer must name a tensor of the model"),
            (self.incremental in INCREMENTAL, f"incremental must be one of "
                                              f"{', '.join(INCREMENTAL)}"),
            (self.baseline in ("blur", "mean") or (
                number(self.baseline) and 0.0 <= self.baseline <= 1.0),
             "baseline must be 'blur', 'mean' or a number; a grey level must lie in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def checked(cls, **values) -> SalienceConfig:
        """Settings from a user's values (flags, TOML).

        Raises:
            HarnessError: a value out of range or of the wrong kind, in one line.
        """
        try:
            config = cls(**values)
        except (TypeError, ValueError) as exc:
            raise HarnessError(f"salience settings: {exc}") from None
        most = RISE_MASKS.value()
        if config.method == "rise" and config.n_masks > most:
            raise HarnessError(f"salience settings: n_masks {config.n_masks:,} is above the "
                               f"limit of {most:,} ({RISE_MASKS.env}): each mask is a forward "
                               "pass per image, and the bank is held in memory")
        return config

    def class_target(self, classes) -> int | None:
        """The class index every map explains, for a model with ``classes`` (its names in
        output order); None for ``clean`` and ``own``.

        Raises:
            HarnessError: the model has no such class.
        """
        if self.target in TARGETS:
            return None
        if self.target in classes:
            return list(classes).index(self.target)
        if self.target.isdigit() and int(self.target) < len(classes):
            return int(self.target)
        raise HarnessError(f"target {self.target!r} is not a class of this model (classes: "
                           f"{', '.join(classes)})")

    @property
    def explainer(self) -> Method:
        """The method these settings select."""
        return METHODS[self.method]

    def passes_per_image(self) -> int:
        """Forward passes for one image's map beyond the image's own forward pass."""
        return self.explainer.passes_per_image(self)

    def to_json(self) -> str:
        """The settings that affect the maps, as canonical JSON (with the method's
        revision, when its maps changed since its first version)."""
        fields = {k: getattr(self, k) for k in self.explainer.key_fields}
        if getattr(self.explainer, "revision", None) is not None:
            fields["revision"] = self.explainer.revision
        if self.target != "clean":  # left out at its first default: older keys stay valid
            fields["target"] = self.target
        if self.layer is not None and self.method == "cam":  # which map was weighed
            fields["layer"] = self.layer
        return json.dumps(fields, sort_keys=True)

    def check_image_size(self, size: tuple[int, int], source: str) -> None:
        """Refuse a grid with more cells per side than the images have pixels.

        Raises:
            HarnessError: naming the images and the largest grid they allow.
        """
        if not self.explainer.fixed_grid and self.grid > min(size):
            raise HarnessError(f"grid {self.grid} is larger than the {size[0]}x{size[1]} "
                               f"images of {source}; use at most {min(size)}")
