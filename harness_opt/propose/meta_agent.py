"""The `llm` proposer's tools mode: a ReAct-style agent that explores the history and writes a candidate.

Each step is one dspy call (thought, tool name, tool arguments, as `dspy.ReAct` does it); the tool runs
on the work dir (`meta_tools.py`) and its answer joins the trajectory. Unlike `dspy.ReAct`, which
shortens the trajectory only after the model refuses it, every step is planned to fit the context
before it is sent: observations are paged and cut, and the oldest ones are elided first (the model
is told, and can call the tool again). A step the model still refuses as too long is retried with
half the trajectory room (down to a sixteenth); a step whose reply cannot be parsed is retried, and
three of those in a row end the episode. The episode ends at `finish`, or at the step limit;
whatever it wrote under `harness/` is the candidate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy

from harness_opt.errors import ModelError
from harness_opt.propose.base import ProposalInput
from harness_opt.propose.meta_context import (
    PLAN_CHARS_PER_TOKEN,
    ContextBudget,
    SpendMeter,
    is_config_error,
    is_context_error,
    planned_tokens,
)
from harness_opt.propose.meta_tools import Workbench

log = logging.getLogger(__name__)

INSTRUCTIONS = """You improve an AI agent's harness: its prompts (jinja2 templates under harness/prompts),
its tool schemas (harness/tools.json, OpenAI function-calling format) and its orchestration code
(harness/agent.py, `run(task, ctx)` written against AgentContext: ctx.llm, ctx.call_tool, ctx.render,
ctx.log, ctx.tools). The work dir holds the current version (harness/), the history of every candidate
tried so far (history/INDEX.md, then history/candidates/<vNNNN>/ with its files, diff.patch, SUMMARY.md,
train/scores.tsv and raw train traces in train/traces/), and this iteration's train traces
(traces/failing.md, traces/passing.md).

Work like this: read the history (list_candidates), grep and read the raw traces of earlier candidates
to find why tasks fail and what changed when a candidate won or lost, then change ONE mechanism:
write_file each changed file in full (only the editable files), check it (when the check tool is
listed), then finish with the mechanism's name and your hypothesis. Do not repeat a rejected idea.
Fix the general cause; never hard-code answers. Each step: reason briefly in next_thought, then pick
next_tool_name and write next_tool_args as a JSON object.

Tools:
"""

_TRAJECTORY = dspy.InputField(desc="Your steps so far and what each tool returned")
# Text, not a dict: a schema of plain fields lets a JSON adapter constrain the whole reply (the embedded
# models decode by grammar), where an open-ended mapping would fall back to any JSON at all.
_ARGS = dspy.OutputField(desc='The tool\'s arguments as a JSON object, e.g. {"path": "history/INDEX.md"}')
ELIDED = "(observation elided to fit the context; call the tool again if you need it)"
MAX_STEP_FAILURES = 3
"""Unparseable replies in a row that end an episode."""
MIN_SHARE = 1 / 16
"""A step refused as too long is sent with half the trajectory room, down to this share of it."""


@dataclass
class Step:
    thought: str
    tool: str
    args: dict[str, Any]
    observation: str
    elided: bool = False
    cut: int | None = None
    """Show only this many characters of the observation (None: all of it)."""

    def text(self, index: int) -> str:
        args = json.dumps(self.args, ensure_ascii=False)
        if len(args) > 600:  # a written file is in the work dir; the trajectory needs only its gist
            args = args[:600] + f"... ({len(args)} characters)"
        obs = ELIDED if self.elided else self.observation
        if not self.elided and self.cut is not None:
            obs = obs[: self.cut] + f"\n[... {len(obs) - self.cut} characters cut to fit the context]"
        return f"[step {index}] thought: {self.thought}\ntool: {self.tool}({args})\nobservation:\n{obs}"


@dataclass
class Episode:
    """One proposal's run of the agent: its steps, why it ended, and its calls."""

    steps: list[Step] = field(default_factory=list)
    ended: str = ""
    dropped_steps: int = 0


def _signature(bench: Workbench, brief_desc: str) -> type[dspy.Signature]:
    names = tuple(t.name for t in bench.specs())
    instructions = INSTRUCTIONS + "\n".join(t.describe() for t in bench.specs())
    return (
        dspy.Signature({}, instructions)
        .append("brief", dspy.InputField(desc=brief_desc), type_=str)
        .append("trajectory", _TRAJECTORY, type_=str)
        .append("next_thought", dspy.OutputField(), type_=str)
        .append("next_tool_name", dspy.OutputField(), type_=Literal[names])
        .append("next_tool_args", _ARGS, type_=str)
    )


def parse_args(raw: Any, bench: Workbench, tool: str) -> dict[str, Any]:
    """The arguments the model wrote: a JSON object; else, for a tool with one argument, the text."""
    if isinstance(raw, dict):
        return raw
    text = str(raw or "").strip()
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    spec = next((t for t in bench.specs() if t.name == tool), None)
    if spec is not None and len(spec.args) >= 1 and text:
        return {next(iter(spec.args)): text if value is None else value}
    return {}


def brief(inp: ProposalInput, avoid: list[str]) -> str:
    """The task in a few lines: what to improve, the score to beat, what may change."""
    val = f"{inp.val_score:.4f}" if inp.val_score is not None else "not yet measured"
    lines = [
        f"Agent {inp.agent}, current version {inp.version_label}, suite {inp.suite}; incumbent val "
        f"score {val} (val tasks are never shown).",
        inp.suite_description.strip(),
        f"Editable files (everything else is frozen): {', '.join(inp.editable)}.",
        f"Current files: {', '.join('harness/' + p for p in sorted(inp.files))}.",
        f"This iteration: {len(inp.failing_traces)} failing and {len(inp.passing_traces)} passing "
        "train traces in traces/; history in history/.",
    ]
    imported = sum(1 for t in inp.imported_traces if not t.passed)
    if imported:
        lines.append(
            f"traces/imported.md: {imported} failed production traces imported from real logs; fix "
            "their general cause too (the suite still decides acceptance)."
        )
    if avoid:
        lines.append(f"Already proposed this round (pick a different mechanism): {'; '.join(avoid)}.")
    return "\n".join(ln for ln in lines if ln)


class ToolAgent:
    """Runs episodes with one dspy LM inside one context budget."""

    def __init__(self, lm: dspy.LM, budget: ContextBudget, *, max_steps: int, adapter: Any) -> None:
        self.lm = lm
        self.budget = budget
        self.max_steps = max_steps
        self.adapter = adapter
        self.prompts: list[list[dict[str, Any]]] = []

    def run(self, bench: Workbench, brief_text: str, meter: SpendMeter) -> Episode:
        episode = Episode()
        sig = _signature(bench, "The task: the agent, its score, what may change, where things are")
        fixed = planned_tokens(sig.instructions + brief_text) + 300  # field markers and headers
        failures = 0
        share = 1.0
        while len(episode.steps) < self.max_steps and bench.finished is None:
            room = int((self.budget.prompt_tokens - fixed) * share)
            trajectory = self._fit(episode, room)
            try:
                pred = self._call(sig, brief_text, trajectory, meter)
            except Exception as exc:
                if is_config_error(exc):
                    raise ModelError(
                        f"the meta-model call failed: {exc}",
                        where=f"--meta-model {self.lm.model}",
                        fix="check the model string and its API key environment variable",
                    ) from exc
                if is_context_error(exc):  # shorter until it fits, down to a sixteenth of the plan
                    meter.overflows += 1
                    share /= 2
                    failures += int(share < MIN_SHARE)
                else:
                    failures += 1
                log.info("meta-agent step failed (%d in a row): %s", failures, str(exc)[:300])
                if failures >= MAX_STEP_FAILURES or share < MIN_SHARE:
                    why = f"{type(exc).__name__}: {str(exc)[:300]}"
                    episode.ended = f"{failures} steps in a row failed: {why}"
                    return episode
                continue
            failures, share = 0, 1.0
            tool = str(pred.next_tool_name)
            args = parse_args(pred.next_tool_args, bench, tool)
            observation = bench.call(tool, args)
            episode.steps.append(Step(str(pred.next_thought), tool, args, observation))
        episode.ended = "finished" if bench.finished is not None else f"step limit ({self.max_steps})"
        return episode

    def _call(self, sig: type[dspy.Signature], brief_text: str, trajectory: str, meter: SpendMeter) -> Any:
        before = {e.get("uuid") for e in self.lm.history}
        try:
            with dspy.context(lm=self.lm, adapter=self.adapter):
                return dspy.Predict(sig)(brief=brief_text, trajectory=trajectory)
        finally:
            for entry in meter.take(self.lm.history, before):
                self.prompts.append(entry.get("messages") or [])

    def _fit(self, episode: Episode, room_tokens: int) -> str:
        """The trajectory as text within `room_tokens`: the oldest observations elided first, then the
        newest one cut to what fits (the model can read on with an offset), then the oldest steps
        dropped; the model is told each time."""
        steps = episode.steps
        for s in steps:
            s.elided, s.cut = False, None
        text = self._render(episode)
        for s in steps[:-1]:
            if planned_tokens(text) <= room_tokens:
                return text
            s.elided = True
            text = self._render(episode)
        if steps and planned_tokens(text) > room_tokens:
            over = int((planned_tokens(text) - room_tokens) * PLAN_CHARS_PER_TOKEN) + 200
            steps[-1].cut = max(0, len(steps[-1].observation) - over)
            text = self._render(episode)
        while planned_tokens(text) > room_tokens and len(steps) > 1:
            steps.pop(0)
            episode.dropped_steps += 1
            text = self._render(episode)
        if planned_tokens(text) > room_tokens:
            keep = max(0, int(room_tokens * PLAN_CHARS_PER_TOKEN) - 200)
            text = text[:keep] + "\n[... cut to fit the context]"
        return text

    @staticmethod
    def _render(episode: Episode) -> str:
        if not episode.steps and not episode.dropped_steps:
            return "(no steps yet: start with list_candidates)"
        dropped = episode.dropped_steps
        head = [f"({dropped} earlier steps dropped to fit the context)"] if dropped else []
        first = episode.dropped_steps + 1
        return "\n\n".join([*head, *(s.text(first + i) for i, s in enumerate(episode.steps))])
