"""Soak: 1000 images through one model in one process, in chunks of 100 (predict and
occlusion salience on each), with the resident memory after 100, 500 and 1000 images.
After warm-up (the first chunk) memory must not grow: target RSS(1000) <= 1.1 x
RSS(100)."""

import numpy as np

from harness import OnnxClassifier, occlusion
from harness.inputs.zoo import builtin_manifest, read_manifest


def rss_mib() -> float:
    """Current resident set size (not the peak), from /proc."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_soak_memory(benchmark):
    total, chunk = (200, 100) if benchmark.disabled else (1000, 100)
    model = read_manifest(builtin_manifest()).models[0]
    clf = OnnxClassifier(model.path, model.spec)
    rng = np.random.default_rng(0)
    marks = {}
    for done in range(chunk, total + 1, chunk):
        x = rng.random((chunk, 64, 64, 3), np.float32)
        clf.predict_proba(x)
        occlusion(clf, x)
        if done in (100, 500, 1000) or done == total:
            marks[done] = rss_mib()
    benchmark.extra_info.update({f"rss_mib_at_{k}": v for k, v in marks.items()})
    print("\nRSS after " + ", ".join(f"{k} images: {v:.0f} MiB" for k, v in marks.items()))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if not benchmark.disabled:
        assert marks[1000] <= 1.1 * marks[100]
