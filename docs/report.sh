#!/usr/bin/env bash
# Regenerates docs/report.png (the whole page at 1,400 px) and docs/report-900.png (the
# first screen at 900 px): the built-in zoo scored from scratch, its report, and the page
# as headless Chromium shows it (tests/test_report_layout.py measures the same). Run from
# the repository root with the harness installed (pip install -e '.[test]') and Chromium
# (apt-get install chromium); about 6 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/zoo}
harness run --out "$out" --cache "$out/cache" --quiet
harness report "$out"
python docs/render_report.py "$out/report.html" docs/report.png --width 1400
python docs/render_report.py "$out/report.html" docs/report-900.png --width 900 --first-screen
