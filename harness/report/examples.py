"""The example maps a run keeps for its report: the clean maps of the first images, and
for the first image its maps under a flip, a shift, the highest noise level and both
degradation modes, with the images they explain."""

from __future__ import annotations

import numpy as np

from harness.execution.plan import image_hashes
from harness.execution.worker import noisy_image
from harness.maps import ModelMaps
from harness.numerics.perturb import degrade, transform
from harness.numerics.pixels import to_uint8


class Examples:
    """Collects every scored model's example maps (pass :meth:`add` as ``on_model``)."""

    COUNT = 8

    def __init__(self, inset, seed: int, noise_levels):
        first = inset.subset(np.arange(min(self.COUNT, len(inset))))
        self.x = first.pixels()
        self.names = first.names
        self.top_level = float(noise_levels[-1])
        self.noisy_first = noisy_image(self.x[0], self.top_level, seed,
                                       image_hashes(first.images[:1])[0])
        self.models, self.clean, self.variants = [], [], []

    def add(self, clf, maps: ModelMaps) -> None:
        n = len(self.x)
        first = self.x[:1]
        variants = [("clean", first[0], maps.clean.raw[0])]
        for name in ("hflip", "shift_right"):
            if name in maps.transformed:
                variants.append((name, transform(name, first)[0], maps.transformed[name].raw[0]))
        if self.top_level in maps.noisy:
            variants.append((f"noise@{self.top_level:g}", self.noisy_first,
                             maps.noisy[self.top_level].raw[0]))
        for mode in ("object", "background"):
            if mode in maps.degraded:
                variants.append((f"blur {mode}", degrade(first, maps.q_up[:1], mode)[0],
                                 maps.degraded[mode].raw[0]))
        self.models.append(clf.name)
        self.clean.append(maps.clean.raw[:n])
        self.variants.append(variants)

    def arrays(self) -> dict[str, np.ndarray] | None:
        """Everything as arrays for an .npz (no objects, so no pickle); None when no
        model was scored."""
        if not self.models:
            return None
        return {
            "images": to_uint8(self.x), "names": np.array(self.names),
            "models": np.array(self.models), "clean": np.stack(self.clean),
            "variant_names": np.array([v[0] for v in self.variants[0]]),
            "variant_images": np.stack([[to_uint8(v[1]) for v in vs] for vs in self.variants]),
            "variant_maps": np.stack([[v[2] for v in vs] for vs in self.variants])}
