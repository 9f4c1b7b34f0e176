"""`audit`: what a run's traces are missing before they are handed to a meta-agent.

A proposer reasons from traces; a trace without the model's token figures, a tool call without its
result, a rollout without a final answer or an error without its reason is evidence with holes, and
a proposer will fill them with guesses. This reads every trace of a run and counts each kind of hole,
with a few references (`harness-opt traces show RUN TASK`) to look at.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness_opt.errors import UserError
from harness_opt.evaluate.tracestore import read_trace
from harness_opt.ledger import Ledger
from harness_opt.records import ErrorEvent, LLMCallEvent, OutputEvent, ToolCallEvent, Trace

EXAMPLES = 3
_TRUNCATION_MARKERS = ("[... ", "more characters dropped]")

ISSUES: dict[str, str] = {
    "missing_trace": "rollouts whose trace file or line cannot be read",
    "llm_no_tokens": "LLM calls without token figures",
    "llm_no_cost": "LLM calls without a cost figure (fine for local models)",
    "llm_no_response": "LLM calls without a response and without an error",
    "tool_no_result": "tool calls without a result and without an error",
    "no_final_answer": "rollouts without a final answer and without an error",
    "truncated": "messages truncated (output cut at max_tokens or text dropped)",
    "error_no_reason": "errors without a reason",
}


class AuditIssue(BaseModel):
    kind: str
    description: str
    count: int = 0
    examples: list[str] = Field(default_factory=list, description="'RUN TASK#TRIAL' references.")


class AuditReport(BaseModel):
    run_id: str
    rollouts: int
    llm_calls: int = 0
    tool_calls: int = 0
    issues: list[AuditIssue]

    @property
    def clean(self) -> bool:
        return all(i.count == 0 for i in self.issues if i.kind != "llm_no_cost")

    def render(self) -> str:
        lines = [
            f"audit: run {self.run_id}: {self.rollouts} rollouts, {self.llm_calls} LLM calls, "
            f"{self.tool_calls} tool calls"
        ]
        for issue in self.issues:
            mark = "ok  " if issue.count == 0 else "MISS"
            lines.append(f"{mark}  {issue.count:5d}  {issue.description}")
            lines += [f"             e.g. harness-opt traces show {ex}" for ex in issue.examples]
        return "\n".join(lines)


def _truncated(event: LLMCallEvent) -> bool:
    response = event.response or {}
    if response.get("finish_reason") == "length":
        return True
    max_tokens = event.params.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0 and event.tokens_out >= max_tokens:
        return True
    texts = [str(m.get("content") or "") for m in event.messages] + [str(response.get("content") or "")]
    return any(marker in text for text in texts for marker in _TRUNCATION_MARKERS)


def audit_trace(trace: Trace) -> dict[str, int]:
    """Hole counts of one trace, by issue kind."""
    counts = dict.fromkeys(ISSUES, 0)
    for event in trace.events:
        if isinstance(event, LLMCallEvent):
            if event.error:
                continue
            if event.tokens_in == 0 and event.tokens_out == 0:
                counts["llm_no_tokens"] += 1
            if event.cost_usd == 0 and not event.cached:
                counts["llm_no_cost"] += 1
            if event.response is None:
                counts["llm_no_response"] += 1
            elif _truncated(event):
                counts["truncated"] += 1
        elif isinstance(event, ToolCallEvent):
            if event.result is None and not event.error:
                counts["tool_no_result"] += 1
        elif isinstance(event, ErrorEvent) and not event.reason.strip():
            counts["error_no_reason"] += 1
    has_output = any(isinstance(e, OutputEvent) and e.output not in (None, "") for e in trace.events)
    if trace.error is None and not has_output and trace.output in (None, ""):
        counts["no_final_answer"] += 1
    if trace.error is not None and not (trace.error_detail or "").strip():
        counts["error_no_reason"] += 1
    return counts


def audit(run_id: str, *, ledger: Ledger | None = None) -> AuditReport:
    """Audit every rollout of `run_id` (an eval or optimize run; a unique prefix is enough)."""
    ledger = ledger or Ledger()
    runs = [
        r["run_id"]
        for r in ledger.query(
            "SELECT DISTINCT run_id FROM rollouts WHERE starts_with(run_id, ?) ORDER BY run_id", [run_id]
        )
    ]
    if run_id in runs:
        runs = [run_id]
    if len(runs) != 1:
        raise UserError(
            f"run id {run_id!r} matches {len(runs)} runs with rollouts"
            + (f": {', '.join(runs[:5])}" if runs else ""),
            where=str(ledger.path),
            fix="see `harness-opt runs` and give a run id (or a longer prefix)",
        )
    rollouts = ledger.rollouts(run_id=runs[0])
    issues = {kind: AuditIssue(kind=kind, description=text) for kind, text in ISSUES.items()}
    report = AuditReport(run_id=runs[0], rollouts=len(rollouts), issues=list(issues.values()))
    for rollout in rollouts:
        ref = f"{rollout.run_id} {rollout.task_id} --trial {rollout.trial}"
        report.llm_calls += rollout.n_llm_calls
        report.tool_calls += rollout.n_tool_calls
        try:
            if rollout.trace_ref is None:
                raise UserError("no trace reference")
            counts = audit_trace(read_trace(rollout.trace_ref))
        except (UserError, ValueError, OSError):
            counts = dict.fromkeys(ISSUES, 0)
            counts["missing_trace"] = 1
        for kind, n in counts.items():
            if n:
                issues[kind].count += n
                if len(issues[kind].examples) < EXAMPLES:
                    issues[kind].examples.append(ref)
    return report
