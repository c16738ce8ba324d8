import base64
import io
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import cli
from tests.test_run import tiny_zoo  # noqa: F401  (fixture)

pytest.importorskip("matplotlib")


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_report_renders_everything(tiny_zoo, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--zoo", str(tiny_zoo), "--out", str(out),
                                   "--limit", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["report", str(out), "--images", "3"])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.stack == []  # every element closed: well-formed enough for any browser
    text = " ".join(parser.text)
    for model in ("a", "b", "c"):
        assert re.search(rf"\b{model}\b", text)
    for measure in ("entropy", "out_of_set", "transforms", "stability", "degradation",
                    "agreement"):
        assert measure in text
    assert "Who beats whom" in text and "accuracy" in text and "pareto" in text
    assert len(parser.images) >= 8  # wins, measures, noise, transforms, stability, drops,
    # overlays
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")  # inlined: no network
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "http://" not in page and "https://" not in page


def test_report_of_a_folder_without_a_run(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no scores.parquet" in res.output
