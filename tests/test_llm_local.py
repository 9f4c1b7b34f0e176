"""The embedded local model: prompt/constraint building (fast) and the real llama.cpp model (slow)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from harness_opt.errors import ModelError
from harness_opt.llm import DEFAULT_LOCAL_MODEL, LLMClient, LLMConfig, LLMRequest
from harness_opt.llm.local_models import KNOWN_LOCAL_MODELS, resolve_local_model
from harness_opt.llm.local_prompt import output_shape, parse_output, prepare_messages

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


# ---- fast: no model ----------------------------------------------------------------------------


def test_auto_tool_choice_allows_each_tool_or_a_plain_answer() -> None:
    shape = output_shape([WEATHER, TIME])
    branches = shape.schema["anyOf"]  # type: ignore[index]
    assert [b["properties"].get("name", {}).get("const") for b in branches] == [
        "get_weather",
        "get_time",
        None,
    ]
    assert branches[0]["properties"]["arguments"] == WEATHER["function"]["parameters"]
    assert branches[2]["required"] == ["content"]


def test_required_and_named_tool_choice_force_a_call() -> None:
    required = output_shape([WEATHER, TIME], "required").schema
    assert all("name" in b["properties"] for b in required["anyOf"])  # type: ignore[index]
    named = output_shape([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}).schema
    assert named["properties"]["name"] == {"const": "get_time"}  # type: ignore[index]
    assert output_shape([WEATHER], "none").kind == "text"


def test_response_format_shapes() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert output_shape(None, None, fmt).schema == schema
    assert output_shape(None, None, {"type": "json_object"}).json_object


def test_parse_output_turns_json_into_openai_tool_calls() -> None:
    shape = output_shape([WEATHER])
    message = parse_output('{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}', shape)
    call = message["tool_calls"][0]
    assert message["content"] is None and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo", "unit": "c"}
    plain = parse_output('{"content": "hello"}', shape)
    assert plain == {"role": "assistant", "content": "hello", "tool_calls": None}


def test_prepare_messages_renders_history_and_folds_system() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "rain"},
    ]
    turns = prepare_messages(messages, [WEATHER])
    assert turns[0]["role"] == "system" and turns[0]["content"].startswith("Be brief.")
    assert "get_weather" in turns[0]["content"]
    assert json.loads(turns[2]["content"]) == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert turns[3] == {"role": "user", "content": "Tool result (get_weather): rain"}
    folded = prepare_messages(messages[:2], None, fold_system=True)
    assert folded == [{"role": "user", "content": "Be brief.\n\nWeather?"}]


def test_system_turn_is_identical_across_calls_for_prefix_reuse() -> None:
    a = prepare_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "q1"}], [WEATHER])
    b = prepare_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "q2"}], [WEATHER])
    assert a[0] == b[0]


def test_local_names_resolve_or_fail_with_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="unknown local model") as info:
        resolve_local_model("local/nope")
    assert "local/smollm2" in info.value.message
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_local_model(f"local/{gguf}").path == gguf.resolve()
    assert DEFAULT_LOCAL_MODEL in KNOWN_LOCAL_MODELS


def test_missing_llama_cpp_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness_opt.llm import local

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    with pytest.raises(ModelError, match=r"harness-opt\[local\]"):
        local._import_llama()


# ---- slow: the real model ----------------------------------------------------------------------

MODEL = f"local/{DEFAULT_LOCAL_MODEL}"


def _complete(req: LLMRequest) -> dict:
    return asyncio.run(LLMClient(LLMConfig(cache=False)).complete(req)).model_dump()


@pytest.mark.slow
def test_plain_chat_answer() -> None:
    result = _complete(
        LLMRequest(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            params={"temperature": 0, "max_tokens": 12},
        )
    )
    assert isinstance(result["message"]["content"], str) and result["message"]["content"].strip()
    assert result["tokens_in"] > 5 and 0 < result["tokens_out"] <= 12
    assert result["cost_usd"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "prompt",
    [
        "What's the weather in Paris in celsius?",
        "What time is it in Tokyo?",
        "hi",
        "Write a poem about the sea.",
    ],
)
def test_required_tool_call_always_parses_and_validates(prompt: str) -> None:
    import jsonschema

    result = _complete(
        LLMRequest(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            tools=[WEATHER, TIME],
            params={"temperature": 0, "max_tokens": 64, "tool_choice": "required"},
        )
    )
    calls = result["message"]["tool_calls"]
    assert calls and len(calls) == 1
    function = calls[0]["function"]
    schema = {"get_weather": WEATHER, "get_time": TIME}[function["name"]]["function"]["parameters"]
    jsonschema.validate(json.loads(function["arguments"]), schema)


@pytest.mark.slow
def test_auto_tool_choice_gives_a_call_or_text() -> None:
    for prompt in ["Weather in Rome, fahrenheit?", "Thanks, goodbye!"]:
        message = _complete(
            LLMRequest(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                tools=[WEATHER, TIME],
                params={"temperature": 0, "max_tokens": 64},
            )
        )["message"]
        assert bool(message["tool_calls"]) != bool(message["content"])


@pytest.mark.slow
def test_response_format_json_schema_is_honoured() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    for prompt in ["Bob is 30 years old. Extract the person.", "Invent a person."]:
        content = _complete(
            LLMRequest(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                params={"temperature": 0, "max_tokens": 48, "response_format": fmt},
            )
        )
        data = json.loads(content["message"]["content"])
        assert isinstance(data["name"], str) and isinstance(data["age"], int)


@pytest.mark.slow
def test_shared_prefix_is_reused_across_calls() -> None:
    from harness_opt.llm.litellm_setup import import_litellm

    litellm = import_litellm()
    system = "You label support tickets. Labels: " + ", ".join(f"label_{i}" for i in range(150))
    timings, cached = [], []
    for question in ["my card is lost", "where is my refund", "change my pin"]:
        start = time.perf_counter()
        response = litellm.completion(
            model=MODEL,
            temperature=0,
            max_tokens=4,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        )
        timings.append(time.perf_counter() - start)
        cached.append(response.usage.prompt_tokens_details.cached_tokens)
    prompt_tokens = response.usage.prompt_tokens
    assert prompt_tokens > 300
    assert cached[1] > 0.9 * prompt_tokens - 20 and cached[2] > 0.9 * prompt_tokens - 20
    assert timings[2] < timings[0]


@pytest.mark.slow
def test_concurrent_async_calls_through_the_client() -> None:
    async def many() -> list:
        client = LLMClient(LLMConfig(cache=False))
        reqs = [
            LLMRequest(
                model=MODEL,
                messages=[{"role": "user", "content": f"Count to {i}."}],
                params={"temperature": 0, "max_tokens": 8},
            )
            for i in range(4)
        ]
        return await asyncio.gather(*(client.complete(r) for r in reqs))

    results = asyncio.run(many())
    assert all(r.message["content"] for r in results)


@pytest.mark.slow
def test_dspy_can_use_the_local_model() -> None:
    import dspy

    from harness_opt.llm.litellm_setup import import_litellm

    import_litellm()
    lm = dspy.LM(MODEL, temperature=0, max_tokens=64, cache=False)
    assert lm.supports_response_schema
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        prediction = dspy.Predict("question -> answer")(question="What is 2 + 2?")
    assert isinstance(prediction.answer, str)
