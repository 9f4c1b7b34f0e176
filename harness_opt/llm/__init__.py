"""The LLM layer: every model call goes through `LLMClient` (litellm + retries, cost, cache).

litellm itself is imported lazily (`litellm_setup.import_litellm`); this package only makes sure
that, whenever it is imported, it uses its bundled price table instead of fetching one.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from harness_opt.llm.cache import ResponseCache
from harness_opt.llm.catalog import ModelInfo, list_models, validate_model
from harness_opt.llm.client import ClientStats, LLMCallError, LLMClient, LLMConfig
from harness_opt.llm.local_models import DEFAULT_LOCAL_MODEL
from harness_opt.llm.types import LLMRequest, LLMResult

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
