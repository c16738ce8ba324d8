"""CAM against Captum's LayerGradCam on a PyTorch CNN exported to ONNX. Needs torch,
captum and onnxscript (the `bench` extra); skipped without them."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
pytest.importorskip("onnxscript")

from harness import (  # noqa: E402
    OnnxClassifier,  # noqa: E402
    cam,
    scale,
)
from tests.torch_nets import SmallCNN, export  # noqa: E402


def nchw(x: np.ndarray):
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def assert_equals_layer_gradcam(net, path, x: np.ndarray, target):
    """Our Grad-CAM of the exported ``path`` equals Captum's LayerGradCam of ``net`` at
    its last feature layer, after normalisation, for the predicted class or ``target``."""
    x_t = nchw(x)
    with torch.no_grad():
        chosen = net(x_t).argmax(1) if target is None else torch.full((len(x),), target)
    gradcam = captum_attr.LayerGradCam(net, net.features[-1])
    theirs = gradcam.attribute(x_t, target=chosen).detach().numpy()[:, 0]
    ours = cam(OnnxClassifier(path), x, target=target)
    np.testing.assert_allclose(scale(ours)[0], scale(theirs)[0], atol=1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallCNN(classes=3).eval()
    return net, export(net, tmp_path_factory.mktemp("cam") / "net.onnx", 32)


@pytest.mark.parametrize("target", [None, 2])
def test_cam_equals_layer_gradcam(exported, target):
    net, path = exported
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    assert_equals_layer_gradcam(net, path, x, target)


# The heads deployed CNNs ship: Grad-CAM differentiates them exactly
# (harness.salience.head); Captum's LayerGradCam on the PyTorch original is the oracle.

def _features(act):
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 12, 3, stride=2, padding=1), act)


class FeaturesThenHead(torch.nn.Module):
    """``_features(act)`` followed by the head ``make_head()`` builds (after the
    features, so the seeded weights are drawn in the network's order)."""

    def __init__(self, act, make_head):
        super().__init__()
        self.features = _features(act)
        self.head = make_head()

    def forward(self, x):
        return self.head(self.features(x))


def mobilenet_v3_head():
    return FeaturesThenHead(torch.nn.Hardswish(), lambda: torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(12, 16, 1), torch.nn.Hardswish(),
        torch.nn.Dropout(0.2), torch.nn.Flatten(), torch.nn.Linear(16, 3)))


def efficientnet_head():
    return FeaturesThenHead(torch.nn.SiLU(), lambda: torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Dropout(0.3),
        torch.nn.Linear(12, 3)))


class ConvNeXtHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.GELU())
        self.norm = torch.nn.LayerNorm(12)
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


def vgg_head():
    return FeaturesThenHead(torch.nn.ReLU(), lambda: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12 * 8 * 8, 20), torch.nn.ReLU(),
        torch.nn.Dropout(0.5), torch.nn.Linear(20, 3)))


HEAD_NETS = {"mobilenet_v3": mobilenet_v3_head, "efficientnet": efficientnet_head,
             "convnext": ConvNeXtHead, "vgg": vgg_head}


@pytest.fixture(scope="module", params=sorted(HEAD_NETS))
def head_net(request, tmp_path_factory):
    torch.manual_seed(1)
    net = HEAD_NETS[request.param]().eval()
    with torch.no_grad():  # weights that make the classes' scores differ
        for p in net.parameters():
            p.mul_(2.0)
    return net, export(net, tmp_path_factory.mktemp("heads") / f"{request.param}.onnx", 16)


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("target", [None, 1])
def test_grad_cam_through_deployed_heads_equals_layer_gradcam(head_net, n, target):
    net, path = head_net
    x = np.random.default_rng(n).random((n, 16, 16, 3)).astype(np.float32)
    assert_equals_layer_gradcam(net, path, x, target)


class BinarySigmoidHead(torch.nn.Module):
    """A binary detector: one logit, a sigmoid."""

    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.ReLU())
        self.fc = torch.nn.Linear(12, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.features(x).mean(dim=(2, 3))))


@pytest.mark.parametrize("n", [1, 7])
def test_grad_cam_of_a_single_sigmoid_output_equals_layer_gradcam(tmp_path, n):
    torch.manual_seed(2)
    net = BinarySigmoidHead().eval()
    path = export(net, tmp_path / "binary.onnx", 16, output="prob")
    x = np.random.default_rng(n).random((n, 16, 16, 3)).astype(np.float32)
    x_t = nchw(x)
    # Captum differentiates the one output (the sigmoid, a positive factor of the logit's
    # gradient per image): our class 1; class 0 is its negation
    theirs = captum_attr.LayerGradCam(net, net.features[-1]).attribute(
        x_t, target=0).detach().numpy()[:, 0]
    clf = OnnxClassifier(path)
    np.testing.assert_allclose(scale(cam(clf, x, target=1))[0], scale(theirs)[0], atol=1e-5)
    np.testing.assert_allclose(scale(cam(clf, x, target=0))[0], scale(-theirs)[0], atol=1e-5)
