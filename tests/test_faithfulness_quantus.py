"""The faithfulness measures against Quantus on a small PyTorch CNN exported to ONNX,
with the same maps and the same perturbation settings.

- Deletion: Quantus's RegionPerturbation (most relevant first, 8 px patches = the
  cells of a 7 x 7 grid on 56 px, grey 0.5 baseline) gives each step's score drop; the
  curve is the clean score minus those drops.
- Insertion: RegionPerturbation run from the blurred image, each patch "perturbed" back
  to the clean image's pixels.
- Faithfulness correlation: FaithfulnessCorrelation with our subsets as its draw.
- ROAD: Quantus reports, per image and fraction, only whether the most-relevant-first
  copy keeps its class (0/1) and adds unseeded noise; we report log-odds both ways with
  seeded noise. With the noise off, its 0/1 equals the sign of our MoRF log-odds (two
  classes), and its imputation equals ours.

Scores are log-odds: Quantus reads the class output of a wrapper whose outputs are
z_c - z_other. Needs torch, onnxscript and quantus (the `bench` extra); skipped without.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
quantus = pytest.importorskip("quantus")

from harness.execution.plan import image_hashes  # noqa: E402
from harness.numerics import faithfulness as fa  # noqa: E402
from harness.numerics.imputation import impute  # noqa: E402
from harness.runner import Evaluation, score  # noqa: E402
from harness.salience.batched import make_baseline  # noqa: E402
from harness.salience.curves import rng_for  # noqa: E402
from harness.salience.settings import SalienceConfig  # noqa: E402
from tests.torch_nets import SmallCNN, export  # noqa: E402

SIZE, GRID, SEED = 56, 7, 3


class LogOdds(torch.nn.Module):
    """The net's two log-odds, z_c - z_other, as outputs; grey 1-channel input repeated
    to RGB with ``grey``."""

    def __init__(self, net, grey=False):
        super().__init__()
        self.net, self.grey = net, grey

    def forward(self, x):
        z = self.net(x.repeat(1, 3, 1, 1) if self.grey else x)
        return torch.stack([z[:, 0] - z[:, 1], z[:, 1] - z[:, 0]], dim=1)


def detail_net(x):
    """A net that reads fine detail: its class-0 log-odds are about +3 on the noise
    images ``x`` and -2 once they are smoothed, so hiding, imputing or revealing moves
    them across the decision (a random head barely moves and would make every comparison
    below pass whatever the copies were)."""
    torch.manual_seed(0)
    net = SmallCNN(classes=2).eval()
    with torch.no_grad():
        smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
        moved = (net.features(smooth) - net.features(x)).mean(dim=(0, 2, 3))
        net.fc.weight.zero_()
        net.fc.weight[0] = -4 * moved / moved.norm() ** 2
        net.fc.bias.zero_()
        middle = (net(x)[:, 0].mean() + net(smooth)[:, 0].mean()) / 2
        net.fc.bias[0] = -middle
    return net


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, SIZE, SIZE, 3), np.uint8)
    images[3:] = images[3:, ..., :1]  # grey images for ROAD (Quantus imputes one channel)
    net = detail_net(torch.from_numpy(nchw(images / np.float32(255))))
    path = tmp_path_factory.mktemp("quantus") / "net.onnx"
    return net, export(net, path, SIZE), images


def run(path, images, measures, baseline=0.5):
    kept = {}
    scored = score([str(path)], images, Evaluation(
        measures=measures, seed=SEED, salience=SalienceConfig(baseline=baseline),
        on_model=lambda clf, m: kept.update(maps=m)))
    frame = scored.per_image
    values = {m: frame.filter(frame["measure"] == m)["value"].to_numpy()
              for m in frame["measure"].unique()}
    return kept["maps"], values


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32)


def pixel_maps(raw):
    """Grid maps repeated over their 8 x 8 cells: ``(N, 1, H, W)``."""
    cell = SIZE // GRID
    return np.repeat(np.repeat(raw, cell, axis=1), cell, axis=2)[:, None].astype(np.float32)


def region_curve(model, x, a, y, perturb_func, perturb_func_kwargs=None):
    """Scores along RegionPerturbation's most-relevant-first curve: clean, then each step."""
    metric = quantus.RegionPerturbation(
        patch_size=SIZE // GRID, regions_evaluation=GRID * GRID, order="morf", normalise=False,
        perturb_func=perturb_func, perturb_func_kwargs=perturb_func_kwargs or {},
        disable_warnings=True)
    drops = np.array(metric(model=model, x_batch=x, y_batch=y, a_batch=a, softmax=False,
                            channel_first=True, batch_size=len(x), device="cpu"))
    with torch.no_grad():
        clean = model(torch.from_numpy(x)).numpy()[np.arange(len(x)), y]
    return np.concatenate([clean[:, None], clean[:, None] - drops], axis=1)


def test_deletion_and_insertion_equal_region_perturbation(setup):
    from harness.measures.deletion import auc

    net, path, images = setup
    maps, ours = run(path, images[:3], "deletion,insertion")
    x = nchw(images[:3] / np.float32(255))
    y = maps.clean.predicted
    a = pixel_maps(maps.clean.raw)
    model = LogOdds(net).eval()
    deletion = region_curve(model, x, a, y, quantus.functions.perturb_func.
                            batch_baseline_replacement_by_indices, {"perturb_baseline": 0.5})
    np.testing.assert_allclose(ours["deletion"], auc(deletion), atol=1e-4)
    assert np.ptp(deletion, axis=1).min() > 2  # the curves fall through the decision

    blurred = nchw(make_baseline(images[:3] / np.float32(255), "blur", GRID))
    flat_clean = x.reshape(len(x), -1)

    def reveal(arr, indices, **kwargs):  # the patch goes back to the clean image's pixels
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = flat_clean[rows, indices]
        return out

    insertion = region_curve(model, blurred, a, y, reveal)
    np.testing.assert_allclose(ours["insertion"], auc(insertion), atol=1e-4)


def test_faithfulness_correlation_equals_quantus(setup, monkeypatch):
    net, path, images = setup
    maps, ours = run(path, images[:3], "faithfulness_correlation")
    x = nchw(images[:3] / np.float32(255))
    cells = fa.cell_index((SIZE, SIZE), (GRID, GRID))
    draws = []  # Quantus draws run by run, image by image: ours in that order
    subsets = [fa.subset_hidden(GRID * GRID, rng_for(SEED, h, "subsets"))
               for h in image_hashes(images[:3])]
    for s in range(1, fa.SUBSETS + 1):
        for hidden in subsets:
            pixels = np.flatnonzero(hidden[s][cells])
            draws.append(np.concatenate([pixels + c * SIZE * SIZE for c in range(3)]))
    queue = iter(draws)
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(queue))
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=fa.SUBSETS, subset_size=len(draws[0]), perturb_baseline=0.5,
        normalise=False, abs=False, return_aggregate=False, disable_warnings=True)
    theirs = metric(model=LogOdds(net).eval(), x_batch=x, y_batch=maps.clean.predicted,
                    a_batch=pixel_maps(maps.clean.raw), softmax=False, channel_first=True,
                    batch_size=len(x), device="cpu")
    np.testing.assert_allclose(ours["faithfulness_correlation"], theirs, atol=1e-4)


def test_road_agrees_with_quantus_without_noise(setup, monkeypatch):
    from quantus.helpers.model.pytorch_model import PyTorchModel

    net, path, images = setup
    grey = images[3:]
    monkeypatch.setattr(fa, "ROAD_NOISE", 0.0)
    maps, _ = run(path, grey, "road")
    h = SIZE * SIZE
    pixel_ranks = [fa.ranks(m, rng_for(SEED, k, "road-order")) for m, k in
                   zip(_upsampled(maps.clean.raw), image_hashes(grey), strict=True)]
    metric = quantus.ROAD(percentages=list(fa.ROAD_PERCENTS), noise=0.0, normalise=False,
                          disable_warnings=True)
    metric.a_size = h
    x = nchw(grey[..., :1] / np.float32(255))
    a = np.stack([-r.reshape(1, SIZE, SIZE) for r in pixel_ranks]).astype(np.float32)
    model = PyTorchModel(LogOdds(net, grey=True).eval(), channel_first=True, softmax=False,
                         device="cpu")
    kept = metric.evaluate_batch(model=model, x_batch=x, y_batch=maps.clean.predicted,
                                 a_batch=a)[0]
    morf = maps.curves["road"].raw[:, 0, :len(fa.ROAD_PERCENTS)]
    assert np.array_equal(kept, (morf > 0).astype(int))
    assert kept.min() == 0 and kept.max() == 1  # the class flips along the curve

    removed = fa.road_removed(pixel_ranks[0], (SIZE, SIZE))
    ours = impute(grey[:1] / np.float32(255), removed, source=np.zeros(len(removed), int))
    for j in (0, 4, 8, 13):
        theirs = quantus.functions.perturb_func.noisy_linear_imputation(
            x[0], np.flatnonzero(removed[j]), noise=0.0)
        np.testing.assert_allclose(ours[j, ..., 0], theirs[0], atol=1e-4)


def _upsampled(raw):
    from harness.maps import upsample

    return upsample(raw, (SIZE, SIZE))
