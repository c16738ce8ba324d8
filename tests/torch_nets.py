"""PyTorch networks the oracle tests export to ONNX (import only after
``pytest.importorskip("torch")``)."""

import torch


class SmallCNN(torch.nn.Module):
    """Two 3 x 3 convolutions (the second with stride 2), global average pooling, a
    linear head of ``classes`` outputs; ``features`` is the last spatial layer."""

    def __init__(self, classes: int):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def export(net, path, size: int, output: str = "logits"):
    """``net`` as an ONNX file of ``size`` px inputs with a dynamic batch axis."""
    torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), input_names=["image"],
                      output_names=[output], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("N")}}, external_data=False)
    return path
