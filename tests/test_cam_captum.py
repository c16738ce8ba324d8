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


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path_factory.mktemp("cam") / "net.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, external_data=False)
    return net, path


@pytest.mark.parametrize("target", [None, 2])
def test_cam_equals_layer_gradcam(exported, target):
    net, path = exported
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        chosen = net(x_t).argmax(1) if target is None else torch.full((4,), target)
    gradcam = captum_attr.LayerGradCam(net, net.features[-1])
    theirs = gradcam.attribute(x_t, target=chosen).detach().numpy()[:, 0]
    ours = cam(OnnxClassifier(path), x, target=target)
    np.testing.assert_allclose(scale(ours)[0], scale(theirs)[0], atol=1e-5)


# The heads deployed CNNs ship: Grad-CAM differentiates them exactly
# (harness.salience.head); Captum's LayerGradCam on the PyTorch original is the oracle.

def _features(act):
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 12, 3, stride=2, padding=1), act)


class MobileNetV3Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.Hardswish())
        self.head = torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(12, 16, 1), torch.nn.Hardswish(),
            torch.nn.Dropout(0.2), torch.nn.Flatten(), torch.nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.features(x))


class EfficientNetHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.SiLU())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Dropout(0.3), torch.nn.Linear(12, 3))

    def forward(self, x):
        return self.head(self.features(x))


class ConvNeXtHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.GELU())
        self.norm = torch.nn.LayerNorm(12)
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


class VGGHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _features(torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 8 * 8, 20),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                        torch.nn.Linear(20, 3))

    def forward(self, x):
        return self.head(self.features(x))


HEAD_NETS = {"mobilenet_v3": MobileNetV3Head, "efficientnet": EfficientNetHead,
             "convnext": ConvNeXtHead, "vgg": VGGHead}


@pytest.fixture(scope="module", params=sorted(HEAD_NETS))
def head_net(request, tmp_path_factory):
    torch.manual_seed(1)
    net = HEAD_NETS[request.param]().eval()
    with torch.no_grad():  # weights that make the classes' scores differ
        for p in net.parameters():
            p.mul_(2.0)
    path = tmp_path_factory.mktemp("heads") / f"{request.param}.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, external_data=False)
    return net, path


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("target", [None, 1])
def test_grad_cam_through_deployed_heads_equals_layer_gradcam(head_net, n, target):
    net, path = head_net
    x = np.random.default_rng(n).random((n, 16, 16, 3)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        chosen = net(x_t).argmax(1) if target is None else torch.full((n,), target)
    gradcam = captum_attr.LayerGradCam(net, net.features[-1])
    theirs = gradcam.attribute(x_t, target=chosen).detach().numpy()[:, 0]
    ours = cam(OnnxClassifier(path), x, target=target)
    np.testing.assert_allclose(scale(ours)[0], scale(theirs)[0], atol=1e-5)


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
    path = tmp_path / "binary.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"],
                      output_names=["prob"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, external_data=False)
    x = np.random.default_rng(n).random((n, 16, 16, 3)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    # Captum differentiates the one output (the sigmoid, a positive factor of the logit's
    # gradient per image): our class 1; class 0 is its negation
    theirs = captum_attr.LayerGradCam(net, net.features[-1]).attribute(
        x_t, target=0).detach().numpy()[:, 0]
    clf = OnnxClassifier(path)
    np.testing.assert_allclose(scale(cam(clf, x, target=1))[0], scale(theirs)[0], atol=1e-5)
    np.testing.assert_allclose(scale(cam(clf, x, target=0))[0], scale(-theirs)[0], atol=1e-5)
