"""The history filesystem: every candidate of the search so far, as folders a proposer can grep.

Meta-Harness found that what a proposer may read decides what it finds: a proposer that could read
the raw traces of every earlier candidate scored 50.0 where one given summaries scored 34.9. So the
history is not a summary: one folder per candidate evaluated so far (this run, or every optimize run
of the agent), holding its files, a diff against its parent, its hypothesis and outcome, its per-task
train scores and its raw train traces, whole; and an `INDEX.md` that ranks the candidates and lists,
for each, the tasks it won and lost against the incumbent it was compared with.

Built from the ledger and the trace files, **train only**: rollouts come from a query whose split is
fixed to train (`ledger/history.py`), val appears only as aggregate scores and opaque task keys, and
a candidate the scan found sealed-split text in is listed without its files or traces. Rebuilt into a
fresh directory every iteration and swapped in whole, so a reader never sees half a history.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness_opt.evaluate.tracestore import read_trace
from harness_opt.harness.version import read_files
from harness_opt.ledger.history import (
    history_decisions,
    history_runs,
    sealed_versions,
    train_rollout_rows,
)
from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.queries import VersionInfo, candidate_task_wins, version_infos
from harness_opt.propose.base import opaque_task_key
from harness_opt.propose.evidence import render_trace
from harness_opt.records import Task

INDEX_FILE = "INDEX.md"
MAX_FILE_BYTES = 200_000
"""A version file larger than this (a data file) is listed, not copied."""
WITHHELD = (
    "withheld: the scan found text of a sealed split (val or test) in this candidate, so neither its "
    "files nor its traces are shown to proposers"
)


@dataclass
class HistorySource:
    """Where a history comes from: the ledger, the runs to include, and the suite's train side."""

    ledger: Ledger
    run_id: str
    agent: str
    suite: str | None = None
    """The suite's name, for train rollouts and per-task wins; None: no traces (the training domain)."""
    model: str | None = None
    train_tasks: Sequence[Task] = ()
    """Train tasks, for the expected answers shown in train traces (train gold is allowed)."""
    all_runs: bool = False
    """Also every earlier optimize run of this agent (`--meta-history agent`)."""


@dataclass
class _Candidate:
    """One version as the history shows it, with every decision made about it."""

    hash: str
    info: VersionInfo | None
    folder: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    withheld: bool = False
    train: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.info.label if self.info else self.hash[:12]

    @property
    def last(self) -> dict[str, Any]:
        return self.decisions[-1]["detail"] if self.decisions else {}

    @property
    def val_score(self) -> float | None:
        scores = [d["detail"].get("val_score") for d in self.decisions]
        known = [s for s in scores if s is not None]
        return known[-1] if known else None

    def train_pass(self) -> tuple[int, int]:
        return sum(1 for r in self.train if r["passed"]), len(self.train)


@dataclass
class HistoryStats:
    """What one build wrote (the loop logs it; tests assert on it)."""

    candidates: int = 0
    traces: int = 0
    withheld: int = 0
    failed_proposals: int = 0


def _safe_name(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    name, n = base[:80], 2
    while name in taken:
        name, n = f"{base[:76]}-{n}", n + 1
    taken.add(name)
    return name


def _folder(info: VersionInfo | None, version_hash: str, taken: set[str]) -> str:
    if info is not None and info.version is not None:
        return _safe_name(f"v{info.version:04d}", taken)
    return _safe_name(version_hash[:12], taken)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _reason(detail: dict[str, Any], withheld: bool) -> str:
    if withheld and detail.get("outcome") in ("invalid", "rejected"):
        return "rejected by the scan (sealed-split text; details withheld from proposers)"
    return " ".join(str(detail.get("reason") or "").split())


class HistoryBuilder:
    """Writes one history directory from a `HistorySource`."""

    def __init__(self, source: HistorySource) -> None:
        self.src = source
        self.tasks = {t.id: t for t in source.train_tasks}
        self.stats = HistoryStats()

    def build(self, dest: Path) -> HistoryStats:
        """Write the history to `dest` (replaced whole; written beside it first, then renamed)."""
        src = self.src
        agent = src.agent if src.all_runs else None
        runs = history_runs(src.ledger, src.run_id, agent)
        decisions = history_decisions(src.ledger, runs)
        candidates, failed = self._candidates(decisions)
        staging = dest.with_name(dest.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "candidates").mkdir(parents=True)
        by_hash = {c.hash: c for c in candidates}
        for c in candidates:
            self._write_candidate(staging / "candidates" / c.folder, c, by_hash)
        wins = self._val_wins(runs, by_hash)
        index = self._index(candidates, failed, decisions, wins, by_hash, runs)
        (staging / INDEX_FILE).write_text(index, encoding="utf-8")
        (staging / "index.json").write_text(
            json.dumps(self._index_json(candidates, failed), indent=1, default=str), encoding="utf-8"
        )
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        return self.stats

    # ------------------------------------------------------------------------- gathering

    def _candidates(self, decisions: list[dict[str, Any]]) -> tuple[list[_Candidate], list[dict[str, Any]]]:
        src = self.src
        infos = version_infos(src.ledger)
        order: list[str] = []
        grouped: dict[str, list[dict[str, Any]]] = {}
        failed: list[dict[str, Any]] = []
        for d in decisions:
            if d["candidate"] == "-":
                failed.append(d)
                continue
            if d["candidate"] not in grouped:
                order.append(d["candidate"])
            grouped.setdefault(d["candidate"], []).append(d)
        sealed = sealed_versions(src.ledger, order) if order else set()
        taken: set[str] = set()
        out = [
            _Candidate(
                hash=h,
                info=infos.get(h),
                folder=_folder(infos.get(h), h, taken),
                decisions=grouped[h],
                withheld=h in sealed,
            )
            for h in order
        ]
        if src.suite is not None and order:
            shown = [c.hash for c in out if not c.withheld]
            rows = train_rollout_rows(src.ledger, shown, src.suite, src.model)
            for c in out:
                c.train = [r for r in rows if r["version_hash"] == c.hash]
        self.stats.candidates = len(out)
        self.stats.withheld = sum(c.withheld for c in out)
        self.stats.failed_proposals = len(failed)
        return out, failed

    def _val_wins(self, runs: list[str], by_hash: dict[str, _Candidate]) -> list[dict[str, Any]]:
        """Per decision, the val tasks won and lost against its incumbent, as opaque keys."""
        src = self.src
        if src.suite is None or src.model is None:
            return []
        out = []
        for run_id in runs:
            for w in candidate_task_wins(src.ledger, run_id, src.suite, src.model):
                if w.candidate not in by_hash or by_hash[w.candidate].withheld:
                    continue
                inc = by_hash.get(w.incumbent)
                out.append(
                    {
                        "candidate": by_hash[w.candidate].folder,
                        "incumbent": inc.folder if inc else w.incumbent[:12],
                        "iteration": w.iteration,
                        "wins": [opaque_task_key(run_id, t) for t in w.wins],
                        "losses": [opaque_task_key(run_id, t) for t in w.losses],
                    }
                )
        return out

    # --------------------------------------------------------------------------- writing

    def _write_candidate(self, folder: Path, c: _Candidate, by_hash: dict[str, _Candidate]) -> None:
        folder.mkdir(parents=True)
        files = {} if c.withheld else self._files(c)
        for rel, data in files.items():
            target = folder / "files" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data if len(data) <= MAX_FILE_BYTES else b"(larger than 200 kB: not copied)\n")
        parent = by_hash.get(c.info.parent or "") if c.info else None
        if files and parent is not None and not parent.withheld:
            patch = _diff(self._files(parent), files, parent.folder, c.folder)
            if patch:
                (folder / "diff.patch").write_text(patch, encoding="utf-8")
        if c.train:
            self._write_train(folder / "train", c)
        (folder / "SUMMARY.md").write_text(self._summary(c, parent, bool(files)), encoding="utf-8")

    def _files(self, c: _Candidate) -> dict[str, bytes]:
        path = Path(c.info.path) if c.info and c.info.path else None
        if path is None or not path.is_dir():
            return {}
        try:
            return read_files(path)
        except OSError:
            return {}

    def _write_train(self, folder: Path, c: _Candidate) -> None:
        traces = folder / "traces"
        traces.mkdir(parents=True)
        lines = ["task_id\ttrial\tscore\tpassed\terror\ttrace"]
        taken: set[str] = set()
        for r in c.train:
            name = _safe_name(f"{r['task_id']}.t{r['trial']}", taken) + ".md"
            text = self._trace_text(r)
            if text is not None:
                (traces / name).write_text(text, encoding="utf-8")
                self.stats.traces += 1
            lines.append(
                f"{r['task_id']}\t{r['trial']}\t{r['score']:g}\t{r['passed']}\t{r['error'] or ''}\t"
                f"{'traces/' + name if text is not None else '-'}"
            )
        (folder / "scores.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _trace_text(self, row: dict[str, Any]) -> str | None:
        ref = row.get("trace_ref")
        if not ref:
            return None
        try:
            trace = read_trace(ref)
        except Exception:  # a missing or torn trace file: the scores still stand
            return None
        if trace.key.split != "train":  # the query guarantees it; a wrong ref must not leak val
            return None
        return render_trace(trace, self.tasks.get(trace.key.task_id)) + "\n"

    def _summary(self, c: _Candidate, parent: _Candidate | None, has_files: bool) -> str:
        last = c.last
        lines = [f"# {c.label} ({c.folder})", ""]
        lines.append(f"- proposer: {last.get('proposer', '')}")
        lines.append(f"- parent: {parent.label + ' (' + parent.folder + ')' if parent else '-'}")
        lines.append(f"- mechanism: {last.get('mechanism', '')}")
        lines.append(f"- hypothesis: {' '.join(str(last.get('hypothesis') or '').split())}")
        for change in (c.info.changes if c.info else [])[:20]:
            lines.append(f"  - change: {change}")
        lines += ["", "## Decisions (val: aggregate figures only)"]
        for d in c.decisions:
            det = d["detail"]
            lines.append(
                f"- run {d['run_id']} iteration {d['iteration']}: {str(det.get('outcome', '')).upper()} "
                f"val {_fmt(det.get('val_score'))} delta {_fmt(det.get('delta'), '+.4f')} "
                f"p {_fmt(det.get('p_value'), '.3g')}: {_reason(det, c.withheld)}"
            )
        lines += ["", "## Train"]
        if c.withheld:
            lines.append(WITHHELD)
        elif c.train:
            passed, total = c.train_pass()
            mean = sum(r["score"] for r in c.train) / total
            lines.append(
                f"{total} train rollouts, {passed} passed, mean score {mean:.3f}: train/scores.tsv; "
                "raw traces in train/traces/"
            )
        else:
            lines.append("no train rollouts recorded")
        if has_files:
            lines.append("\nFiles: files/ (the whole version); diff.patch: the change against its parent.")
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------------------- index

    def _index(
        self,
        candidates: list[_Candidate],
        failed: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
        wins: list[dict[str, Any]],
        by_hash: dict[str, _Candidate],
        runs: list[str],
    ) -> str:
        src = self.src
        scope = "this run" if len(runs) == 1 else f"{len(runs)} optimize runs of {src.agent}"
        out = [
            f"# History of {src.agent}{' on ' + src.suite if src.suite else ''}: {len(candidates)} "
            f"candidates ({scope})",
            "",
            "Each folder under candidates/ holds SUMMARY.md (hypothesis, outcome), files/ (the whole "
            "version), diff.patch (its change against its parent), train/scores.tsv and "
            "train/traces/*.md (raw train traces, whole: every message, tool call, output and the "
            "scorer's feedback). Grep them. Val appears only as aggregate scores and opaque task keys; "
            "test not at all.",
            "",
            "## Ranking (val score, best first)",
            "",
            "| # | candidate | folder | outcome | val | delta | p | train passed | mechanism |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        ranked = sorted(candidates, key=lambda c: (c.val_score is None, -(c.val_score or 0.0)))
        for i, c in enumerate(ranked, 1):
            det = c.last
            passed, total = c.train_pass()
            out.append(
                f"| {i} | {c.label} | {c.folder} | {det.get('outcome', '')} | {_fmt(c.val_score)} | "
                f"{_fmt(det.get('delta'), '+.4f')} | {_fmt(det.get('p_value'), '.3g')} | "
                f"{f'{passed}/{total}' if total else '-'} | {_cell(det.get('mechanism'))} |"
            )
        out += ["", "## Every decision, in order", ""]
        for d in decisions:
            det = d["detail"]
            found = by_hash.get(d["candidate"])
            who = found.folder if found else "-"
            out.append(
                f"- {d['run_id']} it {d['iteration']}: {who} by {det.get('proposer', '')} "
                f"[{det.get('mechanism', '')}] {str(det.get('outcome', '')).upper()}: "
                f"{_reason(det, bool(found and found.withheld))}"
            )
        out += self._train_wins(candidates, by_hash)
        if wins:
            out += ["", "## Val tasks won and lost against the incumbent (opaque keys, same per run)", ""]
            for w in wins:
                out.append(
                    f"- {w['candidate']} vs {w['incumbent']} (it {w['iteration']}): "
                    f"won {len(w['wins'])} [{' '.join(w['wins'])}], lost {len(w['losses'])} "
                    f"[{' '.join(w['losses'])}]"
                )
        return "\n".join(out) + "\n"

    def _train_wins(self, candidates: list[_Candidate], by_hash: dict[str, _Candidate]) -> list[str]:
        """Per decision, the train tasks (same task and trial) the candidate won and lost."""
        out = ["", "## Train tasks won and lost against the incumbent (same tasks and trials)", ""]
        any_pair = False
        for c in candidates:
            for d in c.decisions:
                inc = by_hash.get(d.get("incumbent") or "")
                if inc is None or not c.train or not inc.train:
                    continue
                theirs = {(r["task_id"], r["trial"]): r["score"] for r in inc.train}
                won: list[str] = []
                lost: list[str] = []
                for r in c.train:
                    other = theirs.get((r["task_id"], r["trial"]))
                    if other is not None and r["score"] != other:
                        (won if r["score"] > other else lost).append(r["task_id"])
                common = sum(1 for r in c.train if (r["task_id"], r["trial"]) in theirs)
                any_pair = True
                out.append(
                    f"- {c.folder} vs {inc.folder} (it {d['iteration']}, {common} common): won "
                    f"{len(won)} [{' '.join(won)}], lost {len(lost)} [{' '.join(lost)}]"
                )
        if not any_pair:
            out.append("(no candidate shares train tasks with its incumbent yet)")
        return out

    def _index_json(self, candidates: list[_Candidate], failed: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "folder": c.folder,
                    "label": c.label,
                    "outcome": c.last.get("outcome"),
                    "val_score": c.val_score,
                    "mechanism": c.last.get("mechanism"),
                    "withheld": c.withheld,
                    "train": [
                        {k: r[k] for k in ("task_id", "trial", "score", "passed", "error")} for r in c.train
                    ],
                }
                for c in candidates
            ],
            "failed_proposals": [
                {"iteration": d["iteration"], "reason": _reason(d["detail"], False)} for d in failed
            ],
        }


def _cell(value: Any) -> str:
    return " ".join(str(value or "").split()).replace("|", "/")


def _diff(old: dict[str, bytes], new: dict[str, bytes], a: str, b: str) -> str:
    parts: list[str] = []
    for rel in sorted(set(old) | set(new)):
        if old.get(rel) == new.get(rel):
            continue
        before = old.get(rel, b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = new.get(rel, b"").decode("utf-8", "replace").splitlines(keepends=True)
        parts += difflib.unified_diff(before, after, f"{a}/{rel}", f"{b}/{rel}")
    return "".join(parts)


def build_history(source: HistorySource, dest: Path) -> HistoryStats:
    """Write the history filesystem of `source` to `dest`."""
    return HistoryBuilder(source).build(dest)
