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
