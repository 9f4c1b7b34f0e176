"""The LLM layer: every model call goes through `LLMClient` (litellm + retries, cost, cache).

litellm itself is imported lazily (`litellm_setup.import_litellm`, which also holds litellm's
environment), and so are this package's names: `import harness_opt.llm.litellm_setup`, which
`import harness_opt` does, must not pay for the client and the cache.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ResponseCache": "harness_opt.llm.cache",
    "ModelInfo": "harness_opt.llm.catalog",
    "list_models": "harness_opt.llm.catalog",
    "validate_model": "harness_opt.llm.catalog",
    "ClientStats": "harness_opt.llm.client",
    "LLMCallError": "harness_opt.llm.client",
    "LLMClient": "harness_opt.llm.client",
    "LLMConfig": "harness_opt.llm.client",
    "DEFAULT_LOCAL_MODEL": "harness_opt.llm.local_models",
    "LLMRequest": "harness_opt.llm.types",
    "LLMResult": "harness_opt.llm.types",
}

if TYPE_CHECKING:
    from harness_opt.llm.cache import ResponseCache
    from harness_opt.llm.catalog import ModelInfo, list_models, validate_model
    from harness_opt.llm.client import ClientStats, LLMCallError, LLMClient, LLMConfig
    from harness_opt.llm.local_models import DEFAULT_LOCAL_MODEL
    from harness_opt.llm.types import LLMRequest, LLMResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness_opt.llm' has no attribute {name!r}")


__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "ClientStats",
    "LLMCallError",
    "LLMClient",
    "LLMConfig",
    "LLMRequest",
    "LLMResult",
    "ModelInfo",
    "ResponseCache",
    "list_models",
    "validate_model",
]
