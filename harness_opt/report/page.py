"""`report()`: one self-contained HTML page for a suite or an optimize run.

Everything the page shows is computed here, in Python, from the ledger and the trace files, and
embedded as JSON and pre-rendered fragments: no server, no network, no CDN, so the file can be
mailed or attached to a ticket and still open years later. Diffs are precomputed for every pair of
versions up to `max_versions_all_pairs` versions; above that, for each version against its parent
and against the incumbent (the page says so).
"""

from __future__ import annotations

import base64
import json
import tempfile
from datetime import UTC, datetime
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from harness_opt.errors import UserError
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger.history import run_meta_spend
from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.lookup import resolve_run
from harness_opt.ledger.queries import (
    VersionInfo,
    latest_rollout_rows,
    optimize_runs,
    run_decisions,
    suites_of,
    version_infos,
)
from harness_opt.report.compare import diff_resolved
from harness_opt.report.html_diff import diff_html, highlight_css
from harness_opt.report.leaderboard import Leaderboard, board
from harness_opt.report.scope import ResolvedVersion, suite_name

_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value: Any) -> str:
    """JSON that is inert inside `<script type="application/json">`, whatever text a model wrote.

    `</script>` would end the element and `<!--<script>` sends the HTML tokenizer into a state where
    the page's own script is swallowed; escaping every `<`, `>` and `&` (and U+2028/2029, line breaks
    to some JavaScript parsers) as `\\uXXXX` keeps the JSON identical for JSON.parse and markup-free.
    """
    return json.dumps(value, default=str).translate(_SCRIPT_ESCAPES)


def _asset(name: str) -> str:
    return (resources.files("harness_opt.report") / "assets" / name).read_text(encoding="utf-8")


def _resolved(info: VersionInfo) -> ResolvedVersion:
    version = None
    if info.path and Path(info.path).is_dir():
        try:
            loaded = HarnessVersion.load(info.path)
            version = loaded if loaded.hash == info.hash else None
        except UserError:
            version = None
    return ResolvedVersion(hash=info.hash, label=info.label, path=info.path, version=version, info=info)


def _progress_png(ledger: Ledger, run_id: str) -> str | None:
    """The run's progress plot as a base64 PNG, redrawn from the ledger (the run's own file may be gone)."""
    from harness_opt.report.progress_plot import plot_progress
    from harness_opt.search.records import CandidateRecord, OptimizeResult

    run = next((r for r in optimize_runs(ledger) if r["run_id"] == run_id), None)
    result = (run or {}).get("summary", {}).get("result")
    if not result:
        return None
    candidates = [CandidateRecord.model_validate(d) for d in run_decisions(ledger, run_id)]
    parsed = OptimizeResult.model_validate({**result, "candidates": candidates})
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_progress(parsed, Path(tmp) / "progress.png")
        return base64.b64encode(path.read_bytes()).decode()


def _trace_json(ref: str) -> dict[str, Any] | None:
    try:
        trace = read_trace(ref)
    except (UserError, OSError, ValueError):
        return None
    return trace.model_dump(mode="json")


def _tree(infos: dict[str, VersionInfo], scope: list[str]) -> list[dict[str, Any]]:
    """Lineage forest of the versions in scope: each node {hash, label, children}."""
    in_scope = set(scope)
    children: dict[str | None, list[str]] = {}
    for h in scope:
        parent = infos[h].parent if h in infos else None
        children.setdefault(parent if parent in in_scope else None, []).append(h)

    def node(h: str) -> dict[str, Any]:
        kids = sorted(children.get(h, []), key=lambda k: (infos[k].version or 0) if k in infos else 0)
        return {"hash": h, "children": [node(k) for k in kids]}

    return [
        node(h)
        for h in sorted(children.get(None, []), key=lambda k: (infos[k].version or 0) if k in infos else 0)
    ]


def _pairs(
    order: list[str], infos: dict[str, VersionInfo], incumbent: str | None, cap: int
) -> list[tuple[str, str]]:
    if len(order) <= cap:
        return list(combinations(order, 2))
    chosen: set[tuple[str, str]] = set()
    rank = {h: i for i, h in enumerate(order)}
    for h in order:
        parent = infos[h].parent if h in infos else None
        if parent in rank:
            chosen.add((parent, h))
        if incumbent in rank and incumbent != h:
            chosen.add(tuple(sorted((incumbent, h), key=rank.__getitem__)))  # type: ignore[arg-type]
    return sorted(chosen, key=lambda p: (rank[p[0]], rank[p[1]]))


def report(
    run: str | None = None,
    *,
    suite: str | Path | None = None,
    split: str = "val",
    out: Path | str = "report.html",
    ledger: Ledger | None = None,
    max_versions_all_pairs: int = 20,
    traces_per_version: int = 100,
) -> Path:
    """Write the HTML report of optimize run `run` (an id prefix) or of every version on `suite`."""
    ledger = ledger or Ledger()
    infos = version_infos(ledger)
    run_id: str | None = None
    if run is not None:
        run_id = resolve_run(ledger, run)["run_id"]
        candidates = [d.get("hash") for d in run_decisions(ledger, run_id) if d.get("hash")]
        scope_hint = list(dict.fromkeys(h for h in candidates if h))
        found = [s for s, sp, _ in suites_of(ledger, scope_hint) if sp == split] if scope_hint else []
        name = suite_name(suite) if suite is not None else (found[0] if found else None)
    else:
        name = suite_name(suite) if suite is not None else None
        if name is None:
            found = sorted({s for s, sp, _ in suites_of(ledger) if sp == split})
            if len(found) != 1:
                raise UserError(
                    f"the ledger has results on {len(found)} suites for split {split}: "
                    f"{', '.join(found) or 'none'}",
                    fix="pass a run id or --suite",
                )
            name = found[0]
    if name is None:
        raise UserError(f"run {run} has no results on split {split}", fix="pick another --split or run")
    lb: Leaderboard = board(ledger, name, split, run_id=run_id)
    if run_id is not None:
        lb.rows = [r for r in lb.rows if r.hash in scope_hint]
    if run_id is None and lb.incumbent is not None:
        run_id = lb.incumbent.run_id
    if not lb.rows:
        raise UserError(
            f"no results on {name}/{split} in the ledger", fix=f"run `harness-opt eval ... --suite {name}`"
        )

    order = sorted(
        dict.fromkeys(r.hash for r in lb.rows), key=lambda h: (infos[h].version or 0) if h in infos else 0
    )
    resolved = {
        h: _resolved(infos[h]) if h in infos else ResolvedVersion(hash=h, label=h[:12]) for h in order
    }
    diffs: dict[str, str] = {}
    refs: set[str] = set()
    incumbent = lb.incumbent.hash if lb.incumbent else None
    for a, b in _pairs(order, infos, incumbent, max_versions_all_pairs):
        d = diff_resolved(resolved[a], resolved[b], suite=name, split=split, ledger=ledger)
        diffs[f"{a}|{b}"] = diff_html(d)
        if d.results:
            refs.update(r for f in d.results.flips for r in (f.trace_a, f.trace_b) if r)

    rollouts: dict[str, list[dict[str, Any]]] = {}
    for h in order:
        rows = latest_rollout_rows(ledger, h, name, split, limit=traces_per_version)
        rollouts[h] = [{k: v for k, v in r.items() if k != "created"} for r in rows]
        refs.update(r["trace_ref"] for r in rows if r["trace_ref"])
    traces = {ref: t for ref in sorted(refs) if (t := _trace_json(ref)) is not None}

    data = {
        "suite": name,
        "split": split,
        "run_id": run_id,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {
            h: {
                "label": resolved[h].label,
                "proposer": infos[h].proposer if h in infos else "",
                "hypothesis": infos[h].hypothesis if h in infos else "",
                "changes": infos[h].changes if h in infos else [],
            }
            for h in order
        },
        "order": order,
        "leaderboard": lb.model_dump(mode="json"),
        "tree": _tree(infos, order),
        "diffs": diffs,
        "all_pairs": len(order) <= max_versions_all_pairs,
        "rollouts": rollouts,
        "traces": traces,
    }
    progress = _progress_png(ledger, run_id) if run_id else None
    meta = run_meta_spend(ledger, run_id) if run_id else None
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(_asset("report.html.j2")).render(
        title=f"harness-opt report · {name}/{split}",
        css=_asset("report.css") + highlight_css(),
        js=_asset("report.js"),
        data=script_json(data),
        progress=progress,
        lb=lb,
        d=data,
        meta=meta if meta is not None and meta.proposals else None,
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
