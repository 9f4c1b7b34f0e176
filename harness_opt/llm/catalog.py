"""Which models a user can call right now (`harness-opt models`) and early checks of model strings.

A typo in a model string should fail before an evaluation starts, as one line with the fix, not as
a litellm traceback in the middle of the first rollout.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pydantic import BaseModel, Field

from harness_opt.errors import ModelError
from harness_opt.llm.litellm_setup import import_litellm
from harness_opt.llm.local_models import (
    DEFAULT_LOCAL_MODEL,
    INSTALL_FIX,
    KNOWN_LOCAL_MODELS,
    resolve_local_model,
)

API_PROVIDERS: dict[str, tuple[str, list[str]]] = {
    # env var -> (provider, example model strings)
    "OPENAI_API_KEY": ("openai", ["openai/gpt-4o-mini", "openai/gpt-4.1-mini"]),
    "ANTHROPIC_API_KEY": (
        "anthropic",
        ["anthropic/claude-3-5-haiku-latest", "anthropic/claude-sonnet-4-20250514"],
    ),
    "GEMINI_API_KEY": ("gemini", ["gemini/gemini-2.0-flash", "gemini/gemini-2.5-flash"]),
    "GROQ_API_KEY": ("groq", ["groq/llama-3.1-8b-instant"]),
    "MISTRAL_API_KEY": ("mistral", ["mistral/mistral-small-latest"]),
    "DEEPSEEK_API_KEY": ("deepseek", ["deepseek/deepseek-chat"]),
    "OPENROUTER_API_KEY": ("openrouter", ["openrouter/openai/gpt-4o-mini"]),
    "TOGETHERAI_API_KEY": ("together_ai", ["together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"]),
}


class ModelInfo(BaseModel):
    """One row of `harness-opt models`."""

    model: str = Field(description="The string to pass as --model / [model] default.")
    kind: str = Field(description="'local' (embedded llama.cpp), 'api' (key-based provider) or 'ollama'.")
    available: bool = Field(
        description="Callable now: local file and llama-cpp-python installed, or key set."
    )
    detail: str = Field("", description="What it is, or what is missing.")
    path: str | None = Field(default=None, description="GGUF file for local models.")


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def validate_model(model: str, *, require_key: bool = False) -> None:
    """Raise `ModelError` (one line, with the fix) when `model` cannot be called.

    Checks routing (litellm.get_llm_provider), that `local/...` resolves to an installed GGUF and
    llama-cpp-python is present, and with `require_key` that the provider's key is set."""
    if not model or not model.strip():
        raise ModelError("the model string is empty", where="model", fix="pass e.g. --model local/default")
    if model.startswith("local/"):
        resolve_local_model(model)
        if not llama_cpp_installed():
            raise ModelError("llama-cpp-python is not installed", where=f"model {model}", fix=INSTALL_FIX)
        return
    if model.startswith("openai/") and model.removeprefix("openai/").strip() and not require_key:
        # litellm routes every openai/<name> (a local server's own names too): loading it (1-2 s)
        # to say so would delay the first rollout of the lean path, which never imports it
        return
    litellm = import_litellm()
    try:
        litellm.get_llm_provider(model)
    except Exception as error:
        raise ModelError(
            f"litellm cannot route model {model!r}",
            where=f"model {model}",
            fix="write provider/model, e.g. openai/gpt-4o-mini or local/default (see `harness-opt models`)",
        ) from error
    if require_key:
        try:
            missing = litellm.validate_environment(model=model).get("missing_keys") or []
        except Exception:
            missing = []
        if missing:
            names = ", ".join(missing)
            raise ModelError(
                f"{names} not set", where=f"model {model}", fix=f"export {missing[0]}=... or add it to .env"
            )


def _gguf_files() -> list[Path]:
    found: list[Path] = []
    for folder in (Path.cwd(), Path.cwd() / "models"):
        if folder.is_dir():
            found.extend(sorted(folder.glob("*.gguf")))
    return found


def list_models() -> list[ModelInfo]:
    """Embedded local models (installed or not), GGUF files nearby, API providers with their keys."""
    rows: list[ModelInfo] = []
    runtime = llama_cpp_installed()
    for name, spec in KNOWN_LOCAL_MODELS.items():
        installed = spec.installed()
        missing = [] if runtime else ["llama-cpp-python"]
        if not installed:
            missing.append(spec.package)
        detail = f"{spec.description}; licence {spec.licence}"
        if name == DEFAULT_LOCAL_MODEL:
            detail += "; = local/default"
        if missing:
            detail += f"; missing: {', '.join(missing)} ({INSTALL_FIX})"
        rows.append(
            ModelInfo(
                model=f"local/{name}",
                kind="local",
                available=not missing,
                detail=detail,
                path=spec.path_hint(),
            )
        )
    for path in _gguf_files():
        rows.append(
            ModelInfo(
                model=f"local/{path}",
                kind="local",
                available=runtime,
                detail="GGUF file found nearby",
                path=str(path),
            )
        )
    rows.append(
        ModelInfo(
            model="local/<path>.gguf",
            kind="local",
            available=runtime,
            detail="any GGUF file by path",
            path=None,
        )
    )
    for env_var, (provider, examples) in API_PROVIDERS.items():
        has_key = bool(os.environ.get(env_var))
        detail = f"{provider}: {env_var} {'set' if has_key else 'not set'}"
        rows.extend(ModelInfo(model=m, kind="api", available=has_key, detail=detail) for m in examples)
    ollama = os.environ.get("OLLAMA_API_BASE")
    if ollama:
        rows.append(
            ModelInfo(
                model="ollama_chat/<model>",
                kind="ollama",
                available=True,
                detail=f"ollama at {ollama} (e.g. ollama_chat/llama3.2)",
            )
        )
    return rows
