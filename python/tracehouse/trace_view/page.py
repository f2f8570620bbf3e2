"""The drill-down as a standalone HTML page (inline CSS, no scripts)."""

from __future__ import annotations

import html

from tracehouse.trace_view.explain import explain
from tracehouse.trace_view.fields import (
    _annotation_lines,
    _feedback_lines,
    _header_fields,
    _ms,
    _span_label,
    _usd,
    decision_fields,
)
from tracehouse.trace_view.model import TraceView, _num

_HTML_COLORS = {"ok": "#2da44e", "error": "#cf222e", "timeout": "#cf222e", "blocked": "#8250df",
                "degraded": "#bf8700"}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
th { background: #f6f8fa; }
.findings li { margin: .2rem 0; } .findings { background: #fff8c5; padding: .6rem 1.6rem;
       border-radius: 6px; }
.track { position: relative; height: 14px; background: #f6f8fa; min-width: 360px; }
.bar { position: absolute; top: 2px; height: 10px; border-radius: 2px; min-width: 2px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.lost { color: #cf222e; font-weight: 600; } .kept { color: #1a7f37; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; margin: .3rem 0; }
dt { font-weight: 600; } dd { margin: 0; }
.span { margin: .6rem 0; padding-left: .6rem; border-left: 3px solid #d0d7de; }
"""


def render_html(view: TraceView) -> str:
    """The same drill-down as a standalone HTML page (inline CSS, no scripts)."""
    e = html.escape
    total = view.duration_ms
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>trace {e(view.trace_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>trace <code>{e(view.trace_id)}</code></h1><dl>",
    ]
    for k, v in _header_fields(view):
        parts.append(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>")
    parts.append("</dl><h2>What went wrong</h2><ul class='findings'>")
    for line in explain(view) or ["Nothing unusual found in the spans, feedback or labels."]:
        parts.append(f"<li>{e(line)}</li>")
    parts.append(f"</ul><h2>Timeline</h2><p>Bars are scaled to the request's {e(_ms(total))}; "
                 "colour is the span status (green ok, red error/timeout, purple blocked, "
                 "amber degraded).</p><table><tr><th>span</th><th>status</th>"
                 "<th class='num'>start</th><th class='num'>duration</th><th class='num'>cost</th>"
                 "<th>waterfall</th></tr>")
    for s in view.spans:
        off, dur = _num(s.get("offset_ms")) or 0.0, _num(s.get("duration_ms")) or 0.0
        left = max(0.0, min(100.0, off / max(total, 1e-9) * 100))
        width = max(0.3, min(100.0 - left, dur / max(total, 1e-9) * 100))
        status = str(s.get("status"))
        color = _HTML_COLORS.get(status, "#57606a")
        indent = int(s.get("depth", 0)) * 1.2
        cost = _num(s.get("cost_usd"))
        parts.append(
            f"<tr><td style='padding-left:{indent + .5:.1f}rem'>{e(_span_label(s))}</td>"
            f"<td style='color:{color}'>{e(status)}</td><td class='num'>{e(_ms(off))}</td>"
            f"<td class='num'>{e(_ms(dur))}</td><td class='num'>{e(_usd(cost) if cost else '')}"
            f"</td><td><div class='track'><div class='bar' style='left:{left:.2f}%;"
            f"width:{width:.2f}%;background:{color}'></div></div></td></tr>"
        )
    parts.append("</table><h2>Decisions, span by span</h2>")
    for s in view.spans:
        fields = decision_fields(s)
        if not fields:
            continue
        status = str(s.get("status"))
        parts.append(
            f"<div class='span' style='margin-left:{int(s.get('depth', 0)) * 1.2:.1f}rem'>"
            f"<b>{e(str(s.get('span_type')))}</b>: {e(_span_label(s))} "
            f"<span style='color:{_HTML_COLORS.get(status, '#57606a')}'>({e(status)})</span><dl>"
        )
        for label, value in fields:
            parts.append(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>")
        parts.append("</dl></div>")
    if view.chunks:
        parts.append("<h2>Chunk journey</h2><p>retrieved &rarr; selected by rerank &rarr; "
                     "included in the prompt; judged-relevant chunks marked &#9733;.</p><table>"
                     "<tr><th>chunk</th><th>retrieved</th><th>reranked</th><th>prompt</th>"
                     "<th>lost at</th></tr>")
        for c in view.chunks:
            cls = "lost" if c.relevant and not c.included else ("kept" if c.relevant else "")
            prompt = "included" if c.included else (
                f"excluded: {c.excluded_reason}" if c.excluded_reason else "-")
            parts.append(
                f"<tr><td class='{cls}'>{'&#9733; ' if c.relevant else ''}<code>{e(c.chunk_id)}"
                f"</code></td><td>{e(f'#{c.retrieved_rank}' if c.retrieved_rank else '-')}</td>"
                f"<td>{e(f'#{c.selected_rank}' if c.selected_rank else '-')}</td>"
                f"<td>{e(prompt)}</td>"
                f"<td class='{cls}'>{e(c.lost_at or '') if c.relevant else ''}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Feedback</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in _feedback_lines(view) or ["none"]]
    parts.append("</ul><h2>Labels</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in _annotation_lines(view) or ["none"]]
    parts.append("</ul></body></html>")
    return "\n".join(parts)
