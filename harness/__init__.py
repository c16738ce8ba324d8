"""harness: rank image classifiers by how well their salience is grounded.

Heavy modules (onnxruntime, numba) are imported on first use so that the CLI's
``--help`` stays instant.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime and Numba share the cores; spinning OpenMP workers would fight ONNX
# Runtime's pool (2.5x slower on two cores). Must be set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["HarnessError", "ModelSpec", "OnnxClassifier", "load_image_set", "occlusion", "rise"]

_LAZY = {
    "HarnessError": "harness.errors",
    "ModelSpec": "harness.model",
    "OnnxClassifier": "harness.model",
    "load_image_set": "harness.data",
    "occlusion": "harness.salience",
    "rise": "harness.salience",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
