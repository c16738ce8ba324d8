import numpy as np
import pytest
from PIL import Image

from harness.errors import HarnessError
from harness.inputs.images import load_image_set


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_folder_labels_from_subfolders_and_masks(tmp_path, rng):
    for label in ("real", "synthetic"):
        for i in range(2):
            _png(tmp_path / label / f"{i}.png", rng.integers(0, 255, (8, 8, 3), np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    _png(tmp_path / "masks" / "real" / "1.png", mask)
    data = load_image_set(tmp_path)
    assert data.names == ("real/0.png", "real/1.png", "synthetic/0.png", "synthetic/1.png")
    assert data.label_names == ("real", "synthetic") and data.labels.tolist() == [0, 0, 1, 1]
    assert data.has_mask.tolist() == [False, True, False, False]
    assert data.masks[1].sum() == 9
    assert data.images.shape == (4, 8, 8, 3) and data.images.dtype == np.uint8


def test_csv_labels_grey_and_mixed_sizes(tmp_path, rng):
    _png(tmp_path / "a.png", rng.integers(0, 255, (8, 8), np.uint8))  # grey
    _png(tmp_path / "b.png", rng.integers(0, 255, (8, 8, 3), np.uint8))
    _png(tmp_path / "c.png", rng.integers(0, 255, (16, 12, 3), np.uint8))  # resized
    (tmp_path / "labels.csv").write_text("path,label\na.png,x\nb.png,y\nc.png,x\n")
    data = load_image_set(tmp_path)
    assert data.images.shape == (3, 8, 8, 3)
    assert [data.label_names[i] for i in data.labels] == ["x", "y", "x"]
    grey = data.images[0]
    assert np.array_equal(grey[..., 0], grey[..., 1])


def test_npz(tmp_path, rng):
    images = rng.random((4, 6, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "set.npz", images=images, labels=np.array(["a", "b", "a", "b"]),
             masks=np.ones((4, 6, 6), bool))
    data = load_image_set(tmp_path / "set.npz")
    assert data.images.dtype == np.uint8 and data.labels.tolist() == [0, 1, 0, 1]
    assert np.allclose(data.pixels(), images, atol=1 / 255)


def test_single_image_file(tmp_path, rng):
    data = load_image_set(_png(tmp_path / "one.png", rng.integers(0, 255, (5, 7, 3), np.uint8)))
    assert data.images.shape == (1, 5, 7, 3) and data.labels is None


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file or folder"),
    ("empty", "no images found"),
    ("truncated", "cannot read image"),
    ("not_image", "cannot read image"),
    ("npz_without_images", "no 'images' array"),
    ("csv_missing_label", "no label for 1 image"),
])
def test_bad_image_sets(tmp_path, rng, case, message):
    root = tmp_path / "set"
    root.mkdir()
    target = root
    if case == "missing":
        target = tmp_path / "nope"
    elif case == "truncated":
        good = _png(root / "t.png", rng.integers(0, 255, (32, 32, 3), np.uint8))
        good.write_bytes(good.read_bytes()[:60])
    elif case == "not_image":
        (root / "x.jpg").write_text("this is text, not a JPEG")
    elif case == "npz_without_images":
        target = tmp_path / "bad.npz"
        np.savez(target, pictures=np.zeros((1, 2, 2, 3)))
    elif case == "csv_missing_label":
        _png(root / "a.png", rng.integers(0, 255, (4, 4, 3), np.uint8))
        _png(root / "b.png", rng.integers(0, 255, (4, 4, 3), np.uint8))
        (root / "labels.csv").write_text("a.png,x\n")
    with pytest.raises(HarnessError, match=message) as err:
        load_image_set(target)
    assert "\n" not in str(err.value)
