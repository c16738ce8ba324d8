"""Render a report.html to one PNG of the whole page, as docs/report.png shows it.

Uses PyMuPDF's HTML layout (``pip install pymupdf``; a tool for these docs, not a
dependency of the harness), so no browser is needed. docs/report.png is made from the
built-in zoo with the commands in docs/report.sh.

Usage: python docs/render_report.py REPORT.html OUT.png [--width 1280]
"""

import argparse
import io

import pymupdf
from PIL import Image


def render(html_path: str, out: str, width: int = 1280, margin: int = 24) -> tuple[int, int]:
    """Lay the page out at ``width`` points, one point a pixel; returns the PNG's size."""
    with open(html_path, encoding="utf-8") as f:
        story = pymupdf.Story(html=f.read())
    tall = pymupdf.Rect(0, 0, width, 40000)
    pdf_bytes = io.BytesIO()
    writer = pymupdf.DocumentWriter(pdf_bytes)
    device = writer.begin_page(tall)
    more, filled = story.place(tall + (margin, margin, -margin, -margin))
    filled = pymupdf.Rect(filled)
    if more:
        raise SystemExit(f"{html_path}: the page is taller than {tall.height:.0f} points")
    story.draw(device)
    writer.end_page()
    writer.close()
    pdf = pymupdf.open("pdf", pdf_bytes.getvalue())
    used = pymupdf.Rect(0, 0, width, filled.y1 + margin)
    pixmap = pdf[0].get_pixmap(dpi=72, clip=used)
    # 256 colours: a page of text and plots stays legible at a third of the bytes
    image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return pixmap.width, pixmap.height


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    width, height = render(args.report, args.out, args.width)
    print(f"{args.out}: {width} x {height}")


if __name__ == "__main__":
    main()
