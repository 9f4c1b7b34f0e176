"""Tools of your own: bind a suite's tool names to Python callables in the suite folder or HTTP endpoints.

The agent never talks HTTP itself (its sandbox has no network): the broker calls `call_tool` on the
parent side, and this module turns the call into `fn(**args)` or `POST base_url + path` with the JSON
arguments. Every failure — a bad argument, a timeout, a non-2xx answer, a crash in the callable — is a
`ToolError`, which the broker hands back to the agent as the tool's result, so a flaky backend makes a
rollout fail on its merits instead of stopping the evaluation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness_opt.errors import SuiteError
from harness_opt.suites.base import ToolError

BODY_EXCERPT = 300
"""Characters of an HTTP error body shown to the agent: enough to read the reason, not a page of HTML."""


class PythonTool(BaseModel):
    """`[tools.NAME] kind = "python"`: call `function` ("file.py:name" in the suite folder) with the args."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["python"]
    function: str = Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$", description="'tools.py:lookup'.")
    timeout_s: float | None = Field(default=None, gt=0, description="Calls slower than this are errors.")


class HttpTool(BaseModel):
    """`[tools.NAME] kind = "http"`: `POST <base url><path>` with the args as a JSON body."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["http"]
    url: str = Field(description="Absolute URL, or a path joined to the base URL from `base_url_env`.")
    base_url_env: str | None = Field(default=None, description="Env var holding the base URL.")
    auth_header_env: str | None = Field(
        default=None, description="Env var holding the Authorization header value (never in suite.toml)."
    )
    timeout_s: float | None = Field(default=None, gt=0)


ToolBinding = PythonTool | HttpTool


@dataclass
class ToolCall:
    """One call the environment served; predicates read these to check what the agent did."""

    name: str
    args: dict[str, Any]
    result: Any = None
    error: str | None = None


def load_function(folder: Path, spec: str) -> Callable[..., Any]:
    """Import `file.py:name` from the suite folder (trusted project code, imported in-process)."""
    file_part, _, attr = spec.partition(":")
    file = (folder / file_part).resolve()
    if not file.is_file():
        raise SuiteError(f"{file_part} not found", where=str(folder), fix=f"create {file} or fix '{spec}'")
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:10]
    mod_name = f"_harness_opt_suitefn_{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}_{digest}"
    module = sys.modules.get(mod_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(mod_name, file)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise SuiteError(
                f"importing {file_part} failed: {type(exc).__name__}: {exc}",
                where=str(file),
                fix=f"run `python {file}` to see the error",
            ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SuiteError(f"{file_part} defines no function {attr!r}", where=str(file), fix=f"define {attr}()")
    return fn


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class BoundTools:
    """The resolved `[tools]` table of a suite: name -> callable or HTTP endpoint, shared by rollouts."""

    folder: Path
    bindings: Mapping[str, ToolBinding]
    default_timeout_s: float = 10.0
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, binding in self.bindings.items():
            if isinstance(binding, PythonTool):
                self.functions[name] = load_function(self.folder, binding.function)

    def environment(self, task_id: str, state: Any = None) -> ToolEnvironment:
        return ToolEnvironment(self, task_id, state)


class ToolEnvironment:
    """A fresh environment for one rollout: the bound tools, optional per-rollout state, a call log."""

    def __init__(self, tools: BoundTools, task_id: str, state: Any = None) -> None:
        self._tools = tools
        self.task_id = task_id
        self.state = state
        self.calls: list[ToolCall] = []

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        binding = self._tools.bindings.get(name)
        if binding is None:
            known = ", ".join(sorted(self._tools.bindings)) or "none"
            raise ToolError(f"unknown tool '{name}'; tools: {known}")
        call = ToolCall(name=name, args=dict(args))
        self.calls.append(call)
        timeout = binding.timeout_s or self._tools.default_timeout_s
        try:
            if isinstance(binding, PythonTool):
                call.result = self._python(name, args, timeout)
            else:
                call.result = http_call(binding, args, timeout, task_id=self.task_id)
        except ToolError as exc:
            call.error = str(exc)
            raise
        return call.result

    def _python(self, name: str, args: dict[str, Any], timeout: float) -> Any:
        fn = self._tools.functions[name]
        kwargs = dict(args)
        if _accepts(fn, "state"):
            kwargs["state"] = self.state
        t0 = time.perf_counter()
        try:
            result = fn(**kwargs)
        except ToolError:
            raise
        except TypeError as exc:  # wrong or missing arguments: the agent can correct itself
            raise ToolError(f"bad arguments for '{name}': {exc}") from None
        except Exception as exc:
            raise ToolError(f"'{name}' failed: {type(exc).__name__}: {exc}") from None
        # A Python call cannot be interrupted safely in-process, so the timeout is checked after the
        # fact: the agent still learns the tool is too slow, and the result is not used.
        if time.perf_counter() - t0 > timeout:
            raise ToolError(f"'{name}' took longer than {timeout:g}s (timeout)")
        return result


def resolve_url(binding: HttpTool) -> str:
    """The endpoint URL: `url` as-is when absolute, else joined to the base URL in `base_url_env`."""
    if re.match(r"^https?://", binding.url):
        return binding.url
    if not binding.base_url_env:
        raise ToolError(f"tool url {binding.url!r} is relative but no base_url_env is set")
    base = os.environ.get(binding.base_url_env)
    if not base:
        raise ToolError(f"environment variable {binding.base_url_env} (the tool's base URL) is not set")
    return base.rstrip("/") + "/" + binding.url.lstrip("/")


def http_call(binding: HttpTool, args: dict[str, Any], timeout: float, *, task_id: str = "") -> Any:
    """POST the args as JSON; the decoded JSON answer (or text) is the result, anything else a ToolError."""
    url = resolve_url(binding)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if task_id:
        headers["X-Harness-Opt-Task"] = task_id  # lets a test backend scope its state per task
    if binding.auth_header_env:
        auth = os.environ.get(binding.auth_header_env)
        if not auth:
            raise ToolError(f"environment variable {binding.auth_header_env} (the tool's auth) is not set")
        headers["Authorization"] = auth
    request = urllib.request.Request(url, data=json.dumps(args).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        excerpt = exc.read().decode("utf-8", errors="replace")[:BODY_EXCERPT]
        raise ToolError(f"HTTP {exc.code} from {binding.url}: {excerpt}") from None
    except TimeoutError:
        raise ToolError(f"{binding.url} did not answer within {timeout:g}s (timeout)") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ToolError(f"{binding.url} did not answer within {timeout:g}s (timeout)") from None
        raise ToolError(f"cannot reach {binding.url}: {exc.reason}") from None
    except OSError as exc:
        raise ToolError(f"cannot reach {binding.url}: {exc}") from None
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body
