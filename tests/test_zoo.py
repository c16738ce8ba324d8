import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from harness import OnnxClassifier
from harness.cli import cli
from harness.errors import HarnessError
from harness.inputs.images import load_image_set
from harness.inputs.zoo import builtin_manifest, read_manifest

ZOO = read_manifest(builtin_manifest())


def test_builtin_zoo_shape():
    assert len(ZOO.models) == 15
    families = {m.spec.family for m in ZOO.models}
    assert families == {"faces-xent", "faces-cyborg", "faces-guided"}
    assert ZOO.split == "test" and len(ZOO.out_of_set) == 2


@pytest.mark.parametrize("entry", ZOO.models, ids=lambda m: m.name)
def test_committed_model_matches_manifest_accuracy(entry):
    data = load_image_set(ZOO.data, split=ZOO.split)
    clf = OnnxClassifier(entry.path, entry.spec)
    assert clf.family == entry.spec.family and clf.classes == ("face", "non_face")
    accuracy = float((clf.predict_proba(data.pixels()).argmax(1) == data.labels).mean())
    assert accuracy == pytest.approx(entry.test_accuracy, abs=1e-4)


def test_builtin_data():
    test = load_image_set(ZOO.data, split="test")
    assert len(test) == 60 and test.size == (64, 64)
    assert test.label_names == ("face", "non_face")
    assert np.array_equal(test.has_mask, test.labels == 0)  # faces carry the human map
    for path in ZOO.out_of_set:
        assert load_image_set(path).size == (64, 64)


def test_zoo_list_cli():
    res = CliRunner().invoke(cli, ["zoo", "list"])
    assert res.exit_code == 0, res.output
    assert "faces-guided-5  faces-guided  64x64 RGB" in res.output


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[[model]]\npath = "x.onnx"\nfamilly = "a"\n')
    with pytest.raises(HarnessError, match="unknown key 'familly'; did you mean 'family'"):
        read_manifest(bad)
    bad.write_text('[[model]]\npath = "x.onnx"\nfamily = "a"\n')
    with pytest.raises(HarnessError, match="does not exist"):
        read_manifest(bad)
    with pytest.raises(HarnessError, match="no such zoo manifest"):
        read_manifest(tmp_path / "nope.toml")
    with pytest.raises(HarnessError, match="no images in split 'tset'"):
        load_image_set(ZOO.data, split="tset")


def test_zoo_export_writes_files_that_hold_the_same_study(tmp_path):
    res = CliRunner().invoke(cli, ["zoo", "export", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    demo = tmp_path / "demo"
    zoo = read_manifest(builtin_manifest())
    mine = read_manifest(demo / "zoo.toml")
    assert [m.spec.name for m in mine.models] == [m.spec.name for m in zoo.models]
    assert [m.spec.family for m in mine.models] == [m.spec.family for m in zoo.models]
    for a, b in zip(mine.models, zoo.models, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
    original = load_image_set(zoo.data, split=zoo.split)
    exported = load_image_set(demo / "images")

    def by_pixels(s):
        return sorted((hashlib.sha256(im.tobytes()).hexdigest(), s.label_names[lab],
                       int(s.masks[i].sum()) if s.masks is not None else 0)
                      for i, (im, lab) in enumerate(zip(s.images, s.labels, strict=True)))

    assert by_pixels(exported) == by_pixels(original)  # pixels, labels and human maps
    for path in zoo.out_of_set:
        assert len(load_image_set(demo / path.stem)) == len(load_image_set(path))
    again = CliRunner().invoke(cli, ["zoo", "export", str(demo)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_limit_draws_the_labels_in_the_whole_sets_proportion(tmp_path):
    """`--limit 20` on an exported folder once took only its first label folder (faces):
    the draw keeps each label's share within one image, is seeded and nested."""
    import json

    from harness.inputs.images import stratified_order

    assert CliRunner().invoke(cli, ["zoo", "export", str(tmp_path / "demo")]).exit_code == 0
    demo = load_image_set(tmp_path / "demo" / "images")
    share = np.bincount(demo.labels) / len(demo)
    for limit in (7, 20, 40):
        drawn = demo.sample(limit, seed=3)
        assert np.abs(np.bincount(drawn.labels, minlength=len(share)) - limit * share).max() \
            <= 1, limit
    small, large = (set(demo.sample(k, seed=3).names) for k in (20, 40))
    assert small < large  # nested
    assert set(demo.sample(20, seed=4).names) != small  # seeded
    labels = np.random.default_rng(0).integers(0, 3, 101)  # three labels, uneven
    order = stratified_order(labels, 101, seed=0)
    for limit in range(1, 102):
        counts = np.bincount(labels[order[:limit]], minlength=3)
        assert np.abs(counts - limit * np.bincount(labels) / 101).max() <= 1, limit
    res = CliRunner().invoke(cli, ["run", "--zoo", str(tmp_path / "demo" / "zoo.toml"),
                                   "--data", str(tmp_path / "demo" / "images"), "--limit", "20",
                                   "--seed", "3", "--measures", "entropy", "--method", "cam",
                                   "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["image_set_hash"] == demo.sample(20, seed=3).hash
