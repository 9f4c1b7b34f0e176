"""Request and result records of one model call, shared by the client, the cache and the broker."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from harness_opt.records import CallCounts


class LLMRequest(BaseModel):
    model: str = Field(description="A litellm model string: 'openai/gpt-4o-mini', 'local/smollm2', ...")
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, seed, ...")

    def cache_key(self) -> str:
        """Hash of the full request: any change to messages, tools, model or params is a new key."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def is_deterministic(self) -> bool:
        """Only deterministic calls may be served from the cache (temperature 0, or a fixed seed)."""
        temperature = self.params.get("temperature")
        return temperature == 0 or self.params.get("seed") is not None


class LLMResult(BaseModel):
    message: dict[str, Any] = Field(description="Assistant message: role, content, tool_calls.")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    model: str = ""


class CallAccount:
    """What one rollout's model calls cost in requests, counted as they happen (`CallCounts` at the end).

    The client adds to the account of the rollout it runs in (`client.call_account`), whichever
    client makes the call (the agent's, the simulated user's, a judge's in a helper thread): the
    figures are what a provider's own request log would show for the rollout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.calls_ok = 0
        self.cached = 0
        self.retries: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.last_failure: str | None = None
        self.last_failure_text = ""

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def answered(self) -> None:
        with self._lock:
            self.calls_ok += 1

    def hit(self) -> None:
        with self._lock:
            self.cached += 1

    def retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] += 1

    def fail(self, cause: str, text: str) -> None:
        with self._lock:
            self.failed[cause] += 1
            self.last_failure, self.last_failure_text = cause, text

    def counts(self) -> CallCounts:
        with self._lock:
            return CallCounts(
                attempts=self.attempts,
                calls_ok=self.calls_ok,
                cached=self.cached,
                retries=dict(self.retries),
                failed=dict(self.failed),
                last_failure=self.last_failure,
            )
