import numpy as np
import pytest

from harness import warmup
from tests.onnx_models import linear_model


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels():
    warmup()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def linear_weights(rng):
    """(2, 14, 14, 3) pixel-space weights of a two-class linear model."""
    return rng.normal(size=(2, 14, 14, 3)).astype(np.float32)


@pytest.fixture
def linear_path(tmp_path, linear_weights):
    return linear_model(tmp_path / "linear.onnx", linear_weights, bias=[0.1, -0.2])


@pytest.fixture
def images14(rng):
    return rng.random((5, 14, 14, 3)).astype(np.float32)


@pytest.fixture
def cnn_zoo(tmp_path):
    """A zoo of two small CNNs of one family and a third on its own, 8 labelled 32 px
    images with human maps and an out-of-set set: real maps (not flat), every measure
    defined, and a run long enough (about a second of passes) to be interrupted."""
    from tests.onnx_models import cnn_model

    root = tmp_path / "cnn_zoo"
    root.mkdir()
    meta = {"harness.classes": "face,other"}
    for name, seed in (("cnn1", 1), ("cnn2", 2), ("solo", 3)):
        cnn_model(root / f"{name}.onnx", size=32, widths=(8, 8), seed=seed, metadata=meta)
    gen = np.random.default_rng(7)
    images = (gen.random((8, 32, 32, 3)) * 255).astype(np.uint8)
    masks = np.zeros((8, 32, 32), bool)
    masks[:4, 8:24, 8:24] = True
    np.savez(root / "data.npz", images=images, labels=np.array(["face", "other"] * 4),
             masks=masks)
    np.savez(root / "elsewhere.npz", images=(gen.random((3, 32, 32, 3)) * 255).astype(np.uint8))
    (root / "manifest.toml").write_text(
        'data = "data.npz"\nout_of_set = ["elsewhere.npz"]\n'
        '[[model]]\npath = "cnn1.onnx"\nfamily = "cnn"\n'
        '[[model]]\npath = "cnn2.onnx"\nfamily = "cnn"\n'
        '[[model]]\npath = "solo.onnx"\n')
    return root / "manifest.toml"
