"""Build the built-in face / non-face data set from images that ship inside scikit-image
and scikit-learn (nothing is downloaded).

    python model_zoo/faces/make_data.py      # writes data.npz and out_of_set_*.npz here

In-set (data.npz), 300 images, 64 x 64 RGB (grey replicated; every source is turned
grey so colour cannot give the class away):
- face: the 100 aligned 25 x 25 face crops of ``skimage.data.lfw_subset()``;
- non_face: its 100 non-face crops plus 100 random crops of natural images (crop side
  25..120 px, resized to 25 px) from scikit-image's coffee, brick, grass, gravel, coins,
  horse, hubble_deep_field, moon, page and text, and scikit-learn's
  flower.jpg: the lfw non-faces alone are mostly flat textures;
- every 25 px crop is upsampled to 64 px (bilinear), the zoo's input size: big enough
  for three convolutions to leave a 16 x 16 feature map;
- split: seeded and stratified, 60 % train, 20 % validation, 20 % test, in ``split``;
- masks: for each face, the face region a person would mark on these aligned crops: an
  ellipse centred at (row 12.5, column 12.0) of the 25 px crop with semi-axes 7.5 rows
  and 7.0 columns, which covers both eyes (row ~8), the nose and the mouth (row ~18)
  of the mean face; scaled to 64 px. Non-faces have an empty mask.

Out-of-set (never used above):
- out_of_set_faces.npz: faces of people and of another species, cropped like lfw
  (eyes at ~1/3 height): the astronaut (skimage ``astronaut``), the cameraman
  (``camera``) and the cat (``chelsea``), three crops each at 0.9x, 1x and 1.1x scale;
- out_of_set_scenes.npz: six random crops of scenes: skimage ``rocket`` and
  scikit-learn ``china.jpg``.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_images

HERE = Path(__file__).parent
SEED = 2023
SIZE = 64
CROP = 25
LABELS = ("face", "non_face")
ELLIPSE = {"row": 12.5, "col": 12.0, "half_rows": 7.5, "half_cols": 7.0}  # in 25 px units


def grey(image) -> np.ndarray:
    """Any image -> float grey in [0, 1] (BT.601 luma, as Pillow's "L")."""
    a = np.asarray(image, np.float64)
    if a.max() > 1.0:
        a = a / 255.0
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
    return a


def to_input(crop: np.ndarray) -> np.ndarray:
    """A grey crop of any size -> 25 px (area resampling) -> 64 px bilinear, RGB uint8."""
    im = Image.fromarray(np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8))
    if im.size != (CROP, CROP):
        im = im.resize((CROP, CROP), Image.Resampling.BOX)
    im = im.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.repeat(np.asarray(im)[..., None], 3, axis=-1)


def face_mask() -> np.ndarray:
    """The ellipse of ``ELLIPSE`` at 64 px: pixel centres in 25 px units."""
    centres = (np.arange(SIZE) + 0.5) * CROP / SIZE
    r = (centres[:, None] - ELLIPSE["row"]) / ELLIPSE["half_rows"]
    c = (centres[None, :] - ELLIPSE["col"]) / ELLIPSE["half_cols"]
    return r ** 2 + c ** 2 <= 1.0


def natural_sources() -> dict[str, np.ndarray]:
    names = ["coffee", "brick", "grass", "gravel", "coins", "horse", "hubble_deep_field", "moon",
             "page", "text"]
    sources = {name: grey(getattr(skdata, name)()) for name in names}
    sample = load_sample_images()
    for fname, image in zip(sample.filenames, sample.images, strict=True):
        if fname.endswith("flower.jpg"):
            sources["sklearn_flower"] = grey(image)
    return sources


def random_crops(sources: dict, count: int, rng) -> tuple[list, list]:
    crops, notes = [], []
    names = sorted(sources)
    for _ in range(count):
        name = names[rng.integers(len(names))]
        img = sources[name]
        side = int(rng.integers(CROP, min(120, *img.shape[:2]) + 1))
        y = int(rng.integers(0, img.shape[0] - side + 1))
        x = int(rng.integers(0, img.shape[1] - side + 1))
        crops.append(to_input(img[y:y + side, x:x + side]))
        notes.append(f"{name}[{y}:{y + side}, {x}:{x + side}]")
    return crops, notes


def stratified_split(labels: np.ndarray, rng) -> np.ndarray:
    split = np.empty(len(labels), dtype="<U5")
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_train, n_val = int(0.6 * len(idx)), int(0.2 * len(idx))
        split[idx[:n_train]] = "train"
        split[idx[n_train:n_train + n_val]] = "val"
        split[idx[n_train + n_val:]] = "test"
    return split


def face_crops(image, name, box) -> tuple[list, list]:
    """Three crops of one face at 0.9x, 1x and 1.1x of ``box = (top, left, side)``."""
    img = grey(image)
    top, left, side = box
    crops, notes = [], []
    for scale in (0.9, 1.0, 1.1):
        s = int(round(side * scale))
        y = int(np.clip(top + (side - s) / 3, 0, img.shape[0] - s))
        x = int(np.clip(left + (side - s) / 2, 0, img.shape[1] - s))
        crops.append(to_input(img[y:y + s, x:x + s]))
        notes.append(f"{name} face, {name}[{y}:{y + s}, {x}:{x + s}]")
    return crops, notes


def main():
    rng = np.random.default_rng(SEED)
    lfw = skdata.lfw_subset()
    images = [to_input(c) for c in lfw]
    names = [f"lfw_subset[{i}]" for i in range(len(lfw))]
    labels = [0] * 100 + [1] * 100
    crops, notes = random_crops(natural_sources(), 100, rng)
    images += crops
    names += notes
    labels += [1] * len(crops)
    labels = np.array(labels, np.int64)
    masks = np.zeros((len(images), SIZE, SIZE), bool)
    masks[labels == 0] = face_mask()
    split = stratified_split(labels, rng)
    np.savez_compressed(HERE / "data.npz", images=np.stack(images), labels=labels,
                        label_names=np.array(LABELS), names=np.array(names), masks=masks,
                        split=split)

    faces, face_notes = [], []
    for image, name, box in ((skdata.astronaut(), "astronaut", (52, 147, 150)),
                             (skdata.camera(), "camera", (94, 150, 112)),
                             (skdata.chelsea(), "chelsea", (20, 100, 280))):
        c, n = face_crops(image, name, box)
        faces += c
        face_notes += n
    np.savez_compressed(HERE / "out_of_set_faces.npz", images=np.stack(faces),
                        names=np.array(face_notes))
    sample = load_sample_images()
    china = next(i for f, i in zip(sample.filenames, sample.images, strict=True)
                 if f.endswith("china.jpg"))
    scenes, scene_notes = random_crops({"rocket": grey(skdata.rocket()),
                                        "sklearn_china": grey(china)}, 6, rng)
    np.savez_compressed(HERE / "out_of_set_scenes.npz", images=np.stack(scenes),
                        names=np.array(scene_notes))
    counts = {str(k): int(v) for k, v in zip(*np.unique(split, return_counts=True), strict=True)}
    print(f"{len(images)} images ({int((labels == 0).sum())} faces), split {counts}; "
          f"out-of-set: {len(faces)} faces, {len(scenes)} scenes")


if __name__ == "__main__":
    main()
