"""Render a report.html as a reader's browser shows it: headless Chromium (Debian's
`chromium`) driven by Playwright's Python package, the whole page at a desktop's width
and the first screen at a laptop's.

Usage: python docs/render_report.py REPORT.html OUT.png [--width 1400] [--first-screen]
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def render(html_path: str, out: str, width: int, first_screen: bool) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(Path(html_path).resolve().as_uri())
        page.screenshot(path=out, full_page=not first_screen)
        browser.close()
    from PIL import Image  # 256 colours: a third of the bytes, the same to the eye

    Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--first-screen", action="store_true")
    args = parser.parse_args()
    render(args.report, args.out, args.width, args.first_screen)
