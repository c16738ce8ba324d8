"""The README and the guides whose examples the tests run, in the order their commands
build on one another (the guides took their sections from one README, in this order)."""

import re
from pathlib import Path

import numpy as np
from PIL import Image

from tests.onnx_models import cnn_model

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *(ROOT / "docs" / f"{name}.md" for name in (
    "running", "zoo", "ci", "parity", "scaling", "security", "python-api", "your-model",
    "measures", "benchmarks"))]


def blocks(kind: str) -> list[tuple[str, str]]:
    """(document name, text) of every ``kind`` fenced block, in order."""
    return [(path.name if path.name == "README.md" else f"docs/{path.name}", block)
            for path in DOCUMENTS
            for block in re.findall(rf"```{kind}\n(.*?)```", path.read_text(encoding="utf-8"),
                                    re.S)]


def needs(block: str) -> list[str]:
    """The modules a block says it needs on its first line (``# needs torch``)."""
    first = block.splitlines()[0] if block else ""
    return first.removeprefix("# needs ").replace(" and ", " ").split() \
        if first.startswith("# needs ") else []


def reader_files(folder: Path, per_label: int = 1) -> None:
    """What the guides assume a reader brings: ``model.onnx`` (a small CNN at 16 px) and
    ``images/<label>/`` with ``per_label`` labelled images of each of two labels."""
    cnn_model(folder / "model.onnx", 16, (4,))
    rng = np.random.default_rng(0)
    for label in ("face", "other"):
        (folder / "images" / label).mkdir(parents=True)
        for i in range(per_label):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(
                folder / "images" / label / f"{i}.png")
