"""The `llm` proposer: a dspy meta-agent that reads raw failing train traces and rewrites harness files.

One dspy call produces one candidate (one mechanism, its hypothesis, full new file contents). For `n`
candidates it makes `n` calls, each told which mechanisms this round already proposed, because a bad
reply then costs one candidate instead of all of them, each reply stays small enough to carry whole
files, and the exclusion list keeps the candidates on different mechanisms (so a gain is attributable).
"""

from __future__ import annotations

import logging
from fnmatch import fnmatch
from pathlib import PurePosixPath
from typing import Any

import dspy
from pydantic import BaseModel, Field

from harness_opt.errors import ModelError
from harness_opt.propose.base import Proposal, ProposalInput
from harness_opt.propose.evidence import (
    estimate_tokens,
    render_files,
    render_history,
    render_imported,
    select_traces,
)

log = logging.getLogger(__name__)

PROMPT_OVERHEAD_TOKENS = 2_000
"""Instructions and field markers dspy adds around our inputs."""

MIN_TRACE_BUDGET_TOKENS = 2_000
"""Even when the files and history are large, leave at least this much for traces."""


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


def clean_path(path: str) -> str | None:
    """A safe relative POSIX path, or None for one that could escape the version directory."""
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    pure = PurePosixPath(p)
    if not p or pure.is_absolute() or ".." in pure.parts:
        return None
    return str(pure)


def restrict_edits(
    edits: dict[str, str | None], files: dict[str, str], editable: tuple[str, ...]
) -> tuple[dict[str, str | None], list[str]]:
    """Keep edits to editable paths that change something; return them and a note per dropped edit.

    The loop rejects non-editable edits too; dropping them here keeps a partly good candidate alive.
    """
    kept: dict[str, str | None] = {}
    notes: list[str] = []
    for raw, content in edits.items():
        path = clean_path(raw)
        if path is None:
            notes.append(f"dropped {raw!r}: not a relative path inside the version")
        elif not any(fnmatch(path, glob) for glob in editable):
            notes.append(f"dropped {path}: not editable (editable: {', '.join(editable)})")
        elif content == files.get(path) or (content is None and path not in files):
            notes.append(f"dropped {path}: no change")
        else:
            kept[path] = content
    return kept, notes


def _usage(entries: list[dict[str, Any]]) -> dict[str, Any]:
    tokens_in = tokens_out = 0
    cost = 0.0
    for e in entries:
        usage = e.get("usage") or {}
        tokens_in += int(usage.get("prompt_tokens") or 0)
        tokens_out += int(usage.get("completion_tokens") or 0)
        cost += float(e.get("cost") or 0.0)
    return {
        "meta_calls": len(entries),
        "meta_tokens_in": tokens_in,
        "meta_tokens_out": tokens_out,
        "meta_cost_usd": cost,
    }


_CONFIG_ERRORS = frozenset({"AuthenticationError", "PermissionDeniedError"})


def _is_config_error(exc: BaseException) -> bool:
    """Errors no retry or other candidate can fix: a bad key or a model litellm cannot route."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in _CONFIG_ERRORS or "LLM Provider NOT provided" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class LLMProposer:
    """A meta-agent through litellm, via dspy: one candidate per call, `n` calls per round."""

    name = "llm"

    def __init__(
        self,
        meta_model: str,
        *,
        context_budget_tokens: int = 60_000,
        temperature: float = 0.7,
        api_base: str | None = None,
        max_tokens: int | None = None,
        num_retries: int = 3,
    ) -> None:
        _check_model(meta_model)
        self.meta_model = meta_model
        self.context_budget_tokens = context_budget_tokens
        self.temperature = temperature
        kwargs: dict[str, Any] = {}
        if api_base:
            kwargs["api_base"] = api_base
        # cache=False: a meta-agent asked twice should think twice; dspy's disk cache would replay.
        self.lm = dspy.LM(
            meta_model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=False,
            num_retries=num_retries,
            engine="litellm",
            **kwargs,
        )
        self.notes: list[str] = []
        """Why the last `propose` returned fewer than `n` proposals (parse failures, dropped edits)."""
        self.last_prompts: list[list[dict[str, Any]]] = []
        """The messages sent in the last `propose`, for audit and tests."""

    def inputs(
        self, inp: ProposalInput, seed: int, avoid: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The signature's inputs for one call, and what the evidence selection showed (for meta)."""
        val = f"{inp.val_score:.4f}" if inp.val_score is not None else "not yet measured"
        context = (
            f"suite: {inp.suite}\n{inp.suite_description}\n\nagent: {inp.agent}, current version "
            f"{inp.version_label}; incumbent aggregate val score: {val}"
        )
        files = render_files(inp.files, inp.editable)
        history = render_history(inp.history)
        fixed = estimate_tokens(context + files + history) + PROMPT_OVERHEAD_TOKENS
        budget = max(self.context_budget_tokens - fixed, MIN_TRACE_BUDGET_TOKENS)
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

    def propose(self, inp: ProposalInput, n: int) -> list[Proposal]:
        self.notes = []
        self.last_prompts = []
        proposals: list[Proposal] = []
        for i in range(n):
            avoid = [p.mechanism for p in proposals]
            proposal = self._one(inp, seed=inp.seed * 1_000 + i, avoid=avoid, index=i)
            if proposal is None:
                continue
            if any(p.edits == proposal.edits for p in proposals):
                self._note(i, f"same edits as an earlier candidate ({proposal.mechanism}); dropped")
                continue
            proposals.append(proposal)
        return proposals

    def _one(self, inp: ProposalInput, *, seed: int, avoid: list[str], index: int) -> Proposal | None:
        values, evidence = self.inputs(inp, seed, avoid)
        before = {e.get("uuid") for e in self.lm.history}
        try:
            with dspy.context(lm=self.lm, adapter=dspy.ChatAdapter()):
                pred = dspy.Predict(ProposeHarnessChange)(**values)
        except Exception as exc:  # a bad reply is a lost candidate, never a stopped loop
            if _is_config_error(exc):
                raise ModelError(
                    f"the meta-model call failed: {exc}",
                    where=f"--meta-model {self.meta_model}",
                    fix="check the model string and its API key environment variable",
                ) from exc
            self._note(index, f"meta-model reply unusable: {type(exc).__name__}: {str(exc)[:500]}")
            return None
        finally:
            calls = [e for e in self.lm.history if e.get("uuid") not in before]
            self.last_prompts.extend(e.get("messages") or [] for e in calls)
        usage = _usage(calls)
        raw = {e.path: e.content for e in pred.edits or []}
        edits, dropped = restrict_edits(raw, inp.files, inp.editable)
        for note in dropped:
            self._note(index, note)
        if not edits:
            self._note(index, "no usable edit left; candidate dropped")
            return None
        mechanism = " ".join(str(pred.mechanism).split()) or "unnamed"
        return Proposal(
            proposer=self.name,
            mechanism=mechanism,
            hypothesis=str(pred.hypothesis).strip(),
            changes=[str(c) for c in pred.changes or []] or [f"edit {p}" for p in edits],
            edits=edits,
            meta={
                **usage,
                "meta_model": self.meta_model,
                "temperature": self.temperature,
                "seed": seed,
                "analysis": str(pred.analysis),
                "dropped_edits": dropped,
                "evidence": evidence,
            },
        )

    def _note(self, index: int, text: str) -> None:
        line = f"candidate {index + 1}: {text}"
        log.warning("llm proposer: %s", line)
        self.notes.append(line)


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
