"""harness: rank image classifiers by how well their salience is grounded.

The public names below are imported on first use, so that the CLI's ``--help`` stays
instant (heavy modules: onnxruntime, numba).
"""

import os

__version__ = "0.1.0"

# ONNX Runtime and Numba share the cores; spinning OpenMP workers would fight ONNX
# Runtime's pool (2.5x slower on two cores). Must be set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_LAZY = {
    "HarnessError": "harness.errors",
    "ModelSpec": "harness.model.spec",
    "OnnxClassifier": "harness.model.classifier",
    "ImageSet": "harness.inputs.images",
    "load_image_set": "harness.inputs.images",
    "SalienceConfig": "harness.salience.settings",
    "occlusion": "harness.salience.occlusion",
    "rise": "harness.salience.rise",
    "rise_masks": "harness.salience.rise",
    "cam": "harness.salience.cam",
    "warmup": "harness.salience.precompile",
    "normalize": "harness.maps",
    "normalize_upsampled": "harness.maps",
    "scale": "harness.maps",
    "upsample": "harness.maps",
    "evaluate": "harness.runner",
    "required_passes": "harness.runner",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
