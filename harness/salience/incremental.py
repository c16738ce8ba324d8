"""Incremental occlusion (Nakandala, Kumar and Papakonstantinou, SIGMOD 2019): an
occluded copy differs from the clean image only under its window, and in the early
layers only over that window's reach, so those layers are recomputed there alone.

The graph's local prefix (:mod:`harness.model.prefix`) is split at cut tensors into
segments. The clean images run once through the prefix with the cuts as outputs. For
each window, each segment then runs on a crop of its input: the clean tensor's crop with
the region the window changed pasted in (from the occluded image for the first segment,
from the previous segment's output after that). The crop holds everything the changed
region of the segment's output reads, starts at a multiple of the segment's stride and
lies inside the tensor, so at the image's borders its padding is the model's own; what
the crop's inner edges spoil is never read. At the frontier the changed region is
pasted into the clean tensor and the rest of the model runs at full size, batched
across windows and images. The scores equal the full recompute's up to float rounding;
the first image of each model is checked against it (:mod:`harness.salience.occlusion`).

The segments are chosen to minimise the predicted multiply-adds per window, host copies
counted: :func:`plan_for` says what it predicts, and ``auto`` takes the method from
:data:`WORTH` times fewer multiply-adds than a full pass on.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from harness.errors import HarnessError, NonFiniteOutput
from harness.model.prefix import Prefix, analyse, extract, with_explicit_pads
from harness.model.session import IOBINDING, Deadline, numeric_output
from harness.numerics.receptive import crops, reaches, reads, union
from harness.salience.scoring import class_scores, resolve_targets

WORTH = 1.3  # auto recomputes incrementally from this predicted ratio on
TOLERANCE = 1e-5  # largest relative score difference the self-check accepts
USED, REFUSED = "incremental", "incremental-refused"  # the model's execution markers
# rough multiply-add equivalents, on two cores, of the host work per window that the
# model's multiply-adds leave out: copying one float of a crop, and one segment's run
_COPY_MACS = 8
_CALL_MACS = 200_000
_LONGEST = 8  # cuts one segment may span (bounds the search)
_HELD_BYTES = 256 << 20  # cut tensors and output crops held at once


@dataclasses.dataclass(frozen=True)
class Segment:
    """The part of the prefix from cut ``start`` to cut ``stop``, run on crops.

    Attributes:
        lengths: ``(P, 2) int64`` each window's crop height and width, and
        starts: ``(P, 2) int64`` its start, in ``start``'s positions.
        output_starts: ``(P, 2) int64`` where the output crop starts, in ``stop``'s.
    """

    start: str
    stop: str
    lengths: np.ndarray
    starts: np.ndarray
    output_starts: np.ndarray


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one model's occlusion at one grid and window runs incrementally, or why not.

    Attributes:
        prefix: the graph's analysis.
        segments: empty when it cannot (``reason`` says why).
        changed: cut -> ``(P, 4) int64`` the box ``y0, y1, x0, x1`` each window changes.
        predicted: multiply-adds of a full pass over those of one incremental window.
        reason: why the graph cannot be recomputed incrementally, or None.
    """

    prefix: Prefix
    segments: tuple[Segment, ...]
    changed: dict[str, np.ndarray]
    predicted: float
    reason: str | None

    @property
    def frontier(self) -> str | None:
        return self.segments[-1].stop if self.segments else None


def _proto(model):
    import onnx

    return onnx.load(str(model.path)) if model.source is None \
        else onnx.load_from_string(model.source)


def plan_for(model, boxes: np.ndarray | None, key) -> Plan:
    """The plan for ``model`` whose windows cover the pixel ``boxes`` (``(P, 4)`` of
    ``y0, y1, x0, x1`` at the model's input size), built once per ``key`` (the grid and
    window; ``boxes`` is not read once it is built)."""
    plans = model.__dict__.setdefault("_incremental_plans", {})
    if key not in plans:
        if "_prefix" not in model.__dict__:
            model._prefix = analyse(_proto(model), model.input_size, model.layout)
        plans[key] = _plan(model._prefix, boxes)
    return plans[key]


def _plan(prefix: Prefix, boxes: np.ndarray) -> Plan:
    changed = _changed(prefix, boxes)
    cuts = prefix.cuts
    if len(cuts) < 2:
        return Plan(prefix, (), {}, 1.0, f"no tensor to cut at before {prefix.stop}")
    segment, cost = {}, {}
    for j in range(1, len(cuts)):
        for i in range(max(0, j - _LONGEST), j):
            segment[i, j], cost[i, j] = _segment(prefix, changed, cuts[i], cuts[j])
    best, came = {0: 0.0}, {}
    for j in range(1, len(cuts)):
        came[j] = min(range(max(0, j - _LONGEST), j), key=lambda i: best[i] + cost[i, j])
        best[j] = best[came[j]] + cost[came[j], j]
    done = {}
    for k in range(1, len(cuts)):
        node = prefix.producer(cuts[k])
        before = sum(n.macs for n in prefix.nodes if n.index <= node)
        frontier = prefix.geometry[cuts[k]]
        done[k] = best[k] + prefix.total_macs - before + \
            _COPY_MACS * int(np.prod(frontier.shape)) + _CALL_MACS
    k = last = min(done, key=done.get)
    chosen = []
    while k:
        chosen.append(segment[came[k], k])
        k = came[k]
    return Plan(prefix, tuple(reversed(chosen)), {t: changed[t] for t in cuts},
                prefix.total_macs / done[last], None)


def _changed(prefix: Prefix, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Every prefix tensor's box each window changes, ``(P, 4)``."""
    changed = {prefix.input: np.asarray(boxes, np.int64)}
    for node in prefix.nodes:
        size = prefix.geometry[node.output].size
        box = None
        for name in node.inputs:
            b = changed[name]
            y = reaches(node.maps[0], b[:, 0], b[:, 1], size[0])
            x = reaches(node.maps[1], b[:, 2], b[:, 3], size[1])
            box = _boxes(*y, *x) if box is None else _union(box, _boxes(*y, *x))
        changed[node.output] = box
    return changed


def _boxes(y0, y1, x0, x1) -> np.ndarray:
    """``(P, 4)`` boxes, those empty along either axis empty along both."""
    empty = (y0 >= y1) | (x0 >= x1)
    return np.where(empty[:, None], 0, np.stack([y0, y1, x0, x1], axis=1))


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = union(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
    x = union(a[:, 2], a[:, 3], b[:, 2], b[:, 3])
    return _boxes(*y, *x)


def _segment(prefix: Prefix, changed, start: str, stop: str) -> tuple[Segment, float]:
    """The segment from ``start`` to ``stop`` with its crops, and its predicted cost
    per window in multiply-adds."""
    nodes = prefix.node_range(start, stop)
    geo = prefix.geometry
    need = {stop: changed[stop]}
    for node in reversed(nodes):
        box = need.get(node.output)
        if box is None:
            continue
        for name in node.inputs:
            size = geo[name].size
            y = reads(node.maps[0], box[:, 0], box[:, 1], size[0])
            x = reads(node.maps[1], box[:, 2], box[:, 3], size[1])
            found = _boxes(*y, *x)
            need[name] = found if name not in need else _union(need[name], found)
    box, first = need[start], geo[start]
    starts, lengths, output_starts = [], [], []
    cost = np.full(len(box), float(_CALL_MACS))
    for axis in range(2):
        ratios = [geo[n.output].factor[axis] / first.factor[axis] for n in nodes]
        align = math.lcm(*(r.numerator for r in ratios))
        s, n = crops(box[:, 2 * axis], box[:, 2 * axis + 1], align)
        starts.append(s)
        lengths.append(n)
        output_starts.append(s * ratios[-1].denominator // ratios[-1].numerator)
    cost += _COPY_MACS * lengths[0] * lengths[1] * first.shape[first.axes[2]]
    for node in nodes:
        out = geo[node.output]
        if node.macs:
            rows, cols = (np.minimum(out.size[a], np.ceil(
                lengths[a] / float(out.factor[a] / first.factor[a]))) for a in range(2))
            cost += node.macs * rows * cols / (out.size[0] * out.size[1])
    segment = Segment(start, stop, np.stack(lengths, axis=1), np.stack(starts, axis=1),
                      np.stack(output_starts, axis=1))
    return segment, float(cost.mean())


def choose(model, image_size: tuple[int, int], boxes: np.ndarray, key, mode: str,
           device: bool) -> Plan | None:
    """The plan occlusion of ``model`` runs, or None for the full recompute. ``mode``:
    ``"auto"`` takes it where the predicted ratio reaches :data:`WORTH`; ``"on"`` where
    the graph can take it at all; ``"off"`` never. ``device``: the copies would run bound
    on the model's GPU (``auto`` keeps that path: incremental runs on the host).

    Raises:
        HarnessError: ``"on"`` for a model it cannot serve, naming why.
    """
    if mode not in ("auto", "on"):
        if mode == "off":
            return None
        raise ValueError(f"incremental must be 'auto', 'on' or 'off', got {mode!r}")
    reason = why_not(model, image_size)
    plan = None
    if reason is None:
        plan = plan_for(model, boxes, key)
        reason = plan.reason
    if reason is not None:
        if mode == "on":
            raise HarnessError(f"{model.path}: incremental occlusion cannot run: {reason}")
        return None
    if mode == "auto" and (device or plan.predicted < WORTH):
        return None
    return plan


def why_not(model, image_size: tuple[int, int]) -> str | None:
    """Why ``model`` cannot run incrementally on images of ``image_size``, or None."""
    if model.needs_resize(image_size):
        return (f"its {image_size[0]}x{image_size[1]} images are resized to the model's "
                f"{model.input_size[0]}x{model.input_size[1]} input, which spreads a "
                "window's change")
    if model.rows_per_run:
        return "it runs a fixed number of images per call"
    if model.input_dtype != np.float32:
        return "its input is not float32"
    return None


def _sessions(model, plan: Plan) -> dict:
    """The sessions of a plan, built once: the prefix with the cuts as outputs, each
    segment on crops, and the suffix from the frontier."""
    held = model.__dict__.setdefault("_incremental_sessions", {})
    key = tuple((s.start, s.stop) for s in plan.segments)
    if key not in held:
        held.clear()  # one plan's sessions open at a time
        proto = with_explicit_pads(_proto(model), plan.prefix)
        geo = plan.prefix.geometry
        stops = [s.stop for s in plan.segments]
        held[key] = {
            "cuts": model.open_variant(extract(proto, plan.prefix.input, stops)),
            "segments": [model.open_variant(extract(proto, s.start, [s.stop], geo[s.start]))
                         for s in plan.segments],
            "suffix": model.open_variant(extract(proto, plan.frontier, [model.output_name])),
        }
    return held[key]


def _region(axes, y0: int, y1: int, x0: int, x1: int) -> tuple:
    """Index of a box in one image's tensor whose 4-D ``axes`` are ``(h, w, c)``."""
    index = [slice(None)] * 3
    index[axes[0] - 1] = slice(y0, y1)
    index[axes[1] - 1] = slice(x0, x1)
    return tuple(index)


def scores(model, plan: Plan, src: np.ndarray, base: np.ndarray, target, score: str,
           batch: int, clean: np.ndarray | None = None):
    """Every window's occluded copy of every image, scored.

    Args:
        src, base: the preprocessed images and baselines, in the model's layout.
        target: as :func:`~harness.salience.scoring.resolve_targets` takes it.
        batch: crops per run of a segment, copies per run of the suffix.
        clean: the model's ``(N, K)`` outputs on the images, if known; else they come
            from the pass that yields the cuts (N forward passes).

    Returns:
        ``(clean outputs (N, K), targets (N,) int64, scores (N, P) float64)``.
    """
    sessions = _sessions(model, plan)
    first = plan.prefix.input
    stops = [s.stop for s in plan.segments]
    n, windows = len(src), len(plan.changed[first])
    per_chunk = _images_at_once(plan, windows)
    out = np.empty((n, windows), np.float64)
    outputs, targets = [], []
    with Deadline(model.timeout) as deadline:
        def run(session, x):
            feed = {session.get_inputs()[0].name: x}
            return deadline.run(lambda options: session.run(None, feed, options),
                                model.path, len(x))[0]

        for c0 in range(0, n, per_chunk):
            c1 = min(n, c0 + per_chunk)
            if clean is None:
                try:
                    found, cuts = model.forward(src[c0:c1], prepared=True,
                                                extra_outputs=stops)
                except NonFiniteOutput as exc:
                    raise exc.remapped(np.arange(c0, c1)) from None
            else:
                found = clean[c0:c1]
                feed = {sessions["cuts"].get_inputs()[0].name: src[c0:c1]}
                cuts = deadline.run(lambda options, feed=feed: sessions["cuts"].run(
                    None, feed, options), model.path, c1 - c0)
            chosen = resolve_targets(found, rows_of(target, slice(c0, c1)))
            outputs.append(found)
            targets.append(chosen)
            held = dict(zip(stops, cuts, strict=True)) | {first: src[c0:c1]}
            img, win = np.divmod(np.arange((c1 - c0) * windows), windows)
            crops_out = _through_segments(plan, sessions["segments"], run, held, base[c0:c1],
                                          img, win, batch)
            for b0 in range(0, len(img), batch):
                part = slice(b0, b0 + batch)
                z = _frontier(plan, held, crops_out[part], img[part], win[part])
                copies = _class_outputs(model, run(sessions["suffix"], z), len(z))
                bad = ~np.isfinite(copies).all(axis=1)
                if bad.any():
                    raise NonFiniteOutput(model.name, np.unique(c0 + img[part][bad]))
                out[c0 + img[part], win[part]] = class_scores(
                    copies, model.output_kind, chosen[img[part]], score)
    model.forward_passes += n * windows
    if not outputs:
        return np.zeros((0, model.num_classes or 2), np.float32), np.zeros(0, np.int64), out
    return np.concatenate(outputs), np.concatenate(targets), out


def rows_of(values, rows: slice):
    """Some images' share of a per-image argument (None and one class stay as they are)."""
    return values if values is None or np.ndim(values) == 0 else np.asarray(values)[rows]


def _images_at_once(plan: Plan, windows: int) -> int:
    """Images whose copies go through the segments together: the more, the larger each
    group of crops of one shape, and the fewer runs; bounded by the memory their cuts
    and the copies' largest output crops hold."""
    geo = plan.prefix.geometry
    cuts = sum(4 * int(np.prod(geo[s.stop].shape)) for s in plan.segments)
    crop = 0
    for s in plan.segments:
        start, stop = geo[s.start], geo[s.stop]
        rows, cols = (min(stop.size[a], math.ceil(int(s.lengths[:, a].max()) /
                                                  (stop.factor[a] / start.factor[a])))
                      for a in range(2))
        crop = max(crop, 4 * rows * cols * stop.shape[stop.axes[2]])
    return max(1, _HELD_BYTES // (cuts + windows * crop))


def _through_segments(plan, sessions, run, held, base, img, win, batch) -> list:
    """Each copy's output crop of the last segment (windows ``win`` of images ``img``):
    per segment, the copies' crops grouped by shape and run ``batch`` at a time."""
    geo = plan.prefix.geometry
    previous, outs = None, None
    for segment, session in zip(plan.segments, sessions, strict=True):
        axes = geo[segment.start].axes
        clean, changed = held[segment.start], plan.changed[segment.start]
        lengths = segment.lengths[win]
        made = [None] * len(img)
        for shape in np.unique(lengths, axis=0):
            members = np.flatnonzero((lengths == shape).all(axis=1))
            full = list(clean.shape[1:])
            full[axes[0] - 1], full[axes[1] - 1] = shape
            for m0 in range(0, len(members), batch):
                group = members[m0:m0 + batch]
                x = np.empty((len(group), *full), np.float32)
                for k, b in enumerate(group):
                    i, p = img[b], win[b]
                    sy, sx = segment.starts[p]
                    x[k] = clean[i][_region(axes, sy, sy + shape[0], sx, sx + shape[1])]
                    y0, y1, x0, x1 = changed[p]
                    y0, y1 = max(y0, sy), min(y1, sy + shape[0])
                    x0, x1 = max(x0, sx), min(x1, sx + shape[1])
                    if y0 >= y1 or x0 >= x1:
                        continue
                    if previous is None:
                        source, oy, ox = base[i], 0, 0
                    else:
                        source, (oy, ox) = outs[b], previous.output_starts[p]
                    x[k][_region(axes, y0 - sy, y1 - sy, x0 - sx, x1 - sx)] = \
                        source[_region(axes, y0 - oy, y1 - oy, x0 - ox, x1 - ox)]
                y = run(session, x)
                for k, b in enumerate(group):
                    made[b] = y[k]
        previous, outs = segment, made
    return outs


def _frontier(plan, held, crops_out, img, win) -> np.ndarray:
    """The frontier tensors of the copies: the clean one with each window's changed
    region pasted in from the last segment's output crop."""
    frontier, last = plan.frontier, plan.segments[-1]
    axes = plan.prefix.geometry[frontier].axes
    z = held[frontier][img]
    for b, p in enumerate(win):
        y0, y1, x0, x1 = plan.changed[frontier][p]
        oy, ox = last.output_starts[p]
        z[b][_region(axes, y0, y1, x0, x1)] = \
            crops_out[b][_region(axes, y0 - oy, y1 - oy, x0 - ox, x1 - ox)]
    return z


def _class_outputs(model, value, rows: int) -> np.ndarray:
    from harness.model.classifier import two_classes

    out = numeric_output(value, rows, model.output_name, model.path).reshape(rows, -1)
    return two_classes(out, model.output_kind) if model.single_logit else out


def deviation(incremental: np.ndarray, full: np.ndarray, clean: np.ndarray) -> float:
    """The largest score difference between the two computations, relative to the
    largest score of either the full recompute or the clean images."""
    scale = max(float(np.abs(full).max(initial=0.0)), float(np.abs(clean).max(initial=0.0)),
                1e-12)
    return float(np.abs(incremental - full).max(initial=0.0)) / scale


def provenance(plan: Plan | None, reason: str | None, mode: str, execution: str) -> dict:
    """What a run records of how a model's occlusion maps were computed: ``used``, the
    frontier, the segments' last tensors, the predicted ratio, and why not where not.

    Args:
        plan: the model's plan, None where :func:`why_not` gave ``reason``.
        execution: the provider string its maps were recorded with (its markers say
            whether the maps were incremental and whether the self-check refused it).
    """
    used = USED in execution.replace(REFUSED, "")
    if reason is None and plan is not None:
        reason = plan.reason
    if reason is None and not used:
        if REFUSED in execution:
            reason = "its self-check: the first image's scores differed from the full " \
                     f"recompute's by more than {TOLERANCE:g} relative"
        elif mode == "off":
            reason = "incremental = off"
        elif IOBINDING in execution:
            reason = "its copies ran bound on the GPU (auto keeps that path there)"
        elif plan.predicted < WORTH:
            reason = f"predicted ratio {plan.predicted:.2f} is below {WORTH}"
        else:
            reason = "its maps were computed before, in full"
    ready = plan is not None and plan.reason is None
    return {"mode": mode, "used": used,
            "frontier": plan.frontier if ready else None,
            "segments": [s.stop for s in plan.segments] if ready else [],
            "predicted_ratio": round(plan.predicted, 2) if ready else None,
            "reason": None if used else reason}
