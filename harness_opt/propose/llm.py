"""The `llm` proposer: a meta-model through dspy, as a tool-using agent or in one call.

Tools mode (the default) is Meta-Harness's proposer in small: an agent (`meta_agent.py`) that lists
the candidates tried so far, greps and reads their raw train traces and files in the history
filesystem, writes the files of a new candidate and checks it, step by step, each step planned to
fit the meta-model's context. Single mode is the cheaper option: one dspy call over a selection of
the current version's raw traces cut to the context budget, returning whole new file contents.

Both fit the model they are given (`meta_context.py`): the context window is read from the model (or
`--meta-context`), prompts are planned inside it, and a call that is refused or unusable is retried
with less evidence. For `n` candidates the proposer runs `n` episodes (or calls), each told which
mechanisms this round already proposed, so a bad reply costs one candidate and the candidates stay on
different mechanisms (a gain is attributable). Every proposal, made or failed, carries its spend.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import dspy
from pydantic import BaseModel, Field

from harness_opt.errors import ModelError
from harness_opt.propose.base import FailedProposal, Proposal, ProposalInput
from harness_opt.propose.evidence import (
    CHARS_PER_TOKEN,
    render_files,
    render_history,
    render_imported,
    select_traces,
)
from harness_opt.propose.meta_agent import ToolAgent, brief
from harness_opt.propose.meta_context import (
    ContextBudget,
    SpendMeter,
    is_config_error,
    is_context_error,
)
from harness_opt.propose.meta_tools import Workbench
from harness_opt.propose.workspace import clean_path, harness_edits, restrict_edits, write_workspace

__all__ = ["FileEdit", "LLMProposer", "ProposeHarnessChange", "clean_path", "restrict_edits"]

log = logging.getLogger(__name__)

PROMPT_OVERHEAD_CHARS = 4_000
"""Instructions and field markers dspy adds around our inputs (the signature's docstring and headers)."""
EVIDENCE_SHARES = (1.0, 0.5, 0.25, 0.0)
"""Single mode: the share of the trace budget each attempt uses; a refused or unusable reply is
retried with the next (0.0: files and history only)."""
MAX_UNUSABLE_REPLIES = 2
"""Single mode: replies that could not be parsed before the proposal is given up (a prompt refused as
too long is retried down the whole list instead: less evidence is the cure for that)."""


class FileEdit(BaseModel):
    """One file of the new version, written out whole (more robust than a diff a model must get exact)."""

    path: str = Field(description="Path relative to the harness directory, e.g. prompts/system.j2")
    content: str = Field(description="The complete new content of the file")


class ProposeHarnessChange(dspy.Signature):
    """You improve an AI agent's harness: its prompts (jinja2 templates), its tool schemas (tools.json,
    OpenAI function-calling format) and its orchestration code (agent.py, `run(task, ctx)` written
    against AgentContext: ctx.llm, ctx.call_tool, ctx.render, ctx.log, ctx.tools).

    Read the raw failing traces and the scorer feedback, find the most common or most fixable cause of
    failure, and propose exactly ONE mechanism that addresses it. Learn from the history: do not repeat
    a rejected or invalid idea, and build on accepted ones. Do not repeat a mechanism listed in
    `avoid_mechanisms`. Only edit files that match the editable globs, write each edited file out in
    full, and keep templates valid jinja2 and agent.py valid Python with the same `run` entrypoint.
    The agent is scored on held-out tasks like these: fix the general cause, do not hard-code answers.
    """

    context: str = dspy.InputField(desc="The suite, the agent, and the incumbent's aggregate val score")
    harness_files: str = dspy.InputField(desc="Every file of the current version, fenced by path")
    editable: list[str] = dspy.InputField(desc="Globs of the files you may change; all others are frozen")
    failing_traces: str = dspy.InputField(desc="Raw failing train traces, whole, with scorer feedback")
    passing_traces: str = dspy.InputField(desc="A few raw passing train traces, for contrast")
    history: str = dspy.InputField(desc="Candidates tried before, their mechanism, hypothesis and outcome")
    avoid_mechanisms: list[str] = dspy.InputField(desc="Mechanisms already proposed this round")

    analysis: str = dspy.OutputField(desc="What goes wrong in the failing traces, and why")
    mechanism: str = dspy.OutputField(desc="Short name of the one mechanism you change (a few words)")
    hypothesis: str = dspy.OutputField(desc="Why this change should raise the score, 1-2 sentences")
    changes: list[str] = dspy.OutputField(desc="One line per change made")
    edits: list[FileEdit] = dspy.OutputField(desc="The files you change, each with its full new content")


class LLMProposer:
    """A meta-agent through litellm, via dspy: one candidate per episode (or call), `n` per round."""

    name = "llm"
    reads_history = True
    exhaustible = False

    def __init__(
        self,
        meta_model: str,
        *,
        mode: Literal["tools", "single"] = "tools",
        context_tokens: int | None = None,
        max_steps: int = 16,
        max_checks: int = 5,
        temperature: float = 0.7,
        api_base: str | None = None,
        num_retries: int = 3,
    ) -> None:
        _check_model(meta_model)
        self.meta_model = meta_model
        self.mode = mode
        self.budget = ContextBudget.plan(meta_model, context_tokens)
        self.max_steps = max_steps
        self.max_checks = max_checks
        self.temperature = temperature
        kwargs: dict[str, Any] = {"api_base": api_base} if api_base else {}
        # cache=False: a meta-agent asked twice should think twice; dspy's disk cache would replay.
        self.lm = dspy.LM(
            meta_model,
            temperature=temperature,
            max_tokens=self.budget.output_tokens,
            cache=False,
            num_retries=num_retries,
            engine="litellm",
            **kwargs,
        )
        # The embedded models honour a JSON schema by grammar: JSON replies parse where free text may
        # not, and it saves the ChatAdapter -> JSONAdapter second call on every unparsed reply.
        self.adapter = dspy.JSONAdapter() if meta_model.startswith("local/") else dspy.ChatAdapter()
        self.failures: list[FailedProposal] = []
        """Why the last `propose` returned fewer than `n` proposals, with what each attempt cost."""
        self.last_prompts: list[list[dict[str, Any]]] = []
        """The messages sent in the last `propose`, for audit and tests."""

    @property
    def notes(self) -> list[str]:
        return [f.reason for f in self.failures]

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.failures = []
        self.last_prompts = []
        proposals: list[Proposal] = []
        for i in range(n):
            avoid = [p.mechanism for p in proposals]
            meter = SpendMeter(self.meta_model, self.budget.window)
            if self.mode == "tools":
                result = self._episode(inp, avoid, i, meter)
            else:
                result = self._single(inp, seed=inp.seed * 1_000 + i, avoid=avoid, meter=meter)
            spend = meter.spend()
            if isinstance(result, Proposal) and any(p.edits == result.edits for p in proposals):
                result = f"same edits as an earlier candidate ({result.mechanism}); dropped"
            if isinstance(result, Proposal):
                result.spend = spend
                result.meta.update(_spend_meta(spend.model_dump()))
                proposals.append(result)
            else:
                line = f"candidate {i + 1}: {result}"
                log.warning("llm proposer: %s", line)
                self.failures.append(FailedProposal(reason=line, spend=spend))
        return proposals

    # ----------------------------------------------------------------------------- tools mode

    def _episode(self, inp: ProposalInput, avoid: list[str], index: int, meter: SpendMeter) -> Proposal | str:
        workdir = Path(tempfile.mkdtemp(prefix="harness-opt-meta-"))
        try:
            write_workspace(inp, workdir)
            bench = Workbench(
                root=workdir,
                editable=inp.editable,
                max_chars=max(1_000, int(self.budget.prompt_chars / 4)),
                checker=inp.checker,
                max_checks=self.max_checks,
            )
            agent = ToolAgent(self.lm, self.budget, max_steps=self.max_steps, adapter=self.adapter)
            episode = agent.run(bench, brief(inp, avoid), meter)
            self.last_prompts.extend(agent.prompts)
            edits, dropped = harness_edits(inp, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if not edits:
            steps = ", ".join(f"{s.tool}({_short_args(s.args)})" for s in episode.steps)[:600]
            return f"the meta-agent wrote no usable edit ({episode.ended}; steps: {steps or 'none'})"
        said = bench.finished or {}
        mechanism = " ".join(said.get("mechanism", "").split()) or f"edits to {', '.join(sorted(edits))}"
        return Proposal(
            proposer=self.name,
            mechanism=mechanism,
            hypothesis=said.get("hypothesis", "").strip() or "(the meta-agent stopped before stating one)",
            changes=[f"{'delete' if c is None else 'edit'} {p}" for p, c in sorted(edits.items())],
            edits=edits,
            meta={
                "meta_model": self.meta_model,
                "mode": "tools",
                "steps": [f"{s.tool}({_short_args(s.args)})" for s in episode.steps],
                "ended": episode.ended,
                "checks": [c.ok for c in bench.checks],
                "dropped_edits": dropped,
                "context": self.budget.window,
            },
        )

    # ---------------------------------------------------------------------------- single mode

    def inputs(
        self, inp: ProposalInput, seed: int, avoid: list[str], share: float = 1.0
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The signature's inputs for one call within the context budget (traces get what the files,
        history and instructions leave, times `share`), and what the evidence selection showed."""
        val = f"{inp.val_score:.4f}" if inp.val_score is not None else "not yet measured"
        context = (
            f"suite: {inp.suite}\n{inp.suite_description}\n\nagent: {inp.agent}, current version "
            f"{inp.version_label}; incumbent aggregate val score: {val}"
        )
        files = render_files(inp.files, inp.editable)
        history = render_history(inp.history)
        fixed_chars = len(context) + len(files) + len(history) + PROMPT_OVERHEAD_CHARS
        room_chars = max(self.budget.prompt_chars - fixed_chars, 0) * share
        # evidence.py counts CHARS_PER_TOKEN characters per token: its budget is the room in characters.
        budget = int(room_chars / CHARS_PER_TOKEN)
        # Imported production failures get a quarter of the trace budget, in their own section.
        imported_budget = budget // 4 if any(not t.passed for t in inp.imported_traces) else 0
        sel = select_traces(
            inp.failing_traces, inp.passing_traces, inp.train_tasks, budget - imported_budget, seed=seed
        )
        imported = render_imported(inp.imported_traces, imported_budget)
        values = {
            "context": context,
            "harness_files": files,
            "editable": list(inp.editable),
            "failing_traces": sel.failing_text() + (f"\n\n{imported}" if imported else ""),
            "passing_traces": sel.passing_text(),
            "history": history,
            "avoid_mechanisms": avoid,
        }
        return values, sel.summary()

    def _single(
        self, inp: ProposalInput, *, seed: int, avoid: list[str], meter: SpendMeter
    ) -> Proposal | str:
        why = "no attempt made"
        unusable = 0
        for share in EVIDENCE_SHARES:
            if unusable >= MAX_UNUSABLE_REPLIES:
                break
            values, evidence = self.inputs(inp, seed, avoid, share)
            before = {e.get("uuid") for e in self.lm.history}
            try:
                with dspy.context(lm=self.lm, adapter=self.adapter):
                    pred = dspy.Predict(ProposeHarnessChange)(**values)
            except Exception as exc:  # a bad reply is a lost attempt, never a stopped loop
                if is_config_error(exc):
                    raise ModelError(
                        f"the meta-model call failed: {exc}",
                        where=f"--meta-model {self.meta_model}",
                        fix="check the model string and its API key environment variable",
                    ) from exc
                overflow = is_context_error(exc)
                meter.overflows += int(overflow)
                unusable += int(not overflow)
                why = f"meta-model reply unusable: {type(exc).__name__}: {str(exc)[:500]}"
                log.info("llm proposer: %s (evidence share %.2f); retrying with less", why, share)
                continue
            finally:
                taken = meter.take(self.lm.history, before)
                self.last_prompts.extend(e.get("messages") or [] for e in taken)
            return self._from_prediction(inp, pred, seed, evidence, share)
        return why

    def _from_prediction(
        self, inp: ProposalInput, pred: Any, seed: int, evidence: dict[str, Any], share: float
    ) -> Proposal | str:
        raw = {e.path: e.content for e in pred.edits or []}
        edits, dropped = restrict_edits(raw, inp.files, inp.editable)
        if not edits:
            return f"no usable edit left; candidate dropped ({'; '.join(dropped) or 'no edits'})"
        mechanism = " ".join(str(pred.mechanism).split()) or "unnamed"
        return Proposal(
            proposer=self.name,
            mechanism=mechanism,
            hypothesis=str(pred.hypothesis).strip(),
            changes=[str(c) for c in pred.changes or []] or [f"edit {p}" for p in edits],
            edits=edits,
            meta={
                "meta_model": self.meta_model,
                "mode": "single",
                "temperature": self.temperature,
                "seed": seed,
                "analysis": str(pred.analysis),
                "dropped_edits": dropped,
                "evidence": {**evidence, "share": share},
                "context": self.budget.window,
            },
        )


def _short_args(args: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={str(v)[:60]!r}" for k, v in args.items())
    return text[:200]


def _spend_meta(spend: dict[str, Any]) -> dict[str, Any]:
    """The spend under the names Proposal.meta used before `Proposal.spend` existed."""
    return {
        "meta_calls": spend["calls"],
        "meta_tokens_in": spend["tokens_in"],
        "meta_tokens_out": spend["tokens_out"],
        "meta_cost_usd": spend["cost_usd"],
    }


def _check_model(model: str) -> None:
    """Fail at construction, not mid-loop, on a model string litellm cannot route."""
    from harness_opt.llm.litellm_setup import import_litellm

    litellm = import_litellm()
    try:
        litellm.get_llm_provider(model)
    except Exception as exc:
        raise ModelError(
            f"litellm cannot route the meta-model {model!r}",
            where="--meta-model",
            fix="use '<provider>/<model>', e.g. openai/gpt-4o-mini or local/<name>",
        ) from exc
