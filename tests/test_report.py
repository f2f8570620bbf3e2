"""`tracehouse report`: the regression notebook executes headless on a small lake's published
marts and renders one self-contained HTML file with its plots embedded."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_quality import small_warehouse
from tracehouse.cli import app

pytestmark = pytest.mark.slow

HEADINGS = (
    "Regression report",
    "What changed",
    "Every series that changed",
    "Before and after, by segment",
    "Stage latency waterfall",
    "Cost per successful task",
    "Retrieval hit rate at its three points",
    "Tool reliability and tool-use correctness",
    "Top failure categories",
    "Versions side by side",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    lake, warehouse, _ = small_warehouse(tmp_path_factory)
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(
        app,
        ["report", "--warehouse", str(warehouse), "--out", str(out),
         "--truth", str(lake.parent / "truth.json")],
        # no home-directory state: the kernel must come from this interpreter alone
        env={"HOME": str(out.parent), "JUPYTER_PATH": "", "JUPYTER_DATA_DIR": str(out.parent)},
    )
    assert result.exit_code == 0, result.output
    return out, out.read_text()


def test_the_report_has_every_section(report: tuple[Path, str]) -> None:
    _, html = report
    for heading in HEADINGS:
        assert re.search(rf"<h[1-3][^>]*>{re.escape(heading)}", html), heading
    assert "most recent call last" not in html
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html  # nothing on stderr


def test_the_report_is_self_contained_with_embedded_pngs(report: tuple[Path, str]) -> None:
    _, html = report
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 8
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)
    assert not re.search(r"<link[^>]+href=[\"']https?://", html)
    assert "def q(sql" not in html  # the code cells are not in the report


def test_one_sentence_per_plot(report: tuple[Path, str]) -> None:
    _, html = report
    # every figure is preceded by a sentence saying what to look at
    assert html.count("<img") <= len(re.findall(r"<p>[^<]{40,}", html))
