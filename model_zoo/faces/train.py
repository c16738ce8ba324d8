"""Train the built-in zoo: three recipes x seeds 1..5 of one small face detector, exported
to ONNX with the harness metadata keys, and listed with their test accuracy in
manifest.toml.

    pip install -e '.[zoo]'          # torch (a CPU wheel is enough), onnxscript
    python model_zoo/faces/make_data.py
    python model_zoo/faces/train.py  # about 3 minutes on two cores

Recipes (Boyd et al., CYBORG, for the salience term):
- faces-xent: cross-entropy only;
- faces-cyborg: 0.5 * CE + 0.5 * MSE(CAM, human map), the CYBORG setting;
- faces-guided: 0.1 * CE + 0.9 * MSE(CAM, human map), strong guidance.
The CAM is the true class's class activation map on the last 16 x 16 feature map,
ReLU'd and min-max normalised per image; the human map is the face ellipse averaged down
to 16 x 16. The salience term is computed for faces only: non-faces have no marked
region, and an all-ones target is ill-posed after min-max normalisation.

Training is deterministic (fixed seeds, deterministic algorithms, two threads): a rerun
on the same torch build reproduces every .onnx file byte for byte.
"""

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import tomllib
import torch
from torch import nn

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
RECIPES = {"faces-xent": 1.0, "faces-cyborg": 0.5, "faces-guided": 0.1}
SEEDS = (1, 2, 3, 4, 5)
MEAN, STD = 0.5, 0.25
EPOCHS, BATCH, LR = 80, 32, 2e-3
CLASSES = ("face", "non_face")


class FaceCNN(nn.Module):
    """Three 3 x 3 convolutions (16, 32, 64 channels; the last two with stride 2), global
    average pooling and one linear layer: Grad-CAM of this head is its CAM."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(64, len(CLASSES))

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def logits_and_cam(self, x, classes):
        a = self.features(x)
        cam = torch.einsum("bk,bkhw->bhw", self.fc.weight[classes], a)
        return self.fc(a.mean(dim=(2, 3))), cam


def normalised(cam):
    cam = torch.relu(cam)
    lo = cam.amin(dim=(1, 2), keepdim=True)
    hi = cam.amax(dim=(1, 2), keepdim=True)
    return (cam - lo) / (hi - lo + 1e-8)


def load_split(name):
    with np.load(HERE / "data.npz", allow_pickle=False) as d:
        keep = d["split"] == name
        x = torch.from_numpy(d["images"][keep].transpose(0, 3, 1, 2).astype(np.float32) / 255)
        masks = torch.from_numpy(d["masks"][keep].astype(np.float32))
        return (x - MEAN) / STD, torch.from_numpy(d["labels"][keep]), masks


def train(alpha, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y, masks = load_split("train")
    human = nn.functional.avg_pool2d(masks[:, None], 4)[:, 0]  # 64 -> 16 px
    model = FaceCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-4)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            xb, yb, hb = x[idx], y[idx], human[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            hb = torch.where(flip[:, None, None], hb.flip(2), hb)
            logits, cam = model.logits_and_cam(xb, yb)
            loss = alpha * nn.functional.cross_entropy(logits, yb)
            faces = yb == 0
            if alpha < 1 and faces.any():
                loss = loss + (1 - alpha) * nn.functional.mse_loss(
                    normalised(cam[faces]), hb[faces])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def export(model, path, family):
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["image"],
                      output_names=["logits"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 10)  # loadable by ONNX Runtime >= 1.20
    for node in proto.graph.node:  # stack traces hold local paths and line numbers
        del node.metadata_props[:]
        node.doc_string = ""
    meta = {"harness.input_size": "64,64", "harness.mean": f"{MEAN},{MEAN},{MEAN}",
            "harness.std": f"{STD},{STD},{STD}", "harness.layout": "NCHW",
            "harness.color": "RGB", "harness.classes": ",".join(CLASSES),
            "harness.output": "logits", "harness.family": family}
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))  # every weight inline: the exporter's side file is not needed
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def test_accuracy(path):
    """Accuracy on the held-out split, measured the way the harness runs the model."""
    sys.path.insert(0, str(ROOT))
    from harness.inputs.images import load_image_set
    from harness import OnnxClassifier

    data = load_image_set(HERE / "data.npz", split="test")
    return float((OnnxClassifier(path).predict_proba(data.pixels()).argmax(1)
                  == data.labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder for the .onnx files and manifest.toml (default: here)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    entries = []
    for family in args.recipes.split(","):
        for seed in SEEDS:
            name = f"{family}-{seed}"
            path = args.out / f"{name}.onnx"
            export(train(RECIPES[family], seed), path, family)
            acc = test_accuracy(path)
            print(f"{name}: test accuracy {acc:.3f}", flush=True)
            entries.append((name, family, seed, acc))
    rel = Path(os.path.relpath(HERE, args.out)).as_posix()
    lines = ["# The built-in zoo: written by model_zoo/faces/train.py; data from make_data.py.",
             f'data = "{rel}/data.npz"', 'split = "test"',
             f'out_of_set = ["{rel}/out_of_set_faces.npz", "{rel}/out_of_set_scenes.npz"]', ""]
    for name, family, seed, acc in entries:
        lines += ["[[model]]", f'name = "{name}"', f'path = "{name}.onnx"',
                  f'family = "{family}"', f"seed = {seed}", f"test_accuracy = {acc:.4f}", ""]
    (args.out / "manifest.toml").write_text("\n".join(lines))
    tomllib.loads((args.out / "manifest.toml").read_text())


if __name__ == "__main__":
    main()
