"""The regression notebook's source and helpers.

``notebooks/regression_report.py`` (jupytext percent) is the source; the ``.ipynb`` that
`tracehouse report` executes is generated from it (``make notebook``) and must not drift. The
helpers the notebook calls (``tracehouse.report_notebook``) are checked on small frames here;
the notebook itself is executed end to end by ``tests/test_report.py``.
"""

from __future__ import annotations

from datetime import date
from itertools import zip_longest
from pathlib import Path

import duckdb
import jupytext
import nbformat
import pandas as pd
import pytest

from tracehouse.report_notebook import (
    Marts,
    before_after,
    changed_dimensions,
    changes_table,
    comparison_window,
    dimension_of,
    filter_changes,
    fmt_value,
    incidents_vs_changes,
    short,
    top_changes,
    unit_of,
    version_label,
    versions_table,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPT = NOTEBOOKS / "regression_report.py"
NOTEBOOK = NOTEBOOKS / "regression_report.ipynb"


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))
            for c in nb.cells]


def drift(script: Path, notebook: Path) -> list[str]:
    """Where ``notebook`` differs from what jupytext makes of ``script`` (empty: in sync)."""
    expected = _cells(jupytext.read(script))
    actual = _cells(nbformat.read(notebook, as_version=4))
    out = []
    for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
        if e[0] != a[0] or e[2] != a[2]:
            out.append(f"cell {i}: {e[0]} {e[2]} in the script, {a[0]} {a[2]} in the notebook")
        elif e[1] != a[1]:
            lines = [(x, y) for x, y in zip_longest(e[1].splitlines(), a[1].splitlines(),
                                                     fillvalue="") if x != y]
            out.append(f"cell {i}: script {lines[0][0]!r} vs notebook {lines[0][1]!r}")
    if len(expected) != len(actual):
        out.append(f"{len(expected)} cells in the script, {len(actual)} in the notebook")
    return out


def test_notebook_is_generated_from_the_script() -> None:
    problems = drift(SCRIPT, NOTEBOOK)
    assert not problems, ("notebooks/regression_report.ipynb drifted from its source "
                          "regression_report.py; run `make notebook`: " + "; ".join(problems))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in nb.cells[0].metadata.get("tags", [])  # papermill injects after it
    assert not any(c.get("outputs") for c in nb.cells)  # committed unexecuted


def test_the_sync_check_sees_an_edit_on_either_side(tmp_path: Path) -> None:
    script, notebook = tmp_path / "r.py", tmp_path / "r.ipynb"
    script.write_text(SCRIPT.read_text(encoding="utf-8").replace(
        "max_series = 16", "max_series = 12"), encoding="utf-8")
    notebook.write_text(NOTEBOOK.read_text(encoding="utf-8"), encoding="utf-8")
    assert any("max_series" in p for p in drift(script, notebook))
    # ... and a cell added to the script only
    script.write_text(SCRIPT.read_text(encoding="utf-8") + "\n# %%\nprint('new')\n",
                      encoding="utf-8")
    assert drift(script, notebook) == [
        f"{len(nbformat.read(NOTEBOOK, as_version=4).cells) + 1} cells in the script, "
        f"{len(nbformat.read(NOTEBOOK, as_version=4).cells)} in the notebook"]


def test_the_notebook_computes_nothing_the_module_has() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    assert "from tracehouse.report_notebook import" in source
    for helper in ("def unit_of", "def fmt_value", "def short", "def dimension_of",
                   "def axis_units", "PRIORITY = ["):
        assert helper not in source, helper


def test_units_and_formatting() -> None:
    assert [unit_of(n) for n in ("error_rate", "truncation_share", "cost_usd", "latency_p95_ms",
                                 "requests", "usd")] == ["share", "share", "usd", "ms",
                                                         "count", "usd"]
    assert fmt_value("error_rate", 0.125) == "12.5%"
    assert fmt_value("cost_usd", 0.01234) == "$0.0123"
    assert fmt_value("latency_p95_ms", 1234.4) == "1,234 ms"
    assert fmt_value("requests", None) == "n/a"
    assert fmt_value("requests", float("nan")) == "n/a"
    assert short("sha " + "ab" * 20, 60) == "sha ababababab…"  # 40-hex shas cut
    assert len(short("word " * 40, 30)) <= 30
    assert dimension_of("all") == "route_name"
    assert dimension_of("route_name=cheap|task_type=qa") == "route_name"
    assert dimension_of("prompt_version=support-v15") == "prompt_version"
    assert version_label("0123456789abcdef", "release_sha", 3) == "0123456"
    assert version_label("x" * 40, "prompt_version", 10) == "x" * 7 + "…"


def _changes() -> pd.DataFrame:
    return pd.DataFrame({
        "metric": ["error_rate", "error_rate", "error_rate", "cost_usd"],
        "segment_key": ["route_name=cheap", "route_name=cheap", "all", "all"],
        "change_at": ["2026-01-03T10:00:00", "2026-01-06T00:00:00", "2026-01-03T11:00:00",
                      "2026-02-01T00:00:00"],
        "score": [9.0, 3.0, 5.0, 7.0],
        "value_before": [0.01, 0.2, 0.01, 0.002],
        "value_after": [0.2, 0.02, 0.05, 0.004],
        "relative_change": [19.0, -0.9, 4.0, 1.0],
        "suspected_causes": [["model_name=gpt-x first seen 2026-01-03T09:40Z"], None, [], None],
    })


def test_changes_filtered_ranked_and_tabled() -> None:
    changes = filter_changes(_changes(), date(2026, 1, 1), date(2026, 1, 31))
    assert len(changes) == 3  # February is outside the period
    assert str(changes["change_at"].dt.tz) == "UTC"
    assert len(filter_changes(_changes(), date(2026, 1, 1), date(2026, 1, 31),
                              metric="error_rate", segment="all")) == 1
    top = top_changes(changes, 16)
    assert list(zip(top["segment_key"], top["score"], strict=True)) == [
        ("route_name=cheap", 9.0), ("all", 5.0)]  # one row per series, most certain first
    table = changes_table(top)
    assert table.iloc[0].to_dict() == {
        "metric": "error_rate", "segment_key": "route_name=cheap",
        "change_at": "2026-01-03 10:00", "before": "1.0%", "after": "20.0%", "change": "+1900%",
        "suspected_causes": "model_name=gpt-x first seen 2026-01-03T09:40Z"}
    assert table.iloc[1]["suspected_causes"] == ""


def test_incidents_against_detected_changes() -> None:
    changes = filter_changes(_changes(), date(2026, 1, 1), date(2026, 1, 31))
    incidents = [
        {"name": "model swap", "start_time": "2026-01-03T09:40:00+00:00", "end_time": None,
         "segment": "route_name=cheap", "metrics": ["error_rate", "latency_p95_ms"],
         "cause": "model_name=gpt-x"},
        {"name": "tenant outage", "start_time": "2026-01-03T08:00:00+00:00",
         "end_time": "2026-01-04T00:00:00+00:00", "segment": "tenant_id=acme",
         "metrics": ["error_rate"], "cause": None},
    ]
    rows = incidents_vs_changes(incidents, changes, date(2026, 1, 31)).to_dict("records")
    assert [(r["incident"], r["metric"], r["detected"], r["cause named"]) for r in rows] == [
        ("model swap", "error_rate", "yes", "yes"),
        ("model swap", "latency_p95_ms", "no", "no"),
        ("tenant outage", "error_rate", "elsewhere", "-"),
    ]
    assert rows[0]["detected at"] == "2026-01-03 10:00"
    assert rows[2]["detected in"] == "all, route_name=cheap"


def test_comparison_window_stops_at_the_neighbouring_changes() -> None:
    at = pd.Timestamp("2026-01-10")
    lo, hi = comparison_window([pd.Timestamp("2026-01-06"), at, pd.Timestamp("2026-01-20")], at)
    assert (lo, hi) == (pd.Timestamp("2026-01-06"), pd.Timestamp("2026-01-17"))


def test_before_after_weights_by_n() -> None:
    con = duckdb.connect()
    con.execute("""
        create table metric_daily as select * from (values
            ('day', 'error_rate', 'route_name=cheap', timestamp '2026-01-08', 0.0, 100),
            ('day', 'error_rate', 'route_name=cheap', timestamp '2026-01-09', 0.1, 300),
            ('day', 'error_rate', 'route_name=cheap', timestamp '2026-01-10', 0.5, 100),
            ('day', 'error_rate', 'route_name=standard', timestamp '2026-01-09', 0.02, 50),
            ('day', 'error_rate', 'route_name=cheap|task_type=qa', timestamp '2026-01-09', 0.9, 9),
            ('day', 'cost_usd', 'route_name=cheap', timestamp '2026-01-09', 1.0, 10)
        ) as t(grain, metric, segment_key, period_start, value, n)
    """)
    marts = Marts(con, date(2026, 1, 1), date(2026, 1, 31), {"metric_daily"})
    frame = before_after(marts, "error_rate", "route_name", pd.Timestamp("2026-01-10"),
                         lo=pd.Timestamp("2026-01-03"), hi=pd.Timestamp("2026-01-17"))
    rows = {r["segment_key"]: r for r in frame.to_dict("records")}
    assert set(rows) == {"route_name=cheap", "route_name=standard"}  # no crossed segments
    assert rows["route_name=cheap"]["before"] == pytest.approx(0.075)  # (0*100 + 0.1*300) / 400
    assert rows["route_name=cheap"]["after"] == pytest.approx(0.5)
    assert pd.isna(rows["route_name=standard"]["after"])


def test_versions_that_changed_in_reading_order() -> None:
    vq = pd.DataFrame({
        "version_dimension": ["app_version", "app_version", "model_name", "prompt_version",
                              "prompt_version", "release_sha"],
        "version_value": ["1.0", "1.1", "gpt-x", "v1", "v2", "abc"],
        "first_day": pd.to_datetime(["2026-01-01"] * 6), "last_day": pd.to_datetime(
            ["2026-01-05"] * 6),
        "traces": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "successful_task_rate": [0.9, 0.8, 0.7, 0.6, None, 0.5],
        "thumbs_down_rate": [0.1] * 6, "error_rate": [0.01] * 6,
        "correctness_mean": [None, 0.5, 0.5, 0.5, 0.5, 0.5],
        "labelled": [None, 1.0, 1.0, 1.0, 1.0, 1.0],
        "cost_per_request_usd": [0.001, None, 0.001, 0.001, 0.001, 0.001],
    })
    dims = changed_dimensions(vq)
    assert dims == ["prompt_version", "app_version"]  # one value only: not a change
    table = versions_table(vq, dims)
    assert list(table["version_dimension"]) == ["app_version", "app_version", "prompt_version",
                                                "prompt_version"]
    assert list(table["successful_task_rate"]) == ["90.0%", "80.0%", "60.0%", ""]
    assert list(table["labelled"]) == [0, 1, 1, 1]
    assert list(table["cost_per_request_usd"]) == ["$0.0010", "", "$0.0010", "$0.0010"]
