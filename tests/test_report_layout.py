"""The report as a reader sees it: rendered by headless Chromium (Debian's `chromium`,
driven by Playwright's Python package) at a laptop's 900 px and a desktop's 1,400 px,
and measured by the browser itself. No element may reach past the window unless it sits
in a box that scrolls sideways (the tables do), no model name may wrap, and no text may be
smaller than 11 px, the page's or the figures' (each figure records its smallest text in
its PNG's pixels, scaled here by the width it is shown at). Skipped, with the reason,
where Chromium or Playwright is missing; `.ci/run` installs Chromium where it can."""

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli

playwright = pytest.importorskip("playwright.sync_api",
                                 reason="the layout test needs Playwright (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="the layout test needs Chromium (apt-get install chromium)")

MEASURE = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const style = getComputedStyle(p);
      if (['auto', 'scroll'].includes(style.overflowX)
          && p.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const out = {width, page: document.documentElement.scrollWidth, wide: [], small: [],
               wrapped: [], figures: 0};
  for (const img of document.querySelectorAll('img')) {  // text inside the figures
    const shown = img.dataset.textPx * img.getBoundingClientRect().width / img.naturalWidth;
    out.figures += 1;
    if (!(shown >= 11)) out.small.push(`figure "${img.alt}": text at ${shown.toFixed(1)} px`);
  }
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > width + 1 && !scrolls(el)) out.wide.push(`${el.tagName} ${box.right}`);
    const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (text && size < 11) out.small.push(`${el.tagName} ${size}px: ${el.textContent}`);
    if (el.matches('td.name')) {  // a name on more than one line box has wrapped
      const range = document.createRange();
      range.selectNodeContents(el);
      if (range.getClientRects().length > 1) out.wrapped.push(el.textContent);
    }
  }
  return out;
}"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a CAM run of the built-in zoo (15 models: the widest table)."""
    out = tmp_path_factory.mktemp("layout") / "zoo-cam"
    runner = CliRunner()
    res = runner.invoke(cli, ["run", "--method", "cam", "--limit", "10", "--out", str(out),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(cli, ["report", str(out)]).exit_code == 0
    return out / "report.html"


@pytest.mark.parametrize("width", [900, 1400])
def test_the_report_fits_the_window_in_chromium(report, width, tmp_path):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(Path(report).as_uri())
        found = page.evaluate(MEASURE)
        page.screenshot(path=str(tmp_path / f"report-{width}.png"))
        browser.close()
    assert found["page"] <= width, f"the page scrolls sideways: {found['page']} px"
    assert not found["wide"], found["wide"][:5]
    assert not found["small"], found["small"][:5]
    assert not found["wrapped"], found["wrapped"][:5]
    assert found["figures"] >= 15  # the headline and win-matrix panels, overlays, ...
