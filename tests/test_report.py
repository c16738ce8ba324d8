import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

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
    # agreement rests on the images with a human map, fewer than the run's: said, and why
    board = json.loads(CliRunner().invoke(cli, ["leaderboard", str(out), "--format",
                                                "json"]).output)
    n, images = board[0]["agreement_n"], board[0]["images"]
    assert n < images and f"n{n}!" in text and "nk: the value rests on k of the run" in text
    assert len(parser.images) >= 8  # wins, measures, noise, transforms, stability, drops,
    # overlays
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")  # inlined: no network
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "http://" not in page and "https://" not in page
    # nothing of the machine it was made on: no absolute path
    for place in (tmp_path, Path(__file__).resolve().parents[1], Path.home()):
        assert str(place) not in page
    # one model order, the leaderboard's, in the tables as in the figures
    board = re.findall(r"<tr><td>\d+</td><td class=\"name\">([^<]+)</td>",
                       page.split("<h2>Leaderboard")[1]
                       .split("</table>")[0])
    provenance = re.findall(r"<tr><td class='name'>([^<]+)</td><td>",
                            page.split("<h2>Provenance")[1]
                            .split("</table>")[1])
    assert board == provenance and sorted(board) == ["a", "b", "c"]
    # the stability matrices say how their cells relate to the family's headline
    assert "Cells: mean SSIM" in text and "for every model of it" in text


@pytest.mark.parametrize("source,expected", [("data.npz[test]", "data.npz[test]"),
                                             ("/elsewhere/x/faces.npz[test]", "faces.npz[test]"),
                                             ("/elsewhere/images", "images")])
def test_report_shows_paths_relative_or_by_name(tmp_path, monkeypatch, source, expected):
    from harness.report.page import shown

    monkeypatch.chdir(tmp_path)
    if not source.startswith("/"):
        source = str(tmp_path / source)
    assert shown(source) == expected


def test_report_of_a_folder_without_a_run(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no scores.parquet" in res.output
