"""Every limit on what an untrusted model or image may make the harness do, in one place:
its default, and the environment variable that raises it (a whole number)."""

from __future__ import annotations

import dataclasses
import os

from harness.errors import HarnessError, excerpt


@dataclasses.dataclass(frozen=True)
class Limit:
    """One bound: ``default`` unless the environment variable ``env`` says otherwise."""

    env: str
    default: int
    what: str

    def value(self) -> int:
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        if not text.isdigit() or int(text) < 1:
            raise HarnessError(f"{self.env}={excerpt(text)} must be a whole number >= 1")
        return int(text)


INPUT_BYTES = Limit("HARNESS_MAX_INPUT_BYTES", 1 << 30,
                    "bytes one preprocessed image may take as model input")
WEIGHT_BYTES = Limit("HARNESS_MAX_WEIGHT_BYTES", 1 << 30,
                     "bytes of weights a model declares, in the file or in external data")
CONSTANT_BYTES = Limit("HARNESS_MAX_CONSTANT_BYTES", 1 << 28,
                       "bytes a ConstantOfShape of constant shape may fill")
IMAGE_PIXELS = Limit("HARNESS_MAX_IMAGE_PIXELS", 4096 * 4096, "pixels of one image")
IMAGE_ASPECT = Limit("HARNESS_MAX_IMAGE_ASPECT", 8,
                     "how many times one side of an image may be the other")
CAM_FEATURE_ELEMENTS = Limit("HARNESS_MAX_CAM_FEATURE", 1 << 24,
                            "values per image of the feature map Grad-CAM weighs")
RISE_MASKS = Limit("HARNESS_MAX_RISE_MASKS", 100_000, "RISE masks per image")
CLASSES = Limit("HARNESS_MAX_CLASSES", 100_000,
                "classes an .npz's integer labels may name without label_names")

ALL = (INPUT_BYTES, WEIGHT_BYTES, CONSTANT_BYTES, IMAGE_PIXELS, IMAGE_ASPECT, CLASSES,
       CAM_FEATURE_ELEMENTS, RISE_MASKS)
