#!/usr/bin/env bash
# GPU figures in a few minutes on a machine with an NVIDIA GPU (see gpu_check.py for what
# is measured). GPU machines often have no network, so with --wheels DIR the packages
# this Python lacks (onnxruntime-gpu, polars, ...) are installed from that folder alone;
# the CUDA and cuDNN libraries already in this Python's site-packages (nvidia-* wheels)
# are put on the library path for onnxruntime-gpu.
# Usage: bash benchmarks/gpu_check.sh [--wheels DIR] [--out FILE] [--zoo-images N]
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="" out="gpu_check.json" zoo_images=20
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --zoo-images) zoo_images="$2"; shift 2 ;;
    *) echo "error: unknown argument $1 (use --wheels DIR, --out FILE, --zoo-images N)" >&2
       exit 2 ;;
  esac
done
if ! { [ -e /proc/driver/nvidia/version ] || [ -e /dev/nvidiactl ]; }; then
  echo "error: no NVIDIA GPU on this machine (no driver in /proc/driver/nvidia); nothing to check" >&2
  exit 2
fi
python=${PYTHON:-python3}
if [ -n "$wheels" ]; then
  [ -d "$wheels" ] || { echo "error: --wheels $wheels is not a folder" >&2; exit 2; }
  # a folder of its own, first on the path: the GPU build of ONNX Runtime must win over
  # any CPU build installed beside it (the two own the same package folder)
  site=$(mktemp -d /tmp/harness-gpu-site.XXXXXX)
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
libs=$("$python" - <<'PY'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = {d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "**", "lib"), recursive=True)}
print(":".join(sorted(d for d in dirs if os.path.isdir(d))))
PY
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
missing=$("$python" -c "
import importlib.util as u
print(' '.join(m for m in ('onnxruntime', 'onnx', 'numpy', 'numba', 'polars', 'click', 'PIL')
               if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "error: this Python lacks $missing; pass --wheels DIR with their wheels" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$python" benchmarks/gpu_check.py --out "$out" --zoo-images "$zoo_images"
