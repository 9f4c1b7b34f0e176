"""A `DiffReport` as an HTML fragment for the report page: highlighted file diffs, tool changes, flips.

Rendered in Python (pygments for the diffs) so the page needs no highlighting library of its own and
the figures on the page are the very numbers `harness-opt diff --json` prints.
"""

from __future__ import annotations

import html
from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from harness_opt.harness.diff import VersionDiff, WordOp
from harness_opt.report.compare import DiffReport, ResultsDiff

_FORMATTER = HtmlFormatter(nowrap=False, cssclass="hl")


def highlight_css() -> str:
    """The CSS the highlighted diffs need (inlined in the page)."""
    return str(_FORMATTER.get_style_defs(".hl"))


def words_html(ops: list[WordOp]) -> str:
    parts = []
    for op, text in ops:
        t = escape(text)
        parts.append(t if op == "equal" else f"<del>{t}</del>" if op == "delete" else f"<ins>{t}</ins>")
    return "".join(parts)


def _versions_html(d: VersionDiff) -> str:
    out = []
    if d.identical:
        return "<p>Same content hash: the two versions behave identically.</p>"
    anc = (
        f" <span class='muted'>(common ancestor {escape(d.common_ancestor)})</span>"
        if d.common_ancestor
        else ""
    )
    out.append(f"<h3>Lineage{anc}</h3><ol class='lineage-path'>")
    for step in d.lineage:
        arrow = "←" if step.direction == "from_a" else "→"
        changes = "".join(f"<li>{escape(c)}</li>" for c in step.changes)
        out.append(
            f"<li><span class='arrow'>{arrow}</span> <b>{escape(step.label)}</b> "
            f"<span class='tag'>{escape(step.proposer)}</span> {escape(step.hypothesis)}"
            + (f"<ul>{changes}</ul>" if changes else "")
            + "</li>"
        )
    out.append("</ol>")
    if d.settings:
        out.append("<h3>harness.toml settings</h3><ul class='settings'>")
        out.extend(
            f"<li><code>{escape(s.key)}</code>: {escape(repr(s.before))} → {escape(repr(s.after))}</li>"
            for s in d.settings
        )
        out.append("</ul>")
    if d.tools:
        out.append("<h3>tools.json</h3><ul class='tools'>")
        for c in d.tools:
            body = escape(c.summary())
            if c.words:
                where = f"{c.tool}: parameter '{c.param}'" if c.param else c.tool
                body = f"{escape(where)} description: <span class='words'>{words_html(c.words)}</span>"
            out.append(f"<li><span class='kind kind-{escape(c.kind)}'>{escape(c.kind)}</span> {body}</li>")
        out.append("</ul>")
    if d.files:
        out.append("<h3>Files</h3>")
    for f in d.files:
        out.append(
            f"<details open class='file'><summary><code>{escape(f.path)}</code> {escape(f.status)}</summary>"
        )
        if f.binary:
            out.append("<p>binary file differs</p>")
        elif f.summary:
            out.append(f"<p>{html.escape(f.summary)} (not shown)</p>")
        else:
            out.append(highlight(f.diff, DiffLexer(), _FORMATTER))
        out.append("</details>")
    if not (d.files or d.tools or d.settings):
        out.append("<p class='muted'>No file, tool or setting differs.</p>")
    return "".join(out)


def _trace_link(ref: str | None, text: str) -> str:
    if not ref:
        return "<span class='muted'>-</span>"
    return f"<a href='#' class='trace-link' data-ref='{escape(ref)}'>{escape(text)}</a>"


def _results_html(r: ResultsDiff) -> str:
    sign = "pos" if r.delta > 0 else "neg" if r.delta < 0 else ""
    rows = []
    for name, s in (("A", r.a), ("B", r.b)):
        rows.append(
            f"<tr><td>{name}</td><td>{escape(s.label)}</td><td>{escape(s.model)}</td>"
            f"<td class='num'>{s.score:.3f} <span class='ci'>[{s.ci[0]:.3f}, {s.ci[1]:.3f}]</span></td>"
            f"<td class='num'>${s.cost_usd:,.4f}</td><td class='num'>{s.tokens:,}</td>"
            f"<td class='num'>{s.latency_s:.2f}s</td></tr>"
        )
    rows.append(
        f"<tr class='delta'><td>B−A</td><td></td><td></td>"
        f"<td class='num {sign}'>{r.delta:+.3f} "
        f"<span class='ci'>[{r.delta_ci[0]:+.3f}, {r.delta_ci[1]:+.3f}]</span>"
        f" p={r.p_value:.3g}</td><td class='num'>{r.b.cost_usd - r.a.cost_usd:+,.4f}</td>"
        f"<td class='num'>{r.b.tokens - r.a.tokens:+,}</td>"
        f"<td class='num'>{r.b.latency_s - r.a.latency_s:+.2f}s</td></tr>"
    )
    head = (
        f"<h3>Results on {escape(r.suite)}/{escape(r.split)}</h3><p class='muted'>{r.n_tasks} tasks, "
        f"{r.n_rollouts} rollouts per side on the same (task, trial) keys; paired test {escape(r.method)}; "
        f"<b class='pos'>{len(r.fixed)} fixed</b>, <b class='neg'>{len(r.broken)} broken</b>."
        + (
            f" Infrastructure failures (not compared, not scored): A {r.infra_a}, B {r.infra_b}."
            if r.infra_a or r.infra_b
            else ""
        )
        + "".join(f" <b class='neg'>Degraded</b>: {escape(why)}." for why in r.degraded)
        + "</p>"
    )
    table = (
        "<table class='grid'><thead><tr><th></th><th>version</th><th>model</th><th>score (95% CI)</th>"
        "<th>cost</th><th>tokens</th><th>latency/rollout</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    flips = ""
    if r.flips:
        items = "".join(
            f"<tr class='flip-{f.kind}'><td>{escape(f.task_id)}</td>"
            f"<td><span class='badge {f.kind}'>{f.kind}</span></td>"
            f"<td class='num'>{f.score_a:.2f}</td><td class='num'>{f.score_b:.2f}</td>"
            f"<td>{_trace_link(f.trace_a, 'trace A')}</td><td>{_trace_link(f.trace_b, 'trace B')}</td></tr>"
            for f in sorted(r.flips, key=lambda f: (f.kind, f.task_id))
        )
        flips = (
            "<h3>Per-task flips</h3><table class='grid flips'><thead><tr><th>task</th><th>flip</th><th>A</th>"
            f"<th>B</th><th colspan='2'>traces</th></tr></thead><tbody>{items}</tbody></table>"
        )
    return head + table + flips


def diff_html(report: DiffReport) -> str:
    parts = [f"<h2>{escape(report.a_label)} → {escape(report.b_label)}</h2>"]
    if report.results is not None:
        parts.append(_results_html(report.results))
    for m in report.missing:
        parts.append(f"<p class='warn'>{escape(m.message)}; run <code>{escape(m.command)}</code></p>")
    if report.versions is not None:
        parts.append(_versions_html(report.versions))
    elif report.versions_note:
        parts.append(f"<p class='warn'>{escape(report.versions_note)}</p>")
    return "".join(parts)
