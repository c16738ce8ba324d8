#!/usr/bin/env bash
# Regenerates docs/report.png: the built-in zoo scored from scratch, its report, and the
# report rendered to one PNG (PyMuPDF's HTML layout, no browser). Run from the
# repository root with the harness installed (pip install -e '.[report]'); about 6 min
# on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/zoo}
harness run --out "$out" --cache "$out/cache" --quiet
harness report "$out"
python -m pip install -q pymupdf pillow
python docs/render_report.py "$out/report.html" docs/report.png
