"""Plain NumPy references the Numba kernels and batched paths must match.

Written from docs/measures.md directly, one image and one perturbation at a time, with no
batching, no model-space shortcut and no incremental buffers.
"""

import numpy as np

from harness.salience.scoring import class_scores


def cell_bounds(size, grid):
    return [(i * size) // grid for i in range(grid + 1)]


def occlusion(model, images, grid, window, baselines, targets, score="log_odds"):
    """Occlusion maps by definition: pixel-space copies, one forward pass each."""
    n, h, w, _ = images.shape
    ys, xs = cell_bounds(h, grid), cell_bounds(w, grid)
    steps = grid - window + 1
    maps = np.zeros((n, grid, grid))
    for i in range(n):
        clean = class_scores(model.forward(images[i:i + 1]), model.output_kind,
                             targets[i:i + 1], score)[0]
        total, count = np.zeros((grid, grid)), np.zeros((grid, grid))
        for p in range(steps):
            for q in range(steps):
                x = images[i].copy()
                y0, y1, x0, x1 = ys[p], ys[p + window], xs[q], xs[q + window]
                x[y0:y1, x0:x1] = baselines[i, y0:y1, x0:x1]
                s = class_scores(model.forward(x[None]), model.output_kind, targets[i:i + 1],
                                 score)[0]
                total[p:p + window, q:q + window] += clean - s
                count[p:p + window, q:q + window] += 1
        maps[i] = total / count
    return maps


def bilinear_upsample(grid2d, out_h, out_w):
    """Half-pixel-centre bilinear upsampling with edge clamping."""
    gh, gw = grid2d.shape
    fy = np.clip((np.arange(out_h) + 0.5) * gh / out_h - 0.5, 0, gh - 1)
    fx = np.clip((np.arange(out_w) + 0.5) * gw / out_w - 0.5, 0, gw - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    top = grid2d[y0][:, x0] * (1 - wx) + grid2d[y0][:, x1] * wx
    bottom = grid2d[y1][:, x0] * (1 - wx) + grid2d[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def rise_mask(bank, k):
    """Full-size mask k of a MaskBank: upsample the grid, crop at the shift."""
    up_h, up_w = bank.up_size
    h, w = bank.size
    up = bilinear_upsample(bank.grids[k].astype(np.float64), up_h, up_w)
    dy, dx = bank.shifts[k]
    return up[dy:dy + h, dx:dx + w]


def rise(model, images, bank, baselines, targets, grid, score="log_odds"):
    n, h, w, _ = images.shape
    ys, xs = cell_bounds(h, grid), cell_bounds(w, grid)
    full = np.zeros((n, h, w))
    scores = []
    for k in range(len(bank)):
        m = rise_mask(bank, k)[..., None]
        x = (images * m + baselines * (1 - m)).astype(np.float32)
        scores.append(class_scores(model.forward(x), model.output_kind, targets, score))
    mean = np.mean(scores, axis=0)  # baseline-subtracted: scores centred per image
    for k, s in enumerate(scores):
        full += (s - mean)[:, None, None] * rise_mask(bank, k)[None]
    full /= len(bank) * bank.p_keep
    return np.array([[[full[i, ys[a]:ys[a + 1], xs[b]:xs[b + 1]].mean() for b in range(grid)]
                      for a in range(grid)] for i in range(n)])


def normalize(raw):
    """ReLU, min-max, floor(255 * s); flat when max - min < 1e-8."""
    q = np.zeros(raw.shape, np.uint8)
    flat = np.zeros(len(raw), bool)
    for i, m in enumerate(np.maximum(raw.astype(np.float64), 0)):
        span = m.max() - m.min()
        if span < 1e-8:
            flat[i] = True
        else:
            q[i] = np.floor(255 * ((m - m.min()) / span)).astype(np.uint8)
    return q, flat


def degrade(images, q_up, mode):
    """Salience-guided blur by definition: blur the whole image at every level's sigma
    with scipy and pick each pixel from its level's blur."""
    from scipy.ndimage import gaussian_filter

    n, h, w, _ = images.shape
    q = q_up.astype(np.float64) if mode == "background" else 255.0 - q_up.astype(np.float64)
    out = images.astype(np.float64).copy()
    for i in range(n):
        g = gaussian_filter(q[i], 5.0 * h / 224, mode="reflect", truncate=4.0)
        level = np.round(10.0 * g / g.max(), 1) if g.max() > 0 else np.zeros_like(g)
        for s in np.unique(level):
            sigma = (10.0 - s) ** 4 / 1000.0 * h / 224
            blurred = gaussian_filter(images[i].astype(np.float64), (sigma, sigma, 0),
                                      mode="reflect", truncate=4.0)
            out[i][level == s] = blurred[level == s]
    return out


def central_difference(f, inputs, which: int, g, eps: float = 1e-6):
    """d(sum(g * f(*inputs))) / d inputs[which] by central differences, element by
    element, in float64: the reference for a head operator's vector-Jacobian product."""
    x = np.array(inputs[which], np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        args_p = list(inputs)
        args_p[which] = plus
        args_m = list(inputs)
        args_m[which] = minus
        out[i] = ((g * f(*args_p)).sum() - (g * f(*args_m)).sum()) / (2 * eps)
    return out


def grad_cam_fd(head, a, targets, step=1e-4):
    """Grad-CAM of the ``(N, C, H, W)`` feature map ``a`` with its gradient taken by
    central differences of ``head`` (a function ``(B, C, H, W) -> (B, K)`` class scores,
    e.g. ONNX Runtime running the head alone in float64), element by element: map =
    sum_c (sum_hw dScore/dA[c, h, w]) A[c]. The reference for Grad-CAM read from a
    graph."""
    a = np.asarray(a, np.float64)
    maps = np.zeros((len(a),) + a.shape[2:], np.float64)
    for n, target in enumerate(targets):
        count = a[n].size
        bumps = np.eye(count).reshape((count,) + a.shape[1:]) * step
        up = head(a[n][None] + bumps)[:, target].astype(np.float64)
        down = head(a[n][None] - bumps)[:, target].astype(np.float64)
        grad = ((up - down) / (2 * step)).reshape(a.shape[1:])
        maps[n] = np.einsum("c,chw->hw", grad.sum(axis=(1, 2)), a[n])
    return maps


def receptive(m, size_in, size_out):
    """For an AxisMap: each output's set of input positions, by its definition."""
    return [set(range(max(0, (o * m.num) // m.den - m.lo),
                      min(size_in, (o * m.num) // m.den + m.hi + 1))) for o in range(size_out)]


def reaches(m, a, b, size_in, size_out):
    """The outputs that read any input in [a, b), as a sorted list."""
    changed = set(range(a, b))
    return [o for o, read in enumerate(receptive(m, size_in, size_out)) if read & changed]


def reads(m, u, v, size_in, size_out):
    """Every input the outputs [u, v) read, as a sorted list."""
    found = set()
    for read in receptive(m, size_in, size_out)[u:v]:
        found |= read
    return sorted(found)


# --- the faithfulness measures, by definition (docs/measures.md) ---

def rank_order(values, rng):
    """Elements of ``values`` (flattened) from the largest down; equal values in the
    order a permutation drawn from ``rng`` puts them."""
    flat = np.asarray(values, np.float64).ravel()
    position = np.empty(flat.size, np.int64)
    position[rng.permutation(flat.size)] = np.arange(flat.size)
    return np.lexsort((position, -flat))


def _cell_boxes(h, w, gh, gw):
    ys, xs = cell_bounds(h, gh), cell_bounds(w, gw)
    return [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(gh) for c in range(gw)]


def _score(model, image, target, score="log_odds"):
    return class_scores(model.forward(image[None]), model.output_kind, np.array([target]),
                        score)[0]


def cell_curve(model, image, baseline, raw, rng, target, insertion=False):
    """Deletion (or insertion) scores: copy k hides (or shows) the first floor(k C / K)
    cells of the map's order, K = min(C, 64)."""
    h, w, _ = image.shape
    boxes = _cell_boxes(h, w, *raw.shape)
    order = rank_order(raw, rng)
    cells = len(boxes)
    k_max = min(cells, 64)
    scores = []
    for k in range(k_max + 1):
        first = set(order[:k * cells // k_max].tolist())
        x = image.copy()
        for c, (y0, y1, x0, x1) in enumerate(boxes):
            if (c in first) != insertion:
                x[y0:y1, x0:x1] = baseline[y0:y1, x0:x1]
        scores.append(_score(model, x, target))
    return np.array(scores)


def area(scores):
    return np.trapezoid(scores, dx=1.0 / (len(scores) - 1))


def faithfulness_correlation(model, image, baseline, raw, rng, target, subsets=32,
                             share=0.25):
    """Pearson correlation over random subsets of cells of the map's sum over the subset
    and the score drop when the subset shows the baseline."""
    from scipy.stats import pearsonr

    h, w, _ = image.shape
    boxes = _cell_boxes(h, w, *raw.shape)
    clean = _score(model, image, target)
    size = max(1, int(round(share * len(boxes))))
    sums, drops = [], []
    for _ in range(subsets):
        chosen = rng.choice(len(boxes), size, replace=False)
        x = image.copy()
        for c in chosen:
            y0, y1, x0, x1 = boxes[c]
            x[y0:y1, x0:x1] = baseline[y0:y1, x0:x1]
        sums.append(raw.ravel()[chosen].sum())
        drops.append(clean - _score(model, x, target))
    return pearsonr(sums, drops).statistic


def impute(image, removed):
    """Noise-free linear imputation by a direct sparse solve: each removed pixel is the
    mean of its in-image neighbours weighted 1/6 (side) and 1/12 (corner)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    h, w = removed.shape
    ys, xs = np.nonzero(removed)
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(len(ys))
    a = sp.lil_matrix((len(ys), len(ys)))
    b = np.zeros((len(ys), image.shape[2]))
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy, dx) == (0, 0) or not (0 <= y + dy < h and 0 <= x + dx < w):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                a[k, k] += weight
                if removed[y + dy, x + dx]:
                    a[k, index[y + dy, x + dx]] -= weight
                else:
                    b[k] += weight * image[y + dy, x + dx]
    out = np.asarray(image, np.float64).copy()
    if len(ys):
        out[ys, xs] = np.asarray(spsolve(a.tocsc(), b)).reshape(len(ys), -1)
    return out


def road(model, image, raw, order_rng, noise_rng, target, percents=range(10, 100, 10),
         noise=0.01):
    """ROAD's scores: pixels ranked by the bilinearly upsampled map; for each fraction the
    most relevant removed, then for each the least relevant, imputed, noise added."""
    h, w, c = image.shape
    order = rank_order(bilinear_upsample(np.asarray(raw, np.float64), h, w), order_rng)
    copies = [(h * w * p // 100, first) for first in (True, False) for p in percents]
    # one float32 field of draws per image; each copy adds it at the pixels it removes
    draws = noise_rng.standard_normal((h, w, c), dtype=np.float32) * np.float32(noise)
    scores = []
    for count, first in copies:
        chosen = order[:count] if first else order[h * w - count:]
        removed = np.zeros(h * w, bool)
        removed[chosen] = True
        removed = removed.reshape(h, w)
        x = impute(image, removed)
        x[removed] += draws[removed]
        scores.append(_score(model, x.astype(np.float32), target))
    return np.array(scores)
