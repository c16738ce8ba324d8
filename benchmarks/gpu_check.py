"""Figures measured on a GPU: what the CUDA provider gives the harness.

Run through ``benchmarks/gpu_check.sh`` (which finds the CUDA libraries and installs
from a wheel folder); prints one table and writes the figures to a JSON file, each
section as it finishes (a failing section is recorded and the rest still run):

- the provider every session really got (the check fails unless it is CUDA);
- the CUDA kernels against the CPU kernels on this GPU: elements that differ, by how
  many float32 units in the last place;
- per network (the 64 px and 224 px benchmark CNNs, and a ResNet-50-sized network
  built here with random weights), passes/s at batch 64: bare ``session.run`` with the
  batch bound on the device (the floor) and from a host buffer, occlusion on the host
  path and on the GPU path (whole calls), and the GPU path's bound loop alone;
- the built-in zoo scored on CUDA and on the machine's CPU cores (same images, same
  measures): seconds for each and the largest difference between the two runs'
  headline values (providers round differently);
- with dask-cuda installed, ``harness run`` in-process and on a ``LocalCUDACluster``:
  seconds, and whether the scores are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 64
CUDA = "CUDAExecutionProvider"


def resnet50_like(path: Path, size: int = 224, classes: int = 2, seed: int = 0) -> Path:
    """A ResNet-50-shaped network (bottleneck blocks 3-4-6-3, widths 64-512 x 4, batch
    norm folded into the convolutions) with He-initialised random weights: the cost of
    a ResNet-50 forward pass without downloading one."""
    from onnx import helper, numpy_helper

    from tests.onnx_models import gap_linear_model

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def conv(src, cin, cout, k, stride=1, relu=True):
        i = count[0]
        count[0] += 1
        w = rng.normal(0, np.sqrt(2 / (k * k * cin)), (cout, cin, k, k)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"w{i}"),
                      numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")])
        nodes.append(helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"],
                                      pads=[k // 2] * 4, strides=[stride, stride]))
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        return f"r{i}"

    x = conv("image", 3, 64, 7, 2)
    nodes.append(helper.make_node("MaxPool", [x], ["pool0"], kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1] * 4))
    x, cin = "pool0", 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3),
                                                strict=True)):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv(x, cin, width, 1)
            y = conv(y, width, width, 3, stride)
            y = conv(y, width, width * 4, 1, relu=False)
            skip = conv(x, cin, width * 4, 1, stride, relu=False) if block == 0 else x
            name = f"s{stage}b{block}"
            nodes += [helper.make_node("Add", [y, skip], [f"{name}.sum"]),
                      helper.make_node("Relu", [f"{name}.sum"], [name])]
            x, cin = name, width * 4
    return gap_linear_model(path, "resnet50_like", nodes, inits, x, cin, size, classes, rng)


def _timed(fn, repeat: int) -> float:
    fn()  # warm: allocator, cuDNN algorithm search
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def raw_rates(clf, calls: int) -> dict[str, float]:
    """Passes/s of bare ``session.run`` on one batch of 64: from a host buffer (copied to
    the device every call) and, on CUDA, with input and output bound to preallocated
    device buffers (the floor: forward passes alone)."""
    import onnxruntime as ort

    session = clf.session
    shape = [BATCH] + [int(d) for d in session.get_inputs()[0].shape[1:]]
    x = np.random.default_rng(0).random(shape, np.float32)
    host = _timed(lambda: session.run([clf.output_name], {clf.input_name: x}), calls)
    out = {"raw_host_passes_per_s": BATCH / host}
    if clf.provider == CUDA:
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        y_dev = ort.OrtValue.ortvalue_from_shape_and_type([BATCH, clf.num_classes], np.float32,
                                                          "cuda", 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input(clf.input_name, x_dev)
        binding.bind_ortvalue_output(clf.output_name, y_dev)
        bound = _timed(lambda: session.run_with_iobinding(binding), calls)
        out["raw_bound_passes_per_s"] = BATCH / bound
    return out


def occlusion_rate(clf, images: np.ndarray, rounds: int, bind: bool) -> float:
    """Passes/s of whole ``occlusion`` calls (clean pass, baselines, uploads included),
    with the copies bound on the device or on the host path."""
    from harness import occlusion

    clf.bind_io = bind

    def once():
        occlusion(clf, images, batch_size=BATCH)

    once()
    clf.forward_passes = 0
    start = time.perf_counter()
    for _ in range(rounds):
        once()
    return clf.forward_passes / (time.perf_counter() - start)


def copies_rate(clf, images: np.ndarray, rounds: int) -> float:
    """Passes/s of the bound loop alone (fill kernels, bound runs, scores) on images
    already on the device: what the floor is the floor of."""
    from harness.salience.batched import blur_sigmas
    from harness.salience.bound import DeviceImages, bound_device
    from harness.salience.occlusion import window_boxes

    n, h, w, _ = images.shape
    device = bound_device(clf, False)
    if device is None:
        return float("nan")
    on_device = DeviceImages(clf, device, images, blur_sigmas(images, "blur", 7), None, BATCH)
    boxes = window_boxes(h, w, 7, 1)
    targets = np.zeros(n, np.int64)

    def once():
        on_device.scores("occluded", (boxes,), len(boxes), targets, "log_odds")

    once()
    start = time.perf_counter()
    for _ in range(rounds):
        once()
    return rounds * n * len(boxes) / (time.perf_counter() - start)


def throughput(folder: Path) -> list[dict]:
    from harness import OnnxClassifier
    from tests.onnx_models import cnn_model

    # 64 images of 49 windows: 49 full batches of 64, as the floor runs
    nets = [("small_cnn_64px", 64, lambda p: cnn_model(p, 64, (16, 32, 64),
                                                        strides=(1, 2, 2))),
            ("cnn_224px", 224, lambda p: cnn_model(p, 224, (32, 64, 128, 128),
                                                    strides=(2, 2, 2, 1))),
            ("resnet50_like_224px", 224, resnet50_like)]
    rows = []
    for name, size, build in nets:
        clf = OnnxClassifier(build(folder / f"{name}.onnx"), batch_size=BATCH)
        images = np.random.default_rng(1).random((64, size, size, 3), np.float32)
        row = {"network": name, "provider": clf.provider, **raw_rates(clf, 30),
               "occlusion_host_passes_per_s": occlusion_rate(clf, images, 2, bind=False),
               "occlusion_bound_passes_per_s": occlusion_rate(clf, images, 2, bind=True),
               "bound_loop_passes_per_s": copies_rate(clf, images, 2),
               "execution": clf.execution}
        if "raw_bound_passes_per_s" in row:
            floor = row["raw_bound_passes_per_s"]
            for key in ("occlusion_host", "occlusion_bound", "bound_loop"):
                row[f"{key}_over_floor"] = row[f"{key}_passes_per_s"] / floor
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def kernel_parity() -> list[dict]:
    """The CUDA fill kernels against the CPU kernels on this GPU: 64 x 64 images, 49
    perturbations each, a batch of 64, both layouts; elements that differ and by how
    many float32 units in the last place."""
    from tests.cuda_sim.check_bound import fill_both, prepare_both

    rows = []
    for kernel in ("occluded", "masked", "blur+preprocess"):
        for channels_first in (True, False):
            if kernel == "blur+preprocess":
                cpu, gpu = prepare_both(channels_first, n=8, size=(224, 224))
            else:
                cpu, gpu = fill_both(kernel, channels_first, n=8, size=(64, 64),
                                     per_image=49, slots=64, step=3)
            ulp = np.abs(cpu.view(np.int32).astype(np.int64) - gpu.view(np.int32))
            rows.append({"kernel": kernel, "layout": "NCHW" if channels_first else "NHWC",
                         "elements": int(cpu.size), "differing": int((ulp > 0).sum()),
                         "max_ulp": int(ulp.max()),
                         "max_abs_diff": float(np.abs(cpu - gpu).max())})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def zoo_runs(n_images: int) -> dict:
    """The built-in zoo on the default provider (CUDA) and on CPU alone, same inputs."""
    from harness import OnnxClassifier, load_image_set
    from harness.inputs.zoo import builtin_manifest, read_manifest
    from harness.runner import evaluate

    zoo = read_manifest(builtin_manifest())
    inset = load_image_set(zoo.data, split=zoo.split)
    inset = inset.subset(np.arange(min(n_images, len(inset))))
    oos = {p.stem: load_image_set(p) for p in zoo.out_of_set}
    out, heads = {}, {}
    for label, providers in (("cuda", None), ("cpu", ["CPUExecutionProvider"])):
        models = [OnnxClassifier(m.path, m.spec, providers=providers) for m in zoo.models]
        start = time.perf_counter()
        scores = evaluate(models, inset, out_of_set=oos, seed=0)
        out[f"{label}_seconds"] = time.perf_counter() - start
        out[f"{label}_providers"] = sorted(set(scores["provider"].to_list()))
        out[f"{label}_forward_passes"] = int(scores.unique("model")["forward_passes"].sum())
        rows = scores.filter(scores["statistic"] == "headline")
        heads[label] = {(r["model"], r["measure"]): r["value"] for r in rows.iter_rows(named=True)}
        print(json.dumps({k: v for k, v in out.items() if k.startswith(label)}), flush=True)
    diffs = [abs(heads["cuda"][k] - v) for k, v in heads["cpu"].items()
             if v is not None and heads["cuda"].get(k) is not None]
    out.update(images=len(inset), models=len(zoo.models), headlines_compared=len(diffs),
               max_headline_abs_diff=max(diffs) if diffs else None)
    return out


def dask_cuda_run(n_images: int, folder: Path) -> dict:
    """``harness run`` on the built-in zoo in-process and with ``--engine dask`` (a
    dask-cuda ``LocalCUDACluster``, one worker per GPU): the same scores, byte for byte?"""
    try:
        import dask_cuda  # noqa: F401
    except ImportError as exc:
        return {"checked": False, "why": f"dask-cuda: {exc}"}
    out = {"checked": True}
    for label, extra in (("in_process", []), ("dask_cuda", ["--engine", "dask"])):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--quiet", "--limit",
                               str(n_images), "--out", str(folder / label), *extra],
                              capture_output=True, text=True, timeout=300)
        out[f"{label}_seconds"] = time.perf_counter() - start
        if proc.returncode != 0:
            out[f"{label}_error"] = proc.stderr[-2000:]
            return out
        info = json.loads((folder / label / "run.json").read_text())
        out[f"{label}_providers"] = info["providers"]
        out[f"{label}_engine"] = info["engine"]
    out["identical_scores"] = ((folder / "in_process" / "scores.parquet").read_bytes()
                               == (folder / "dask_cuda" / "scores.parquet").read_bytes())
    print(json.dumps(out), flush=True)
    return out


def gpu_description() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--zoo-images", type=int, default=20,
                        help="test images of the built-in zoo scored on each provider")
    parser.add_argument("--work", type=Path, default=Path("/tmp/harness-gpu-check"))
    args = parser.parse_args()
    import onnxruntime as ort

    from harness import OnnxClassifier, __version__
    from tests.onnx_models import cnn_model

    args.work.mkdir(parents=True, exist_ok=True)
    probe = OnnxClassifier(cnn_model(args.work / "probe.onnx", 32, (8,)))
    if probe.provider != CUDA:
        try:  # PyTorch's CUDA wheels load the same libraries; once loaded, ORT finds them
            import torch  # noqa: F401

            probe = OnnxClassifier(args.work / "probe.onnx")
        except ImportError:
            pass
    figures = {"gpu": gpu_description(), "onnxruntime": ort.__version__,
               "available_providers": ort.get_available_providers(),
               "provider_in_use": probe.provider,
               "use_tf32": probe.session.get_provider_options().get(CUDA, {}).get("use_tf32"),
               "harness": __version__,
               "python": platform.python_version(), "cpu_cores": os.cpu_count()}
    print(json.dumps(figures), flush=True)
    if probe.provider != CUDA:
        print(f"gpu_check: ONNX Runtime gave this session {probe.provider}, not the CUDA "
              "provider: check that onnxruntime-gpu and CUDA 13 / cuDNN 9 libraries are "
              "installed", file=sys.stderr)
        return 2
    sections = [("kernel_parity", kernel_parity), ("throughput", lambda: throughput(args.work)),
                ("zoo", lambda: zoo_runs(args.zoo_images)),
                ("dask_cuda", lambda: dask_cuda_run(args.zoo_images, args.work))]
    failed = []
    for key, section in sections:  # one section's failure must not cost the others
        try:
            figures[key] = section()
        except Exception as exc:
            import traceback

            traceback.print_exc()
            figures[key] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(key)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    report(figures)
    print(f"figures: {args.out}")
    return 1 if failed else 0


def report(figures: dict) -> None:
    """The one table: throughput against the floor, then the zoo and parity lines."""
    nan = float("nan")
    print(f"\nGPU: {figures['gpu']}; onnxruntime {figures['onnxruntime']}; "
          f"{figures['cpu_cores']} CPU cores")
    print(f"{'network (batch 64)':<22}{'floor/s':>10}{'host run/s':>11}{'occl. host':>11}"
          f"{'occl. bound':>12}{'bound loop':>11}{'occl/floor':>11}{'loop/floor':>11}")
    for r in figures.get("throughput") or []:
        if not isinstance(r, dict) or "network" not in r:
            continue
        print(f"{r['network']:<22}{r.get('raw_bound_passes_per_s', nan):>10,.0f}"
              f"{r['raw_host_passes_per_s']:>11,.0f}{r['occlusion_host_passes_per_s']:>11,.0f}"
              f"{r['occlusion_bound_passes_per_s']:>12,.0f}{r['bound_loop_passes_per_s']:>11,.0f}"
              f"{r.get('occlusion_bound_over_floor', nan):>11.3f}"
              f"{r.get('bound_loop_over_floor', nan):>11.3f}")
    for r in figures.get("kernel_parity") or []:
        if isinstance(r, dict) and "kernel" in r:
            print(f"kernel {r['kernel']:<16} {r['layout']}: {r['differing']:,} of "
                  f"{r['elements']:,} elements differ from the CPU kernel, at most "
                  f"{r['max_ulp']} float32 ulp ({r['max_abs_diff']:.1e})")
    z = figures.get("zoo") or {}
    if "cuda_seconds" in z:
        print(f"zoo ({z['models']} models x {z['images']} images, "
              f"{z['cuda_forward_passes']:,} passes): CUDA {z['cuda_seconds']:.1f} s "
              f"({', '.join(z['cuda_providers'])}), CPU ({figures['cpu_cores']} cores) "
              f"{z['cpu_seconds']:.1f} s; largest headline difference "
              f"{z['max_headline_abs_diff']:.2e} over {z['headlines_compared']} headlines")
    d = figures.get("dask_cuda") or {}
    if "identical_scores" in d:
        print(f"harness run --engine dask on a LocalCUDACluster: {d['dask_cuda_seconds']:.1f} s "
              f"vs in-process {d['in_process_seconds']:.1f} s; identical scores: "
              f"{d['identical_scores']}")
    elif d:
        print(f"dask-cuda: {d}")


if __name__ == "__main__":
    sys.exit(main())
