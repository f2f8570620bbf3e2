"""Data Docs: ``W/quality/index.html`` and GX's own site under ``W/quality/gx/``.

GX's site builder renders each suite and each validation into ``W/quality/gx/`` (its pages load
Bootstrap and jQuery from CDNs). ``W/quality/index.html`` is our own page: standalone (inline
CSS, no scripts), readable offline, with the verdict, one table per suite with every expectation,
its observed value and the batches / days / keys that failed it, the recent runs, and a link to
each suite's GX validation page.
"""

from __future__ import annotations

import html
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tracehouse.quality.engine import GxSession, SuiteResult

QUALITY_DIR = "quality"
GX_SITE_DIR = "gx"
SITE_NAME = "tracehouse"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.2rem; }
.verdict { font-size: 1.1rem; padding: .6rem .9rem; border-radius: 6px; margin: 1rem 0; }
.PASS { background: #dafbe1; } .WARN { background: #fff8c5; } .FAIL { background: #ffebe9; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; } .warn { color: #9a6700; font-weight: 600; }
.fail { color: #cf222e; font-weight: 600; } .muted { color: #656d76; }
code { font-size: 12px; background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""


def quality_dir(warehouse: Path | str) -> Path:
    """``<warehouse>/quality``: where the Data Docs go."""
    return Path(warehouse) / QUALITY_DIR


def build_gx_site(session: GxSession, target: Path) -> Path | None:
    """Render GX's Data Docs for this run's validations into ``target`` (replaced whole)."""
    if session.context_or_none is None:
        return None
    context = session.context
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(tmp)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    try:
        context.build_data_docs(site_names=[SITE_NAME])
    finally:
        context.delete_data_docs_site(SITE_NAME)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target / "index.html"


def _gx_pages(site: Path | None, suite: str) -> tuple[str | None, str | None]:
    """Relative links (from W/quality/) to the suite's GX validation and expectation pages."""
    if site is None:
        return None, None
    root = site.parent
    parts = suite.split(".")  # GX nests a dotted suite name into folders
    validations = sorted(root.joinpath("validations", *parts).glob("__none__/*/*.html"))
    expectations = root.joinpath("expectations", *parts[:-1], f"{parts[-1]}.html")
    base = root.parent
    v = str(validations[-1].relative_to(base)) if validations else None
    e = str(expectations.relative_to(base)) if expectations.is_file() else None
    return v, e


def _status(ok: bool | None, severity: str) -> str:
    if ok is None:
        return '<span class="muted">skipped</span>'
    if ok:
        return '<span class="ok">pass</span>'
    if severity == "fail":
        return '<span class="fail">FAIL</span>'
    return '<span class="warn">warn</span>'


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def render_index(
    verdict: str,
    level: str,
    suites: list[SuiteResult],
    *,
    gx_index: Path | None,
    history: pd.DataFrame | None = None,
    run_id: str | None = None,
) -> str:
    """The standalone HTML of ``W/quality/index.html``."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>tracehouse data quality</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>tracehouse data quality</h1>",
        f"<div class='muted'>run {_e(run_id)} &middot; built {now}</div>",
        f"<div class='verdict {level}'>{_e(verdict)}</div>",
        "<p>Policy: rows that break the event contract are quarantined by the lake writer; "
        "suspicious <b>batches</b> warn (recorded here, the run goes on); broken <b>marts</b> fail "
        "the run before anything is published, so readers keep the previous marts.</p>",
    ]
    if gx_index is not None:
        rel = gx_index.relative_to(gx_index.parent.parent)
        parts.append(f"<p>Great Expectations' own Data Docs: <a href='{_e(rel)}'>{_e(rel)}</a> "
                     "(loads its styles from CDNs).</p>")
    parts += ["<h2 id='suites'>Suites</h2><table><tr><th>suite</th><th>stage</th>"
              "<th>target</th><th>policy</th><th class='num'>rows checked</th>"
              "<th class='num'>expectations</th><th class='num'>failed</th><th>result</th>"
              "<th>GX pages</th></tr>"]
    for s in suites:
        anchor = s.suite.replace(".", "-")
        v, e = _gx_pages(gx_index, s.suite)
        links = " ".join(
            f"<a href='{_e(href)}'>{label}</a>" for href, label in ((v, "validation"),
                                                                     (e, "suite")) if href
        ) or "<span class='muted'>-</span>"
        ok = None if not s.outcomes else s.success
        parts.append(
            f"<tr><td><a href='#{anchor}'>{_e(s.suite)}</a></td><td>{_e(s.stage)}</td>"
            f"<td>{_e(s.target)}</td><td>{_e(s.severity)}</td><td class='num'>{s.rows:,}</td>"
            f"<td class='num'>{len(s.outcomes)}</td><td class='num'>{len(s.failed)}</td>"
            f"<td>{_status(ok, s.severity)}</td><td>{links}</td></tr>"
        )
    parts.append("</table>")
    for s in suites:
        anchor = s.suite.replace(".", "-")
        parts.append(f"<h2 id='{anchor}'>{_e(s.suite)} <span class='muted'>"
                     f"({_e(s.stage)} &middot; {_e(s.target)} &middot; on failure: "
                     f"{'fail the run' if s.severity == 'fail' else 'warn'})</span></h2>")
        if s.note:
            parts.append(f"<p class='muted'>{_e(s.note)}</p>")
        if not s.outcomes:
            continue
        parts.append("<table><tr><th>result</th><th>expectation</th><th>column</th>"
                     "<th>arguments</th><th>observed</th><th>failing</th><th>why</th></tr>")
        for o in sorted(s.outcomes, key=lambda o: o.success):
            args = {k: v for k, v in o.check.kwargs.items() if k not in ("column", "column_A")}
            failing = ", ".join(o.unexpected_targets[:12])
            if len(o.unexpected_targets) > 12:
                failing += f" (+{len(o.unexpected_targets) - 12})"
            if not failing and o.unexpected_examples and not o.success:
                failing = "values: " + ", ".join(o.unexpected_examples[:5])
            parts.append(
                f"<tr><td>{_status(o.success, s.severity)}</td><td><code>{_e(o.check.expectation)}"
                f"</code></td><td>{_e(o.check.column)}</td><td><code>{_e(args or '')}</code></td>"
                f"<td>{_e(o.observed if o.observed is not None else o.unexpected_count)}</td>"
                f"<td>{_e(failing)}</td><td>{_e(o.check.description)}</td></tr>"
            )
        parts.append("</table>")
    if history is not None and not history.empty:
        parts.append("<h2 id='history'>Recent runs</h2><table><tr><th>run</th><th>checked at</th>"
                     "<th class='num'>expectations</th><th class='num'>warnings</th>"
                     "<th class='num'>failures</th></tr>")
        for row in history.itertuples(index=False):
            parts.append(
                f"<tr><td>{_e(row.run_id)}</td><td>{_e(row.checked_at)}</td>"
                f"<td class='num'>{row.expectations}</td><td class='num'>{row.warnings}</td>"
                f"<td class='num'>{row.failures}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_docs(
    warehouse: Path | str,
    session: GxSession,
    suites: list[SuiteResult],
    verdict: str,
    level: str,
    *,
    history: pd.DataFrame | None = None,
    run_id: str | None = None,
) -> Path:
    """Write GX's site and our index into ``<warehouse>/quality/``; return the index path."""
    folder = quality_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    gx_index = build_gx_site(session, folder / GX_SITE_DIR)
    index = folder / "index.html"
    tmp = folder / ".index.html.tmp"
    tmp.write_text(render_index(verdict, level, suites, gx_index=gx_index, history=history,
                                run_id=run_id), encoding="utf-8")
    tmp.replace(index)
    return index
