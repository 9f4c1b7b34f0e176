"""Fitting the meta-model: its context window, the prompt budget inside it, and what its calls cost.

A prompt must fit the model it is sent to: many models users serve locally have 8k-32k tokens, and
the embedded `local/smollm2` has 8,192. The window comes from `--meta-context`, else the local
model's context (`HARNESS_OPT_LOCAL_CTX`, default 8,192), else litellm's model info, else 32,000.
Prompts are planned at 3 characters per token (code and JSON tokenize denser than prose, and a small
model's tokenizer is not the one litellm counts with), a reply keeps a quarter of the window, and a
call the model still refuses as too long is retried with half the evidence.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from harness_opt.propose.base import MetaSpend

DEFAULT_CONTEXT_TOKENS = 32_000
"""A model litellm knows nothing about: a common size for served open models."""
MAX_PLANNED_PROMPT_TOKENS = 60_000
"""Cap on a prompt planned from a model's own (large) window; `--meta-context` lifts it."""
PLAN_CHARS_PER_TOKEN = 3.0
LOCAL_CTX_ENV = "HARNESS_OPT_LOCAL_CTX"
LOCAL_DEFAULT_CTX = 8192
SAFETY_TOKENS = 256


def context_window(model: str, override: int | None = None) -> tuple[int, str]:
    """(tokens, where the figure came from) for `model`."""
    if override:
        return override, "--meta-context"
    if model.startswith("local/"):
        raw = os.environ.get(LOCAL_CTX_ENV, "")
        if raw.isdigit():
            return int(raw), LOCAL_CTX_ENV
        return LOCAL_DEFAULT_CTX, "the local model's context"
    from harness_opt.llm.litellm_setup import import_litellm

    try:
        info = import_litellm().get_model_info(model)
    except Exception:  # unknown to litellm's table
        info = {}
    for key in ("max_input_tokens", "max_tokens"):
        value = info.get(key)
        if isinstance(value, int) and value > 0:
            return value, f"litellm's model info ({key})"
    return DEFAULT_CONTEXT_TOKENS, "default (unknown to litellm; set --meta-context)"


@dataclass(frozen=True)
class ContextBudget:
    """How one meta-call is planned inside a context window."""

    window: int
    output_tokens: int
    prompt_tokens: int
    source: str = ""

    @classmethod
    def plan(cls, model: str, override: int | None = None) -> ContextBudget:
        window, source = context_window(model, override)
        output = min(8192, max(512, window // 4))
        prompt = window - output - SAFETY_TOKENS
        if override is None:
            prompt = min(prompt, MAX_PLANNED_PROMPT_TOKENS)
        return cls(window=window, output_tokens=output, prompt_tokens=max(prompt, 256), source=source)

    @property
    def prompt_chars(self) -> int:
        return int(self.prompt_tokens * PLAN_CHARS_PER_TOKEN)


def planned_tokens(text: str) -> int:
    """Tokens a text is planned to take (conservative: see PLAN_CHARS_PER_TOKEN)."""
    return int(len(text) / PLAN_CHARS_PER_TOKEN) + 1


_CONTEXT_MARKERS = (
    "context window",
    "context length",
    "maximum context",
    "context_length_exceeded",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)


def is_context_error(exc: BaseException) -> bool:
    """A call refused because the prompt is longer than the model's context (any provider's words)."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        text = str(seen).lower()
        if "ContextWindowExceeded" in name or any(m in text for m in _CONTEXT_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_CONFIG_ERRORS = frozenset({"AuthenticationError", "PermissionDeniedError"})


def is_config_error(exc: BaseException) -> bool:
    """Errors no retry or other candidate can fix: a bad key or a model litellm cannot route."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in _CONFIG_ERRORS or "LLM Provider NOT provided" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class SpendMeter:
    """Adds up one proposal's meta-calls from a dspy LM's history (usage and cost per entry)."""

    model: str
    context_tokens: int
    started: float = field(default_factory=time.monotonic)
    calls: list[dict[str, Any]] = field(default_factory=list)
    overflows: int = 0

    def take(self, history: list[dict[str, Any]], before: set[Any]) -> list[dict[str, Any]]:
        """The entries added to `history` since `before` (their uuids), counted."""
        new = [e for e in history if e.get("uuid") not in before]
        self.calls.extend(new)
        return new

    def spend(self) -> MetaSpend:
        tokens_in = tokens_out = largest = 0
        cost = 0.0
        for e in self.calls:
            usage = e.get("usage") or {}
            tin = int(usage.get("prompt_tokens") or 0)
            tout = int(usage.get("completion_tokens") or 0)
            tokens_in, tokens_out, largest = tokens_in + tin, tokens_out + tout, max(largest, tin + tout)
            cost += float(e.get("cost") or 0.0)
        return MetaSpend(
            model=self.model,
            calls=len(self.calls),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            seconds=round(time.monotonic() - self.started, 3),
            context_tokens=self.context_tokens,
            largest_call_tokens=largest,
            overflows=self.overflows,
        )
