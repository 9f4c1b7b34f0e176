"""The model-parameter allowlist and the per-call budget: what a harness may ask of a model call.

Finding 2: `api_base`, `custom_llm_provider` and friends in `ctx.llm(**params)` or harness.toml sent the
user's key to an arbitrary URL, and `n=64`, `max_tokens=1000000` went through.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.llm.params import MAX_CALL_TOKENS, ParamError, check_params
from harness_opt.llm.types import LLMRequest
from harness_opt.runtime.budget import OverBudget, call_params, within_budget
from harness_opt.testing import scripted_model

REFUSED: list[tuple[str, Any]] = [
    ("api_base", "http://evil.example/v1"),
    ("base_url", "http://evil.example/v1"),
    ("custom_llm_provider", "openai"),
    ("api_key", "sk-mine"),
    ("extra_headers", {"X-Leak": "1"}),
    ("headers", {"X-Leak": "1"}),
    ("extra_body", {"a": 1}),
    ("callbacks", ["x"]),
    ("metadata", {"a": 1}),
    ("timeout", 1e9),
    ("mock_response", "free answer"),
    ("model", "openai/gpt-4o"),
    ("n", 64),
    ("temperature", "hot"),
    ("temperature", 9.0),
    ("top_p", True),
    ("max_tokens", 0),
    ("max_tokens", 1.5),
    ("stop", ["a"] * 9),
    ("seed", "7"),
    ("response_format", {"type": "json_schema"}),
    ("response_format", {"type": "json_object", "api_base": "x"}),
    ("tool_choice", {"type": "function", "function": {"name": "f", "url": "x"}}),
]


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_refused_parameters_name_themselves(name: str, value: Any) -> None:
    with pytest.raises(ParamError) as err:
        check_params({"temperature": 0, name: value})
    assert err.value.name == name


def test_allowed_parameters_pass_unchanged() -> None:
    params = {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["\n"],
        "seed": 7,
        "n": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "presence_penalty": -1,
        "logit_bias": {"50256": -100},
        "reasoning_effort": "low",
        "parallel_tool_calls": False,
    }
    assert check_params(dict(params)) == params


def test_a_deep_response_format_is_refused_without_recursion() -> None:
    schema: Any = {"type": "object"}
    for _ in range(5000):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(ParamError, match="nested deeper"):
        check_params({"response_format": {"type": "json_schema", "json_schema": schema}})


def test_call_params_check_the_call_and_the_defaults() -> None:
    assert call_params({"temperature": 0}, {"max_tokens": 5}) == {"temperature": 0, "max_tokens": 5}
    with pytest.raises(ParamError, match="api_base"):
        call_params({}, {"api_base": "http://x"})
    with pytest.raises(ParamError, match="params"):
        call_params({}, ["not", "a", "dict"])


def _req(model: str = "fake/model", text: str = "hi") -> LLMRequest:
    return LLMRequest(model=model, messages=[{"role": "user", "content": text}])


def test_max_tokens_is_capped_by_the_runtime_and_by_the_budget_left() -> None:
    limits = RolloutLimits(max_tokens=100_000)
    assert within_budget(limits, 0, 0.0, {"max_tokens": 10**6}, _req())["max_tokens"] == MAX_CALL_TOKENS
    assert within_budget(limits, 0, 0.0, {"max_tokens": 50}, _req()) == {"max_tokens": 50}  # fits: as is
    assert within_budget(limits, 0, 0.0, {}, _req()) == {}  # plenty left: the provider's default
    tight = within_budget(limits, 99_000, 0.0, {}, _req())["max_tokens"]
    assert 0 < tight < 1000  # the tokens left, less the prompt's estimate
    both = within_budget(limits, 99_000, 0.0, {"max_completion_tokens": 5000}, _req())
    assert both == {"max_completion_tokens": tight}
    with pytest.raises(OverBudget) as over:
        within_budget(limits, 99_999, 0.0, {}, _req(text="a long prompt " * 10))
    assert over.value.kind == "token_limit"


def test_the_dollar_budget_is_checked_before_the_call() -> None:
    with scripted_model("priced", lambda *_: "x", cost_per_token=0.001) as model:
        limits = RolloutLimits(max_cost_usd=0.05)
        capped = within_budget(limits, 0, 0.0, {"max_tokens": 1000}, _req(model.model))["max_tokens"]
        assert 0 < capped < 50  # what $0.05 minus the prompt buys at $0.001 a token
        with pytest.raises(OverBudget) as over:
            within_budget(limits, 0, 0.0499, {}, _req(model.model))
        assert over.value.kind == "cost_limit"
