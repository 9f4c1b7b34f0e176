"""Request and result records of one model call, shared by the client, the cache and the broker."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field


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
