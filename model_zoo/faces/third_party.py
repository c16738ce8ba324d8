"""Add real face / non-face classifiers that nobody on this team trained: the MTCNN RNet
(24 px) and ONet (48 px) of Zhang et al. 2016, with the weights that ship inside the
``facenet-pytorch`` wheel (no download at run time).

    pip install torch onnxscript && pip install --no-deps facenet-pytorch
    python model_zoo/faces/third_party.py     # writes model_zoo/faces/third_party/

``--no-deps`` matters: facenet-pytorch's own pins would pull an old torch and numpy < 2.
We never import the package (its __init__ needs `requests`); we only read its .pt files
with ``torch.load(weights_only=True)`` into the two small architectures written here.
Each network is exported with its classification head only, as probabilities named
``face_prob`` in the order (non_face, face), and with MTCNN's preprocessing declared:
x = (pixel * 255 - 127.5) / 128, i.e. mean 0.5 and std 128 / 255 in [0, 1] units.
The models are built on demand and not committed; the manifest lists their accuracy on
our test split (64 px images, resized by the harness to 24 and 48 px).
"""

import importlib.util
import sys
from pathlib import Path

import onnx
import torch
from torch import nn

HERE = Path(__file__).parent
OUT = HERE / "third_party"
ROOT = HERE.parent.parent


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)  # the Caffe weights' order
        return torch.softmax(self.dense5_1(self.prelu4(self.dense4(x))), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        return torch.softmax(self.dense6_1(self.prelu5(self.dense5(x))), dim=1)


def weights_file(name: str) -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("facenet-pytorch is not installed: pip install --no-deps facenet-pytorch")
    return Path(spec.submodule_search_locations[0]) / "data" / f"{name}.pt"


def build(net: nn.Module, name: str, size: int) -> Path:
    net.load_state_dict(torch.load(weights_file(name), weights_only=True))
    net.eval()
    path = OUT / f"mtcnn-{name}.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), input_names=["image"],
                      output_names=["face_prob"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 10)
    for node in proto.graph.node:  # stack traces hold local paths and line numbers
        del node.metadata_props[:]
        node.doc_string = ""
    meta = {"harness.input_size": f"{size},{size}", "harness.mean": "0.5,0.5,0.5",
            "harness.std": "0.50196,0.50196,0.50196", "harness.layout": "NCHW",
            "harness.color": "RGB", "harness.classes": "non_face,face",
            "harness.output": "probabilities"}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def main():
    sys.path.insert(0, str(ROOT))
    from harness.inputs.images import load_image_set
    from harness import OnnxClassifier

    OUT.mkdir(exist_ok=True)
    data = load_image_set(HERE / "data.npz", split="test")
    lines = ["# MTCNN networks from facenet-pytorch's weights: written by third_party.py.",
             'data = "../data.npz"', 'split = "test"', ""]
    for net, name, size in ((RNet(), "rnet", 24), (ONet(), "onet", 48)):
        path = build(net, name, size)
        clf = OnnxClassifier(path)
        # our labels are (face, non_face); MTCNN's outputs are (non_face, face)
        predicted = clf.predict_proba(data.pixels()).argmax(1)
        acc = float((predicted == 1 - data.labels).mean())
        print(f"mtcnn-{name}: test accuracy {acc:.3f}")
        lines += ["[[model]]", f'name = "mtcnn-{name}"', f'path = "{path.name}"',
                  f"test_accuracy = {acc:.4f}", ""]
    (OUT / "manifest.toml").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
