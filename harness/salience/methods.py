"""The salience methods, each declared once: what a map costs, which settings shape it
(the cache key), whether its grid is fixed by the model, and how it is computed.

:data:`METHODS` is the one registry: settings validation, the pass count, the cache key,
the run's perturbations and the CLI's ``--method`` choices all ask it. Importing this
module loads no kernel (each method imports its own on first use), so the CLI can list
the choices instantly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class Method(Protocol):
    """A salience method.

    Attributes:
        name: the ``method`` setting.
        fixed_grid: the map's size is the model's (CAM's feature map), not ``grid``.
        seeded: the explainer draws random numbers from the settings' ``seed``, so the
            stability measure also reads a map made with the next seed (its own floor).
        key_fields: the settings that shape a map: they identify it in the cache and in
            the results' ``salience_config``.
    """

    name: str
    fixed_grid: bool
    seeded: bool
    key_fields: tuple[str, ...]

    def passes_per_image(self, settings) -> int:
        """Forward passes for one image's map beyond the image's own forward pass."""

    def explain(self, model, images, settings, target=None, clean=None) -> np.ndarray:
        """Raw maps ``(N, h, w) float32`` of ``images`` for ``target`` classes (None: the
        predicted ones), reusing the clean outputs ``clean`` when the caller has them."""

    def explain_with_outputs(self, model, images, settings, target=None):
        """``(outputs, maps)``: the model's ``(N, K)`` outputs on ``images`` and their raw
        maps, spending each forward pass once."""


class _Perturbing:
    """A black-box method: the clean pass first, then the perturbed copies."""

    fixed_grid = False
    revision = None  # bumped when a method's maps change for the same settings

    def explain_with_outputs(self, model, images, settings, target=None):
        outputs = model.forward(images)
        return outputs, self.explain(model, images, settings, target, outputs)


class Occlusion(_Perturbing):
    name = "occlusion"
    seeded = False
    key_fields = ("baseline", "grid", "method", "score", "window")

    def passes_per_image(self, settings) -> int:
        return (settings.grid - settings.window + 1) ** 2

    def explain(self, model, images, settings, target=None, clean=None) -> np.ndarray:
        from harness.salience.occlusion import occlusion

        return occlusion(model, images, grid=settings.grid, window=settings.window,
                         baseline=settings.baseline, target=target, score=settings.score,
                         batch_size=settings.batch_size, clean=clean,
                         incremental=settings.incremental)


class Rise(_Perturbing):
    name = "rise"
    seeded = True
    key_fields = ("baseline", "cell", "grid", "method", "n_masks", "p_keep", "score", "seed")
    # 2: scores centred on their mean over the masks (baseline-subtracted RISE); maps
    # cached or scored before that are another method's
    revision = 2

    def passes_per_image(self, settings) -> int:
        return settings.n_masks

    def explain(self, model, images, settings, target=None, clean=None) -> np.ndarray:
        from harness.salience.rise import rise

        return rise(model, images, n_masks=settings.n_masks, cell=settings.cell,
                    p_keep=settings.p_keep, seed=settings.seed, grid=settings.grid,
                    baseline=settings.baseline, target=target, score=settings.score,
                    batch_size=settings.batch_size, clean=clean)


class Cam:
    """Grad-CAM read from the graph: the maps come out of the image's own forward pass
    and the head's exact gradient, at the feature map's resolution (the settings do not
    shape them)."""

    name = "cam"
    fixed_grid = True
    seeded = False
    key_fields = ("method",)
    # 2: Grad-CAM through any supported head, in float64 (a GAP + linear head's maps
    # differ from revision 1's by float32 rounding only)
    revision = 2

    def passes_per_image(self, settings) -> int:
        return 0

    def explain(self, model, images, settings, target=None, clean=None) -> np.ndarray:
        from harness.salience.cam import cam

        return cam(model, images, target, settings.layer)

    def explain_with_outputs(self, model, images, settings, target=None):
        from harness.salience.cam import cam_with_outputs

        maps, outputs = cam_with_outputs(model, images, target, settings.layer)
        return outputs, maps


METHODS: dict[str, Method] = {m.name: m for m in (Occlusion(), Rise(), Cam())}

# How occlusion recomputes a window's copy (harness.salience.incremental): only what the
# window changes where that pays (auto), wherever the graph allows it (on), or in full.
INCREMENTAL = ("auto", "on", "off")

# Part of every salience map's cache key: raise it whenever a change alters the bytes of
# any map, so caches filled by older code miss instead of serving stale values (the
# faithfulness curves have their own, harness.salience.curves.CURVE_VERSION).
CODE_VERSION = "3"
