import numpy as np
import pytest

from harness.salience import warmup
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
