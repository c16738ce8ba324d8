"""Zoo manifests (TOML): which models to score, their families and preprocessing.

```toml
data = "data.npz"                   # optional: the zoo's own image set
split = "test"                      # optional: which split of it to score
out_of_set = ["out_of_set_faces.npz"]

[[model]]
name = "faces-xent-1"
path = "faces-xent-1.onnx"          # relative to the manifest
family = "faces-xent"               # optional
seed = 1                            # optional, informative
test_accuracy = 0.95                # optional, informative
# optional overrides of the ONNX metadata (docs/measures.md):
# input_size = [64, 64], mean = [...], std = [...], layout = "NCHW", color = "RGB",
# classes = ["face", "non_face"], output = "logits", output_name = "logits"
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.errors import HarnessError, excerpt
from harness.io import is_file
from harness.model.spec import COLORS, LAYOUTS, OUTPUT_KINDS, ModelSpec, pick
from harness.tomlfile import check_keys, read_toml

_TOP_KEYS = {"data", "split", "out_of_set", "model"}
_MODEL_KEYS = {"name", "path", "family", "seed", "test_accuracy", "input_size", "mean", "std",
               "layout", "color", "classes", "output", "output_name"}


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One manifest entry: the file, its declared preprocessing, and what we know of it."""

    path: Path
    spec: ModelSpec
    seed: int | None = None
    test_accuracy: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class Zoo:
    """A parsed manifest; paths are resolved against its folder."""

    manifest: Path
    models: tuple[ZooModel, ...]
    data: Path | None = None
    split: str | None = None
    out_of_set: tuple[Path, ...] = ()


def builtin_manifest() -> Path:
    """The built-in zoo shipped in a source checkout: ``model_zoo/faces/manifest.toml``."""
    path = Path(__file__).resolve().parents[2] / "model_zoo" / "faces" / "manifest.toml"
    if not path.is_file():
        raise HarnessError(f"{path}: the built-in zoo is missing; install from a source "
                           "checkout (pip install -e .) or pass --zoo MANIFEST")
    return path


def _check_types(entry: dict, where: str) -> None:
    """Refuse a manifest entry's value of the wrong kind, naming the key."""

    def numbers(v):
        return isinstance(v, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in v)

    kinds = {"path": (lambda v: isinstance(v, str), "a path (a string)"),
             "name": (lambda v: isinstance(v, str), "a string"),
             "family": (lambda v: isinstance(v, str), "a string"),
             "output_name": (lambda v: isinstance(v, str), "a string"),
             "classes": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                         "a list of strings"),
             "mean": (numbers, "a list of numbers"), "std": (numbers, "a list of numbers"),
             "input_size": (lambda v: numbers(v) and len(v) == 2 and all(
                 isinstance(x, int) and x >= 1 for x in v), "[height, width] in pixels"),
             "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
             "test_accuracy": (lambda v: numbers([v]), "a number")}
    for key, (ok, kind) in kinds.items():
        if key in entry and not ok(entry[key]):
            raise HarnessError(f"{where}: {key} must be {kind}, got {excerpt(entry[key])}")


def read_manifest(path) -> Zoo:
    """Parse and validate a zoo manifest.

    Raises:
        HarnessError: missing file, bad TOML, unknown keys, missing model files.
    """
    path = Path(path)
    doc = read_toml(path, "zoo manifest")
    check_keys(doc, _TOP_KEYS, str(path))
    entries = doc.get("model", [])
    if not isinstance(entries, list) or not entries:
        raise HarnessError(f"{path}: no [[model]] entries")
    root = path.parent
    models = []
    for i, entry in enumerate(entries):
        where = f"{path}: model {i + 1}"
        check_keys(entry, _MODEL_KEYS, where)
        if "path" not in entry:
            raise HarnessError(f"{where}: needs a 'path'")
        _check_types(entry, where)
        file = root / entry["path"]
        if not is_file(file):
            raise HarnessError(f"{where}: {excerpt(str(file), 200)} does not exist")
        choices = {key: pick(entry[key], allowed, f"{where}: {key}")
                   for key, allowed in (("layout", LAYOUTS), ("color", COLORS),
                                        ("output", OUTPUT_KINDS)) if key in entry}
        spec = ModelSpec(
            input_size=tuple(entry["input_size"]) if "input_size" in entry else None,
            mean=tuple(entry["mean"]) if "mean" in entry else None,
            std=tuple(entry["std"]) if "std" in entry else None,
            layout=choices.get("layout"), color=choices.get("color"),
            classes=tuple(entry["classes"]) if "classes" in entry else None,
            output=choices.get("output"), output_name=entry.get("output_name"),
            family=entry.get("family"), name=entry.get("name", file.stem))
        models.append(ZooModel(file, spec, entry.get("seed"), entry.get("test_accuracy")))
    for key in ("data", "split"):
        if key in doc and not isinstance(doc[key], str):
            raise HarnessError(f"{path}: {key} must be a string")
    if not isinstance(doc.get("out_of_set", []), list) or not all(
            isinstance(p, str) for p in doc.get("out_of_set", [])):
        raise HarnessError(f"{path}: out_of_set must be a list of paths")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise HarnessError(f"{path}: model names repeat")
    return Zoo(path, tuple(models), root / doc["data"] if "data" in doc else None,
               doc.get("split"), tuple(root / p for p in doc.get("out_of_set", [])))


@dataclasses.dataclass(frozen=True)
class Sources:
    """What a run reads: its zoos and the image sets it scores."""

    zoos: list[Zoo]
    data: Path | None
    split: str | None
    out_of_set: list[Path]


def run_sources(zoo, models, data, split, out_of_set) -> Sources:
    """The zoo manifests a run reads (the built-in zoo when neither zoos nor models are
    named), and its image sets: those given, else the first zoo's with data."""
    manifests = list(zoo) or ([] if models else [builtin_manifest()])
    zoos = [read_manifest(m) for m in manifests]
    own = next((z for z in zoos if z.data is not None), None) if data is None else None
    return Sources(zoos, data or (own.data if own else None),
                   split or (own.split if own else None),
                   list(out_of_set) or (list(own.out_of_set) if own else []))


def export(manifest, folder) -> list[Path]:
    """Write a zoo as plain files a user can point the harness at: ``models/*.onnx``,
    its in-set images as a folder of PNGs with labels from the sub-folder names and the
    human maps under ``masks/``, each out-of-set set as a folder, a ``zoo.toml`` naming
    them all, and a ``run.toml`` of settings. Returns the files written.

    Raises:
        HarnessError: ``folder`` exists and is not empty.
    """
    import shutil

    import numpy as np
    from PIL import Image

    from harness.inputs.images import load_image_set

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise HarnessError(f"{folder}: not empty; export the zoo into a new folder")
    zoo = read_manifest(manifest)
    written = []

    def png(array, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        written.append(path)

    def images(image_set, into: Path) -> None:
        for i, image in enumerate(image_set.images):
            label = "" if image_set.labels is None else \
                f"{image_set.label_names[image_set.labels[i]]}/"
            png(image, into / f"{label}{i:03d}.png")
            if image_set.masks is not None and image_set.masks[i].any():
                png(image_set.masks[i].astype(np.uint8) * 255,
                    into / "masks" / f"{label}{i:03d}.png")

    (folder / "models").mkdir(parents=True)
    lines = ['data = "images"']
    if zoo.out_of_set:
        lines.append("out_of_set = [" + ", ".join(f'"{p.stem}"' for p in zoo.out_of_set) + "]")
    for m in zoo.models:
        target = folder / "models" / m.path.name
        shutil.copyfile(m.path, target)
        written.append(target)
        lines += ["", "[[model]]", f'name = "{m.spec.name}"', f'path = "models/{m.path.name}"']
        if m.spec.family:
            lines.append(f'family = "{m.spec.family}"')
    if zoo.data is not None:
        images(load_image_set(zoo.data, split=zoo.split), folder / "images")
    for path in zoo.out_of_set:
        images(load_image_set(path), folder / path.stem)
    for name, text in (("zoo.toml", "\n".join(lines) + "\n"),
                       ("run.toml", '# settings of a quick run: paths are relative to this file\n'
                                    'zoo = ["zoo.toml"]\nlimit = 20\n\n[salience]\n'
                                    'method = "cam"\n')):
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written
