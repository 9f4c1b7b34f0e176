"""litellm's environment, set in this one place, and litellm imported once with our providers.

Why a function and not a top-level import: litellm takes seconds to import and, unless told
otherwise, fetches its price table from the network; commands that never call a model should not
pay for either. Every module here gets litellm through `import_litellm()`. The environment is set
when this module is imported, which `import harness_opt` does first, so litellm imported by anyone
else (dspy) sees it too.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

LITELLM_ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled price table: importing litellm stays offline
}
"""Variables litellm reads when it is imported; a value the user set is kept."""


def configure_environment() -> None:
    for name, value in LITELLM_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


configure_environment()

_LOCK = threading.RLock()  # re-entered: import_litellm registers providers
_LITELLM: ModuleType | None = None


def import_litellm() -> ModuleType:
    """litellm, with the bundled price table, quiet error banners, and `local/` routable."""
    global _LITELLM
    if _LITELLM is not None:
        return _LITELLM
    with _LOCK:
        if _LITELLM is None:
            configure_environment()
            import litellm

            litellm.suppress_debug_info = True
            _LITELLM = litellm
            from harness_opt.llm.local import LocalProvider, local_model_table

            register_provider("local", LocalProvider())
            for model, info in local_model_table().items():
                register_model_info(model, info)
    return _LITELLM


def register_provider(name: str, handler: Any) -> None:
    """Route `<name>/<model>` to `handler` (a litellm `CustomLLM`), replacing an earlier handler."""
    litellm = import_litellm()
    with _LOCK:
        current: list[dict[str, Any]] = getattr(litellm, "custom_provider_map", [])
        entries = [e for e in current if e.get("provider") != name]
        entries.append({"provider": name, "custom_handler": handler})
        litellm.custom_provider_map = entries  # type: ignore[attr-defined]
        # litellm only reads the map inside completion(); get_llm_provider needs the lists now.
        from litellm.utils import custom_llm_setup

        custom_llm_setup()


def register_model_info(model: str, info: dict[str, Any]) -> None:
    """Add `model` to litellm's model table (prices, context, capabilities such as response schema)."""
    litellm = import_litellm()
    litellm.register_model({model: info})
