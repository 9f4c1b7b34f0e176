"""The candidate scan: read a proposed version before it is evaluated, for signs it games the metric.

Runs on the evaluator side (it may read sealed val/test data; the proposer never does) for every
proposer. Severity decides what the search does with the candidate:

* `reject` — the candidate is invalid and never evaluated (val/test text inside it, task ids of the
  sealed splits, edits outside the editable files, `[model] params` outside the broker's allowlist,
  reaching into the broker channel or replacing ctx methods so the trace no longer shows what
  happened);
* `flag`   — it may be evaluated, but can never become the incumbent (network, processes, env vars,
  paths outside its directory, dynamic code, a paraphrase of a val/test input, an expected answer
  only val/test use, logging or model calls removed that the trace relies on);
* `note`   — shown in `diff`, no effect (train task ids, printing a score to stdout).

Sealed-data findings count only for text the candidate *introduces*: what its parent already had, or
what the user wrote in the seed version, is not this candidate's doing, and public text (train inputs
and answers, hence the label set) is never a finding (`sealed.py`).
"""

from __future__ import annotations

import ast
import json
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from harness_opt.errors import UserError
from harness_opt.harness.lineage import lineage
from harness_opt.llm.params import ALLOWED, ParamError
from harness_opt.trust import codecheck, encoded
from harness_opt.trust.sealed import LiteralHit, SealedIndex, find_literals, sealed_index

if TYPE_CHECKING:
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.ledger import Ledger
    from harness_opt.suites.base import Suite

Severity = Literal["reject", "flag", "note"]
USER_PROPOSERS = ("seed", "human")
"""Versions these made were written by a person: their text is the user's, never a leak by a proposer."""
SEVERITY_ORDER: dict[str, int] = {"note": 1, "flag": 2, "reject": 3}

_CODE_SEVERITY: dict[str, Severity] = {
    "network": "flag",
    "process": "flag",
    "env": "flag",
    "file": "flag",
    "escape": "flag",
    "ctx-internals": "reject",
    "ctx-tamper": "reject",
    "sandbox-tamper": "reject",
    "terminal": "flag",
}
_LITERAL_SEVERITY: dict[str, Severity] = {
    "sealed-input": "reject",
    "sealed-paraphrase": "flag",
    "sealed-answer": "flag",
    "sealed-task-id": "reject",
    "train-task-id": "note",
}


class Finding(BaseModel):
    """One thing the scan found, where it is, and why it matters."""

    severity: Severity
    kind: str = Field(description="e.g. sealed-input, network, removed-logging, outside-editable.")
    file: str = Field(description="Path inside the version directory ('' for the version as a whole).")
    line: int | None = None
    message: str


class ScanReport(BaseModel):
    """All findings of one candidate, worst first; `max_severity` None means nothing was found."""

    version_hash: str = ""
    findings: list[Finding] = Field(default_factory=list)
    max_severity: Severity | None = None

    @property
    def rejected(self) -> bool:
        """The candidate must not be evaluated."""
        return self.max_severity == "reject"

    @property
    def blocks_incumbent(self) -> bool:
        """The candidate may never become the incumbent (reject or flag)."""
        return self.max_severity in ("reject", "flag")

    def summary(self, limit: int = 3) -> str:
        """One line for a decision reason: the worst findings first."""
        if not self.findings:
            return "scan: clean"
        shown = "; ".join(
            f"{f.severity} {f.kind} ({f.file}{f':{f.line}' if f.line else ''}): {f.message}"
            for f in self.findings[:limit]
        )
        more = f" (+{len(self.findings) - limit} more)" if len(self.findings) > limit else ""
        return f"scan: {shown}{more}"


def _edit_findings(
    candidate: HarnessVersion, parent: HarnessVersion, editable: tuple[str, ...]
) -> list[Finding]:
    cand, parent_files = candidate.files(), parent.files()
    out: list[Finding] = []
    for path in sorted(set(cand) | set(parent_files)):
        if cand.get(path) == parent_files.get(path):
            continue
        if not any(fnmatch(path, glob) for glob in editable):
            what = "adds" if path not in parent_files else "deletes" if path not in cand else "edits"
            out.append(
                Finding(
                    severity="reject",
                    kind="outside-editable",
                    file=path,
                    message=f"{what} a frozen file (editable: {', '.join(editable)})",
                )
            )
    # compared as parsed manifests: a rewritten harness.toml spells out defaults the parent left out
    if candidate.manifest.runtime != parent.manifest.runtime:
        out.append(
            Finding(
                severity="reject",
                kind="runtime-change",
                file="harness.toml",
                message="changes [runtime] (entrypoint or limits), which the search keeps frozen",
            )
        )
    return out


def _parse(data: bytes) -> ast.AST | None:
    try:
        return ast.parse(data.decode("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _has_tools(files: dict[str, bytes]) -> bool:
    try:
        return bool(json.loads(files.get("tools.json", b"[]") or b"[]"))
    except ValueError:
        return True  # unreadable: assume tools, so a dropped call site is still reported


def _instrumentation_findings(cand: dict[str, bytes], parent: dict[str, bytes]) -> list[Finding]:
    """Logging or model/tool calls the parent made and the candidate has none of (tool call sites
    only where the candidate has tools to call: init's loop has one even for a suite without tools)."""

    def count(files: dict[str, bytes]) -> dict[str, int]:
        total: dict[str, int] = {}
        for path, data in files.items():
            tree = _parse(data) if path.endswith(".py") else None
            if tree is not None:
                for method, n in codecheck.ctx_calls(tree).items():
                    total[method] = total.get(method, 0) + n
        return total

    before, after = count(parent), count(cand)
    out: list[Finding] = []
    for method, kind, why in (
        ("log", "removed-logging", "the trace loses the notes a reviewer and the proposer rely on"),
        ("llm", "removed-llm", "answers no longer come from the model: where do they come from?"),
        ("call_tool", "removed-tools", "tool calls are what the trace shows of the agent's actions"),
    ):
        b, a = before.get(method, 0), after.get(method, 0)
        if method == "call_tool" and not _has_tools(cand):
            continue
        if a == 0 < b:  # fewer sites is a refactor; none at all is a different kind of agent
            severity: Severity = "flag" if method in ("log", "llm") else "note"
            out.append(
                Finding(
                    severity=severity,
                    kind=kind,
                    file="",
                    message=f"ctx.{method} call sites {b} -> {a}: {why}",
                )
            )
    return out


_WHY_NOT_PUBLIC = {
    "sealed-input": "no train input or answer (label) has these words in a row, and neither the parent "
    "nor the user's seed version contains them",
    "sealed-paraphrase": "no train text shares most of these words, and neither the parent nor the "
    "user's seed version contains them",
    "sealed-answer": "train never uses this answer, and neither the parent nor the user's seed version "
    "contains it",
    "sealed-task-id": "the id of a sealed task",
    "train-task-id": "a train task id (public, but a harness has no use for task ids)",
}


def _prior_versions(candidate: HarnessVersion, parent: HarnessVersion) -> list[HarnessVersion]:
    """The parent, plus every ancestor a person wrote (the seed): their text is not the candidate's."""
    prior = {parent.hash: parent}
    try:
        chain = lineage(parent)
    except UserError:  # a broken ancestry only loses the seed's exemption, never the scan
        chain = []
    for version in chain:
        if version.manifest.harness.proposer in USER_PROPOSERS:
            prior.setdefault(version.hash, version)
    return list(prior.values())


_PRIOR_CACHE: dict[tuple[str, int], set[tuple[str, str]]] = {}


def _prior_tasks(version: HarnessVersion, index: SealedIndex) -> set[tuple[str, str]]:
    """(kind group, task id) of every sealed hit a prior version already contains (cached per hash)."""
    key = (version.hash, id(index))
    if key not in _PRIOR_CACHE:
        found: set[tuple[str, str]] = set()
        for path, data in version.files().items():
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            found.update((_GROUP[h.kind], h.task_id) for h in find_literals(text, index, path))
        _PRIOR_CACHE[key] = found
    return _PRIOR_CACHE[key]


_GROUP = {
    "sealed-input": "input",
    "sealed-paraphrase": "input",
    "sealed-answer": "answer",
    "sealed-task-id": "id",
    "train-task-id": "id",
}


def _literal_findings(
    path: str,
    text: str,
    index: SealedIndex,
    prior: set[tuple[str, str]],
    hits: list[LiteralHit] | None = None,
) -> list[Finding]:
    out = []
    for hit in find_literals(text, index, path) if hits is None else hits:
        if (_GROUP[hit.kind], hit.task_id) in prior:
            continue  # the parent or the user's seed already had it: not introduced by this candidate
        why = _WHY_NOT_PUBLIC[hit.kind]
        out.append(
            Finding(
                severity=_LITERAL_SEVERITY[hit.kind],
                kind=hit.kind,
                file=path,
                line=hit.line,
                message=f"{hit.split} task {hit.task_id}: {hit.snippet!r} ({hit.how}); not public: {why}",
            )
        )
    return out


def _param_findings(candidate: HarnessVersion, parent: HarnessVersion) -> list[Finding]:
    """[model] params the candidate adds or changes that the broker's allowlist refuses.

    harness.toml with such a parameter does not load, so this is the second line: a version built
    some other way (or a manifest edited after loading) still cannot reach the evaluator with one."""
    before = parent.manifest.model.params
    out = []
    for key, value in sorted(candidate.manifest.model.params.items()):
        if before.get(key, _MISSING) == value:
            continue  # the parent's (ultimately the user's) setting, not this candidate's
        check = ALLOWED.get(key)
        try:
            if check is None:
                raise ParamError(key, "is not an allowed model parameter")
            check(key, value)
        except ParamError as exc:
            out.append(
                Finding(
                    severity="reject",
                    kind="model-param",
                    file="harness.toml",
                    message=f"[model] params: {exc} (keys, endpoints and provider settings never come "
                    "from a harness; see harness_opt/llm/params.py)",
                )
            )
    return out


_MISSING = object()


def scan_candidate(
    candidate: HarnessVersion,
    parent: HarnessVersion,
    suite: Suite,
    *,
    editable: tuple[str, ...],
) -> ScanReport:
    """Scan `candidate` (a child of `parent`) against `suite`'s sealed data; never raises for content.

    Literal findings count only for what the candidate introduces: a sealed text already in the
    parent, or in a version a person wrote (the seed), is not this candidate's doing."""
    cand, par = candidate.files(), parent.files()
    findings = _edit_findings(candidate, parent, editable)
    findings += _param_findings(candidate, parent)
    index = sealed_index(suite)
    prior: set[tuple[str, str]] = set()
    for version in _prior_versions(candidate, parent):
        prior |= _prior_tasks(version, index)
    prints = encoded.fingerprints(suite)
    for path, data in sorted(cand.items()):
        if par.get(path) != data:  # sealed text shipped base64, compressed, reversed, squashed, hashed
            findings += _literal_findings(path, "", index, prior, encoded.encoded_hits(data, index, prints))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            findings.append(
                Finding(
                    severity="note",
                    kind="binary",
                    file=path,
                    message="not UTF-8 text: its content was not scanned for literals",
                )
            )
            continue
        if par.get(path) != data:  # an unchanged file introduces nothing
            findings += _literal_findings(path, text, index, prior)
        tree = _parse(data) if path.endswith(".py") else None
        if tree is None:
            continue
        for code_hit in codecheck.check_code(tree):
            findings.append(
                Finding(
                    severity=_CODE_SEVERITY[code_hit.kind],
                    kind=code_hit.kind,
                    file=path,
                    line=code_hit.line,
                    message=code_hit.detail,
                )
            )
        line = codecheck.prints_score(tree)
        if line is not None:
            findings.append(
                Finding(
                    severity="note",
                    kind="prints-score",
                    file=path,
                    line=line,
                    message="prints a score/PASS text; scores come only from the scorer",
                )
            )
    findings += _instrumentation_findings(cand, par)
    findings.sort(key=lambda f: (-SEVERITY_ORDER[f.severity], f.file, f.line or 0))
    worst = findings[0].severity if findings else None
    return ScanReport(version_hash=candidate.hash, findings=findings, max_severity=worst)


def scan_and_record(
    candidate: HarnessVersion,
    parent: HarnessVersion,
    suite: Suite,
    *,
    editable: tuple[str, ...],
    ledger: Ledger,
    run_id: str | None = None,
) -> ScanReport:
    """`scan_candidate`, then one row in the ledger's `scans` table (what `diff` shows)."""
    report = scan_candidate(candidate, parent, suite, editable=editable)
    ledger.add_scan(
        run_id, candidate.hash, [f.model_dump(mode="json") for f in report.findings], report.max_severity
    )
    return report
