#!/usr/bin/env bash
# GPU check, under 5 minutes on a machine with an NVIDIA GPU: installs the `cuda` extra,
# confirms ONNX Runtime really runs the CUDA provider, and prints the occlusion
# throughput ratio (harness occlusion passes/s over raw session.run passes/s) on GPU.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv /tmp/harness-gpu
. /tmp/harness-gpu/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[cuda,test]'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python - <<'PY'
import sys
sys.path.insert(0, ".")
from harness.model import OnnxClassifier
from tests.onnx_models import cnn_model

clf = OnnxClassifier(cnn_model("/tmp/gpu_check.onnx", 224, (32, 64, 128, 128), strides=(2, 2, 2, 1)))
print(f"provider in use: {clf.provider}")
if clf.provider != "CUDAExecutionProvider":
    sys.exit("CUDA provider NOT in use: check the CUDA/cuDNN libraries of the cuda extra")
PY
python -m pytest benchmarks/test_salience_throughput.py -q -s -p no:cacheprovider \
  --benchmark-columns=median 2>&1 | grep -E "passes/s|passed|failed"
