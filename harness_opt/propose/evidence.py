"""What a proposer reads, as text: raw whole traces chosen to fit a context budget, files and history.

Raw traces are what make meta-agents work, so a trace is rendered whole (every message, tool call and
result, the output, the scorer's feedback) and the budget is met by choosing *which* traces to show,
never by summarizing one. The choice prefers diverse failures (different error kinds, expected answers
and feedback) so a handful of traces covers many failure modes, and it is deterministic given a seed.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness_opt.propose.base import HistoryEntry
from harness_opt.records import (
    ErrorEvent,
    LLMCallEvent,
    LogEvent,
    OutputEvent,
    Task,
    ToolCallEvent,
    Trace,
)

CHARS_PER_TOKEN = 4
"""Token estimate: chars/4 is model-independent, instant and close enough to plan a prompt with."""

PASSING_SHARE = 0.15
"""Part of the trace budget reserved for passing traces (contrast helps, failures matter more)."""


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _message_text(message: dict[str, Any]) -> str:
    role = message.get("role", "?")
    lines = [f"[{role}]"]
    content = message.get("content")
    if content not in (None, ""):
        lines.append(_dump(content))
    for call in message.get("tool_calls") or []:
        function = call.get("function", call)
        lines.append(f"<tool_call {function.get('name')}> {_dump(function.get('arguments'))}")
    if role == "tool" and message.get("tool_call_id"):
        lines[0] = f"[tool result for {message['tool_call_id']}]"
    return "\n".join(lines)


def _new_messages(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> int:
    """How many leading messages of `current` repeat `previous` (a conversation resent each call).

    Showing only the new tail of each call is lossless: the repeated prefix is printed just above.
    """
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        n += 1
    return n


def render_trace(trace: Trace, task: Task | None = None) -> str:
    """One trace as readable text, whole: task, every event, output, score and feedback."""
    key = trace.key
    lines = [f"### trace task={key.task_id} trial={key.trial} model={key.model}"]
    lines.append(f"task input: {_dump(trace.task_input)}")
    if task is not None and task.expected is not None:
        lines.append(f"expected (train gold): {_dump(task.expected)}")
    shown: list[dict[str, Any]] = []
    for i, event in enumerate(trace.events, 1):
        if isinstance(event, LLMCallEvent):
            same = _new_messages(shown, event.messages)
            head = f"-- step {i}: llm call ({event.model})"
            if event.tools:
                head += f" tools=[{', '.join(str(t.get('function', t).get('name')) for t in event.tools)}]"
            if event.params:
                head += f" params={_dump(event.params)}"
            lines.append(head)
            if same:
                lines.append(f"(the {same} messages above, then:)")
            lines.extend(_message_text(m) for m in event.messages[same:])
            if event.error:
                lines.append(f"LLM ERROR: {event.error}")
            if event.response is not None:
                lines.append("=> " + _message_text(event.response))
                shown = [*event.messages, event.response]
            else:
                shown = list(event.messages)
        elif isinstance(event, ToolCallEvent):
            lines.append(f"-- step {i}: tool {event.name}({_dump(event.args)})")
            lines.append(f"ERROR: {event.error}" if event.error else f"result: {_dump(event.result)}")
        elif isinstance(event, LogEvent):
            data = f" {_dump(event.data)}" if event.data else ""
            lines.append(f"-- step {i}: log: {event.message}{data}")
        elif isinstance(event, OutputEvent):
            lines.append(f"-- step {i}: output: {_dump(event.output)}")
        elif isinstance(event, ErrorEvent):
            lines.append(f"-- step {i}: ERROR {event.kind}: {event.reason}")
    lines.append(f"final output: {_dump(trace.output)}")
    if trace.error:
        detail = f" ({trace.error_detail})" if trace.error_detail else ""
        lines.append(f"run error: {trace.error}{detail}")
    lines.append(f"score: {trace.score:g} passed: {trace.passed}")
    lines.append(f"scorer feedback: {trace.feedback or '(none)'}")
    return "\n".join(lines)


def failure_signature(trace: Trace, task: Task | None) -> tuple[str, str, str]:
    """What makes two failures 'the same kind': error kind, expected answer, first feedback line."""
    expected = _dump(task.expected) if task is not None and task.expected is not None else ""
    feedback = (trace.feedback or "").strip().splitlines()
    return (trace.error or "", expected[:200], feedback[0][:200] if feedback else "")


@dataclass(eq=False)
class RenderedTrace:
    trace: Trace
    text: str
    tokens: int


@dataclass
class EvidenceSelection:
    """The traces chosen for one prompt, their text, and what was left out (the reader must know)."""

    failing: list[RenderedTrace] = field(default_factory=list)
    passing: list[RenderedTrace] = field(default_factory=list)
    failing_total: int = 0
    passing_total: int = 0
    failure_kinds_total: int = 0
    failure_kinds_shown: int = 0
    budget_tokens: int = 0
    truncated: bool = False

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in [*self.failing, *self.passing])

    @property
    def left_out_failing(self) -> int:
        return self.failing_total - len(self.failing)

    @property
    def left_out_passing(self) -> int:
        return self.passing_total - len(self.passing)

    def failing_text(self) -> str:
        head = (
            f"Showing {len(self.failing)} of {self.failing_total} failing train traces "
            f"({self.left_out_failing} left out for the context budget; "
            f"{self.failure_kinds_shown} of {self.failure_kinds_total} distinct failure kinds shown)."
        )
        if self.truncated:
            head += " No whole trace fitted the budget: the one below is cut in the middle."
        return "\n\n".join([head, *(r.text for r in self.failing)])

    def passing_text(self) -> str:
        head = f"Showing {len(self.passing)} of {self.passing_total} passing train traces."
        return "\n\n".join([head, *(r.text for r in self.passing)])

    def summary(self) -> dict[str, Any]:
        """Figures for Proposal.meta: what the proposer actually saw."""
        return {
            "failing_shown": len(self.failing),
            "failing_total": self.failing_total,
            "passing_shown": len(self.passing),
            "passing_total": self.passing_total,
            "failure_kinds_shown": self.failure_kinds_shown,
            "failure_kinds_total": self.failure_kinds_total,
            "trace_tokens": self.tokens,
            "trace_budget_tokens": self.budget_tokens,
            "truncated": self.truncated,
            "task_ids": [r.trace.key.task_id for r in self.failing],
        }


def _render_all(traces: Sequence[Trace], tasks: dict[str, Task]) -> list[RenderedTrace]:
    out = []
    for trace in traces:
        text = render_trace(trace, tasks.get(trace.key.task_id))
        out.append(RenderedTrace(trace=trace, text=text, tokens=estimate_tokens(text) + 1))
    return out


def _diverse_order(
    rendered: list[RenderedTrace], tasks: dict[str, Task], rng: random.Random
) -> tuple[list[RenderedTrace], dict[int, tuple[str, str, str]]]:
    """Round-robin over failure kinds (shuffled by the seed), distinct tasks first within a kind."""
    groups: dict[tuple[str, str, str], list[RenderedTrace]] = {}
    signature: dict[int, tuple[str, str, str]] = {}
    for r in rendered:
        sig = failure_signature(r.trace, tasks.get(r.trace.key.task_id))
        groups.setdefault(sig, []).append(r)
        signature[id(r)] = sig
    keys = sorted(groups)
    rng.shuffle(keys)
    queues = []
    for k in keys:
        members = list(groups[k])
        rng.shuffle(members)
        seen: set[str] = set()
        first: list[RenderedTrace] = []
        rest: list[RenderedTrace] = []
        for m in members:  # a second trial of the same task adds less than another task
            (rest if m.trace.key.task_id in seen else first).append(m)
            seen.add(m.trace.key.task_id)
        queues.append(first + rest)
    order: list[RenderedTrace] = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order, signature


def _take(order: list[RenderedTrace], budget: int) -> list[RenderedTrace]:
    """Greedy in preference order; a trace that does not fit is skipped, a smaller later one may fit."""
    chosen, used = [], 0
    for r in order:
        if used + r.tokens <= budget:
            chosen.append(r)
            used += r.tokens
    return chosen


def _cut_middle(r: RenderedTrace, budget: int) -> RenderedTrace:
    keep = max(budget * CHARS_PER_TOKEN - 200, 400)
    omitted = len(r.text) - keep
    marker = f"\n[... {omitted} characters of this trace omitted ...]\n"
    text = r.text[: keep // 2] + marker + r.text[-keep // 2 :]
    return RenderedTrace(trace=r.trace, text=text, tokens=estimate_tokens(text) + 1)


def select_traces(
    failing: Sequence[Trace],
    passing: Sequence[Trace],
    tasks: Sequence[Task],
    budget_tokens: int,
    *,
    seed: int = 0,
    max_passing: int = 3,
) -> EvidenceSelection:
    """Choose whole traces to fit `budget_tokens`: diverse failures first, then a few passing ones.

    Only when not a single failing trace fits is one cut (in the middle, marked), so the meta-agent is
    never left with no evidence at all; `truncated` then says so.
    """
    by_id = {t.id: t for t in tasks}
    rng = random.Random(seed)
    sel = EvidenceSelection(
        failing_total=len(failing), passing_total=len(passing), budget_tokens=max(budget_tokens, 0)
    )
    rendered_fail = _render_all(failing, by_id)
    order, signature = _diverse_order(rendered_fail, by_id, rng)
    sel.failure_kinds_total = len(set(signature.values()))
    fail_budget = sel.budget_tokens if not passing else int(sel.budget_tokens * (1 - PASSING_SHARE))
    sel.failing = _take(order, fail_budget)
    if not sel.failing and order:
        smallest = min(order, key=lambda r: r.tokens)
        sel.failing = [_cut_middle(smallest, fail_budget)]
        sel.truncated = True
    sel.failure_kinds_shown = len({signature.get(id(r), ("cut",)) for r in sel.failing})
    if sel.truncated:
        sel.failure_kinds_shown = 1
    rendered_pass = _render_all(passing, by_id)
    rng.shuffle(rendered_pass)
    sel.passing = _take(rendered_pass, max(sel.budget_tokens - sel.tokens, 0))[:max_passing]
    # What passing traces did not use goes back to failing ones.
    if sel.left_out_failing and not sel.truncated:
        chosen = {id(r) for r in sel.failing}
        rest = [r for r in order if id(r) not in chosen]
        sel.failing += _take(rest, max(sel.budget_tokens - sel.tokens, 0))
        sel.failure_kinds_shown = len({signature[id(r)] for r in sel.failing})
    return sel


def render_files(files: dict[str, str], editable: Sequence[str] = ()) -> str:
    """The version's files, each fenced by its path; editable ones marked so the model knows."""
    from fnmatch import fnmatch

    parts = []
    for path in sorted(files):
        mark = "editable" if any(fnmatch(path, g) for g in editable) else "frozen"
        parts.append(f"===== {path} ({mark}) =====\n{files[path]}\n===== end {path} =====")
    return "\n\n".join(parts)


def render_history(history: Sequence[HistoryEntry]) -> str:
    """What was tried before and what became of it, oldest first, one block per candidate."""
    if not history:
        return "(nothing tried yet: this is the first iteration)"
    blocks = []
    for h in history:
        figures = []
        if h.delta is not None:
            figures.append(f"val delta {h.delta:+.4f}")
        if h.p_value is not None:
            figures.append(f"p={h.p_value:.3g}")
        fig = f" ({', '.join(figures)})" if figures else ""
        block = (
            f"- iteration {h.iteration}: {h.candidate} by {h.proposer}: {h.outcome.upper()}{fig}\n"
            f"  mechanism: {h.mechanism}\n  hypothesis: {h.hypothesis}"
        )
        if h.reason:
            block += f"\n  reason: {h.reason}"
        blocks.append(block)
    return "\n".join(blocks)


IMPORTED_HEADING = "production traces (imported, labelled failed)"


def render_imported(traces: Sequence[Trace], budget_tokens: int) -> str:
    """The failed imported production traces that fit `budget_tokens`, under their own heading.

    They are real users' failures from outside the suite: the section says so, and says how many were
    left out, so the proposer weighs them as extra evidence next to the suite's own train traces.
    """
    failed = [t for t in traces if not t.passed]
    if not failed:
        return ""
    shown: list[str] = []
    used = 0
    for trace in failed:
        text = render_trace(trace)
        tokens = estimate_tokens(text)
        if used + tokens > budget_tokens and shown:
            continue
        shown.append(text)
        used += tokens
    head = (
        f"## {IMPORTED_HEADING}\nShowing {len(shown)} of {len(failed)} failed production traces "
        "(imported from logs, labelled failed by their owners; the suite still decides acceptance)."
    )
    return "\n\n".join([head, *shown])
