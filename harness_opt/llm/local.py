"""The embedded local model: an in-process litellm provider `local` over llama.cpp (llama-cpp-python).

`local/<name>` then works in `litellm.completion` / `acompletion` (and dspy) like any model, with no
server and no key. Why in-process: a 135M model answers in well under a second on 2 cores, and a
server would add a process to manage for no gain.

Where the time goes on a small CPU is prompt processing, and a suite's calls share a long system
prompt; so each loaded model keeps a few *slots* (llama.cpp contexts over one mmapped weight file),
and a request goes to the free slot whose evaluated tokens share the longest prefix with its
prompt. llama.cpp then evaluates only the new suffix. We tokenize the prompt ourselves (BOS once, the
chat template's special tokens as tokens) so the same prefix always yields the same token ids.

Imports of llama_cpp stay inside functions: API-only users need not install it.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError

from harness_opt.errors import ModelError
from harness_opt.llm.local_models import INSTALL_FIX, KNOWN_LOCAL_MODELS, resolve_local_model
from harness_opt.llm.local_prompt import OutputShape, output_shape, parse_output, prepare_messages

DEFAULT_THREADS = 1  # measured: docs/local-model.md
DEFAULT_CTX = 8192  # SmolLM2's trained context; tau2-retail's policy + 16 tools need ~4.4k tokens
DEFAULT_SLOTS = 2
DEFAULT_MAX_TOKENS = 256
_FALLBACK_TEMPLATES = {
    # GGUFs without a chat template (Gemma 3 base): Gemma's turn format; others: ChatML.
    "gemma": "{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n"
    "{{ m.content }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n",
    "chatml": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n",
}


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelError(
            "the embedded local model needs llama-cpp-python, which is not installed",
            where="model local/...",
            fix=INSTALL_FIX,
        ) from error
    return llama_cpp


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return max(1, int(value))
    except ValueError as error:
        raise ModelError(
            f"{name}={value!r} is not an integer", where=name, fix=f"set {name} to e.g. {default}"
        ) from error


def _param(params: dict[str, Any], name: str, default: float) -> Any:
    value = params.get(name)
    return default if value is None else value


@dataclass
class _Slot:
    """One llama.cpp context. `llm._input_ids[:llm.n_tokens]` is what its KV cache holds."""

    llm: Any
    busy: bool = False

    def cached_prefix(self, tokens: list[int]) -> int:
        held = self.llm._input_ids[: self.llm.n_tokens]
        n = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n


@dataclass
class LocalEngine:
    """One GGUF model loaded once per process, served from `slots` contexts (thread-safe)."""

    path: str
    fold_system: bool
    n_ctx: int = DEFAULT_CTX
    n_threads: int = DEFAULT_THREADS
    n_slots: int = DEFAULT_SLOTS
    _slots: list[_Slot] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _template: str = ""
    _stop: list[str] = field(default_factory=list)
    _add_bos: bool = True

    def _new_llm(self) -> Any:
        llama_cpp = _import_llama()
        return llama_cpp.Llama(
            model_path=self.path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads,
            n_batch=512,
            verbose=False,
        )

    def _init_first(self) -> None:
        llm = self._new_llm()
        meta = llm.metadata
        template = meta.get("tokenizer.chat_template")
        arch = meta.get("general.architecture", "")
        if not template:
            template = _FALLBACK_TEMPLATES["gemma" if arch.startswith("gemma") else "chatml"]
            self.fold_system = True if arch.startswith("gemma") else self.fold_system
        self._template = template
        self._stop = [s for s in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>") if s in template]
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token", "true") != "false"
        self._slots.append(_Slot(llm))

    def _acquire(self, tokens: list[int]) -> tuple[_Slot, int]:
        """The free slot sharing the longest prefix with `tokens`; creates slots lazily up to n_slots."""
        with self._cond:
            if not self._slots:
                self._init_first()
            while True:
                free = [s for s in self._slots if not s.busy]
                best = max(free, key=lambda s: s.cached_prefix(tokens), default=None)
                reuse = best.cached_prefix(tokens) if best else 0
                if reuse == 0:
                    # Keep other slots' prefixes: use an empty slot, or open one, before evicting.
                    empty = next((s for s in free if s.llm.n_tokens == 0), None)
                    if empty is not None:
                        best = empty
                    elif len(self._slots) < self.n_slots:
                        best = _Slot(self._new_llm())
                        self._slots.append(best)
                if best is not None:
                    best.busy = True
                    return best, reuse
                self._cond.wait()

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            slot.busy = False
            self._cond.notify()

    def render(self, turns: list[dict[str, str]]) -> str:
        import jinja2.sandbox

        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self._template).render(
            messages=turns, add_generation_prompt=True, bos_token="", eos_token=""
        )

    def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """One chat completion: OpenAI messages and params in, message + usage + timings out."""
        with self._cond:
            if not self._slots:
                self._init_first()
        tools = params.get("tools")
        tool_choice = params.get("tool_choice")
        shape = output_shape(tools, tool_choice, params.get("response_format"))
        turns = prepare_messages(messages, tools, tool_choice, fold_system=self.fold_system)
        prompt = self.render(turns)
        tokenizer_llm = self._slots[0].llm
        tokens = tokenizer_llm.tokenize(prompt.encode(), add_bos=self._add_bos, special=True)
        grammar = self._grammar(shape)
        max_tokens = int(
            params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        )
        stop = params.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        slot, reuse = self._acquire(tokens)
        try:
            started = time.perf_counter()
            out = slot.llm.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=float(_param(params, "temperature", 0.7)),
                top_p=float(_param(params, "top_p", 0.95)),
                seed=params.get("seed"),
                stop=self._stop + stop,
                grammar=grammar,
            )
            elapsed = time.perf_counter() - started
        finally:
            self._release(slot)
        text = out["choices"][0]["text"]
        message = parse_output(text.strip() if shape.kind != "text" else text, shape)
        usage = out["usage"]
        return {
            "message": message,
            "finish_reason": "tool_calls" if message["tool_calls"] else out["choices"][0]["finish_reason"],
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            # llama.cpp re-evaluates at least one token even on a full prefix match.
            "cached_tokens": min(reuse, max(0, len(tokens) - 1)),
            "seconds": elapsed,
        }

    @staticmethod
    def _grammar(shape: OutputShape) -> Any:
        if shape.schema is None and not shape.json_object:
            return None
        llama_cpp = _import_llama()
        if shape.json_object:
            return llama_cpp.LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
        return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(shape.schema), verbose=False)


_ENGINES: dict[str, LocalEngine] = {}
_ENGINES_LOCK = threading.Lock()


def close_engines() -> None:
    """Free every loaded model. Runs at exit: llama_cpp's own finalizers fail noisily when they run
    during interpreter teardown, after the C library handles are gone."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            for slot in engine._slots:
                slot.llm.close()
            engine._slots.clear()
        _ENGINES.clear()


atexit.register(close_engines)


def get_engine(model: str) -> LocalEngine:
    """The process-wide engine for `local/<name>` (one per GGUF path), created on first use."""
    resolved = resolve_local_model(model)
    _import_llama()
    key = str(resolved.path)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = LocalEngine(
                path=key,
                fold_system=resolved.fold_system,
                n_ctx=_env_int("HARNESS_OPT_LOCAL_CTX", DEFAULT_CTX),
                n_threads=_env_int("HARNESS_OPT_LOCAL_THREADS", DEFAULT_THREADS),
                n_slots=_env_int("HARNESS_OPT_LOCAL_SLOTS", DEFAULT_SLOTS),
            )
            _ENGINES[key] = engine
    return engine


class LocalProvider(CustomLLM):
    """litellm's handler for `local/...`: runs the engine, blocking in a worker thread when async."""

    def _run(self, model: str, messages: list, optional_params: dict[str, Any]) -> Any:
        import litellm

        try:
            engine = get_engine(model)
        except ModelError as error:
            raise CustomLLMError(status_code=404, message=error.message) from error
        try:
            result = engine.complete(messages, optional_params)
        except ValueError as error:  # context overflow, bad grammar: the request's fault
            raise CustomLLMError(status_code=400, message=str(error)) from error
        usage = {
            "prompt_tokens": result["prompt_tokens"],
            "completion_tokens": result["completion_tokens"],
            "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": result["cached_tokens"]},
        }
        return litellm.ModelResponse(
            model=model,
            choices=[{"index": 0, "finish_reason": result["finish_reason"], "message": result["message"]}],
            usage=usage,
        )

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        return self._run(model, messages, kwargs.get("optional_params") or {})

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._run, model, messages, kwargs.get("optional_params") or {})


_LOCAL_MODEL_INFO = {
    "litellm_provider": "local",
    "mode": "chat",
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "cache_read_input_token_cost": 0.0,
    "cache_creation_input_token_cost": 0.0,
    "max_input_tokens": DEFAULT_CTX,
    "max_tokens": DEFAULT_CTX,
    "supports_function_calling": True,
    "supports_tool_choice": True,
    "supports_response_schema": True,
    "supports_system_messages": True,
}


def local_model_table() -> dict[str, dict[str, Any]]:
    """litellm model-table entries of the known local names. Declaring `supports_response_schema`
    makes dspy send JSON schemas, which we honour by grammar."""
    return {f"local/{name}": dict(_LOCAL_MODEL_INFO) for name in [*KNOWN_LOCAL_MODELS, "default"]}
