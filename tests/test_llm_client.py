"""LLMClient with the scripted provider (litellm path) and against real servers through both paths.

The tests against a server (failures by cause, retries, the pre-flight call) run once per transport:
`litellm` and the lean OpenAI-compatible path (`llm/openai_http.py`); the scripted model is an
in-process litellm provider, so those run on the litellm path only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from harness_opt.errors import ModelError
from harness_opt.llm import LLMCallError, LLMClient, LLMConfig, LLMRequest, list_models, validate_model
from harness_opt.testing import Fail, scripted_model

FAST = LLMConfig(backoff_base_s=0.001, backoff_max_s=0.01, max_retries=4, cache=False)


def _req(model: str, text: str = "hello there", **params: object) -> LLMRequest:
    return LLMRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_plain_reply_is_openai_dict_with_word_token_counts() -> None:
    with scripted_model("plain", ["four words of reply"]) as m:
        result = run(LLMClient(FAST).complete(_req(m.model, "three word prompt")))
    assert result.message == {"role": "assistant", "content": "four words of reply", "tool_calls": None}
    assert (result.tokens_in, result.tokens_out) == (3 + 1, 4)  # "user" role word counts too
    assert result.cached is False and result.model == m.model
    json.dumps(result.model_dump())  # the broker ships it over a pipe


def test_tool_calls_are_normalised_with_string_arguments() -> None:
    reply = {"tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}
    with scripted_model("tools", [reply]) as m:
        result = run(LLMClient(FAST).complete(_req(m.model)))
    calls = result.message["tool_calls"]
    assert result.message["content"] is None
    assert calls[0]["type"] == "function" and calls[0]["id"]
    assert calls[0]["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}


def test_params_and_tools_reach_the_model() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with scripted_model("params", ["ok"]) as m:
        req = LLMRequest(
            model=m.model,
            messages=[{"role": "user", "content": "x"}],
            tools=tools,
            params={"temperature": 0.3, "max_tokens": 7},
        )
        run(LLMClient(FAST).complete(req))
    call = m.calls[0]
    assert call.tools == tools
    assert call.params["temperature"] == 0.3 and call.params["max_tokens"] == 7


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "unavailable", "timeout"])
def test_transient_failures_are_retried(kind: str) -> None:
    with scripted_model("flaky", [Fail(kind), Fail(kind), "finally"]) as m:
        client = LLMClient(FAST)
        result = run(client.complete(_req(m.model)))
    assert result.message["content"] == "finally"
    assert m.attempts == 3
    assert client.stats.retries == 2 and client.stats.model_calls == 1 and client.stats.failures == 0


def test_retries_give_up_after_max_retries() -> None:
    with scripted_model("down", ["never"]) as m:
        m.fail_next(10, "server_error")
        client = LLMClient(FAST.model_copy(update={"max_retries": 2}))
        with pytest.raises(LLMCallError) as info:
            run(client.complete(_req(m.model)))
    assert m.attempts == 3
    assert info.value.attempts == 3 and info.value.retryable
    assert client.stats.failures == 1


def test_backoff_grows_and_is_bounded() -> None:
    client = LLMClient(LLMConfig(backoff_base_s=1.0, backoff_max_s=4.0))
    error = RuntimeError("x")
    waits = [client._backoff_s(attempt, error) for attempt in range(6)]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0
    assert all(2.0 <= w <= 4.0 for w in waits[3:])


def test_backoff_sleeps_between_attempts() -> None:
    config = FAST.model_copy(update={"backoff_base_s": 0.05, "backoff_max_s": 0.05})
    with scripted_model("slowretry", [Fail(), Fail(), "ok"]) as m:
        loop_time = run(_timed(LLMClient(config), _req(m.model)))
    assert loop_time >= 2 * 0.025  # two waits of at least half the ceiling (equal jitter)


async def _timed(client: LLMClient, req: LLMRequest) -> float:
    start = asyncio.get_running_loop().time()
    await client.complete(req)
    return asyncio.get_running_loop().time() - start


def test_auth_error_is_not_retried_and_says_what_to_do() -> None:
    with scripted_model("noauth", [Fail("auth"), "unreachable"]) as m:
        client = LLMClient(FAST)
        with pytest.raises(ModelError) as info:
            run(client.complete(_req(m.model)))
    assert m.attempts == 1 and client.stats.retries == 0
    assert "API key" in info.value.message


def test_bad_request_is_not_retried() -> None:
    with scripted_model("bad", [Fail("bad_request"), "x"]) as m, pytest.raises(LLMCallError) as info:
        run(LLMClient(FAST).complete(_req(m.model)))
    assert m.attempts == 1 and not info.value.retryable


def test_cost_is_accounted_from_the_price_table() -> None:
    with scripted_model("priced", ["one two"], cost_per_token=0.001) as m:
        client = LLMClient(FAST)
        result = run(client.complete(_req(m.model, "a b c")))
    assert result.tokens_in == 4 and result.tokens_out == 2
    assert result.cost_usd == pytest.approx(0.006)
    assert client.stats.cost_usd == pytest.approx(0.006)
    assert "1 model calls, 0 cached" in client.stats.summary()


def test_unpriced_model_costs_zero() -> None:
    with scripted_model("free", ["x"]) as m:
        assert run(LLMClient(FAST).complete(_req(m.model))).cost_usd == 0.0


def test_concurrent_calls_each_get_their_reply() -> None:
    def echo(messages, tools, params):  # type: ignore[no-untyped-def]
        return "re: " + messages[-1]["content"]

    async def many(client: LLMClient, model: str) -> list[str]:
        results = await asyncio.gather(*(client.complete(_req(model, f"q{i}")) for i in range(20)))
        return [r.message["content"] for r in results]

    with scripted_model("echo", echo, delay_s=0.01) as m:
        answers = run(many(LLMClient(FAST), m.model))
    assert answers == [f"re: q{i}" for i in range(20)]


def test_exhausted_script_fails_clearly_without_retries() -> None:
    with scripted_model("short", ["only"]) as m:
        client = LLMClient(FAST)
        run(client.complete(_req(m.model)))
        with pytest.raises(LLMCallError, match="exhausted"):
            run(client.complete(_req(m.model)))
    assert m.attempts == 2


def test_api_key_env_missing_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_PROXY_KEY", raising=False)
    with scripted_model("keyed", ["x"]) as m:
        client = LLMClient(FAST.model_copy(update={"api_key_env": "MY_PROXY_KEY"}))
        with pytest.raises(ModelError, match="MY_PROXY_KEY"):
            run(client.complete(_req(m.model)))


def test_validate_model_rejects_unroutable_strings() -> None:
    for bad in ["nonsense-model", "foo/bar", ""]:
        with pytest.raises(ModelError) as info:
            validate_model(bad)
        assert "fix:" in info.value.message and "\n" not in info.value.message


def test_validate_model_accepts_routable_strings() -> None:
    validate_model("openai/gpt-4o-mini")
    validate_model("anthropic/claude-3-5-haiku-latest")
    with scripted_model("valid", ["x"]) as m:
        validate_model(m.model)


def test_validate_model_local_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="unknown local model"):
        validate_model("local/no-such-model")
    with pytest.raises(ModelError, match="does not exist"):
        validate_model(f"local/{tmp_path}/missing.gguf")


def test_validate_model_require_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        validate_model("openai/gpt-4o-mini", require_key=True)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    validate_model("openai/gpt-4o-mini", require_key=True)


def test_list_models_reports_local_models_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OLLAMA_API_BASE", "http://localhost:11434")
    rows = {r.model: r for r in list_models()}
    assert "local/smollm2" in rows and "local/gemma3-270m" in rows and "local/<path>.gguf" in rows
    assert rows["local/smollm2"].path and rows["local/smollm2"].path.endswith(".gguf")
    assert rows["anthropic/claude-3-5-haiku-latest"].available
    assert not rows["openai/gpt-4o-mini"].available
    assert any(r.kind == "ollama" for r in rows.values())


# ---------------------------------------------------------------- failures by cause, against a server


@pytest.fixture(params=["litellm", "lean"])
def path(request: pytest.FixtureRequest) -> str:
    """The transport under test; each server test runs through both."""
    return str(request.param)


def _server_call(
    server_settings: dict[str, object], text: str = "hello there", *, path: str, **config: object
) -> Any:
    from harness_opt.llm.client import call_account
    from tests.support.faulty_llm import faulty_llm

    async def one(client: LLMClient) -> tuple[object, object]:
        with call_account() as account:
            try:
                result: object = await client.complete(_req("openai/m", text))
            except Exception as exc:  # the test looks at what was raised
                result = exc
        return result, account.counts()

    with faulty_llm(**server_settings) as server:
        client = LLMClient(FAST.model_copy(update={"api_base": server.url, "path": path, **config}))
        assert client.path("openai/m") == path
        outcome, counts = run(one(client))
    return outcome, counts, client.stats, server


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


@pytest.mark.usefixtures("openai_key")
@pytest.mark.parametrize(
    ("settings", "kind", "text"),
    [
        ({"context_words": 2}, "context_overflow", "prompt longer than the model's context"),
        ({"fail_rate": 1.0, "fail_status": 400}, "bad_request", "request refused as malformed"),
        ({"models": {"other"}}, "unknown_model", "model not found"),
    ],
)
def test_permanent_failures_are_not_retried_and_are_counted_by_cause(
    settings: dict[str, object], kind: str, text: str, path: str
) -> None:
    error, counts, stats, server = _server_call(settings, path=path)
    assert isinstance(error, LLMCallError) and error.kind == kind and not error.retryable
    assert text in str(error)
    assert server.received == 1 and stats.attempts == 1 and stats.retries == 0  # one attempt only
    assert stats.failures_by_cause == {kind: 1}
    assert counts.attempts == 1 and counts.failed == {kind: 1} and counts.last_failure == kind  # type: ignore[attr-defined]


@pytest.mark.usefixtures("openai_key")
def test_a_refused_key_is_a_model_error_counted_as_auth(path: str) -> None:
    error, counts, stats, server = _server_call({"api_key": "right"}, path=path)
    assert isinstance(error, ModelError) and "refused the key" in error.message
    assert server.received == 1 and stats.failures_by_cause == {"auth": 1}
    assert counts.failed == {"auth": 1}  # type: ignore[attr-defined]


@pytest.mark.usefixtures("openai_key")
def test_transient_failures_are_retried_and_every_attempt_is_counted(path: str) -> None:
    error, counts, stats, server = _server_call(
        {"fail_rate": 1.0, "fail_status": 429}, path=path, max_retries=3
    )
    assert isinstance(error, LLMCallError) and error.kind == "rate_limit" and error.retryable
    assert server.received == 4 == stats.attempts  # 1 + 3 retries, as the server saw them
    assert stats.retries_by_cause == {"rate_limit": 3} and stats.failures_by_cause == {"rate_limit": 1}
    assert counts.attempts == 4 and counts.retries == {"rate_limit": 3}  # type: ignore[attr-defined]


@pytest.mark.usefixtures("openai_key")
def test_a_refused_connection_is_labelled_as_such_not_as_a_server_error(path: str) -> None:
    from tests.support.faulty_llm import faulty_llm

    with faulty_llm() as server:
        server.down()
        client = LLMClient(FAST.model_copy(update={"api_base": server.url, "max_retries": 1, "path": path}))
        with pytest.raises(LLMCallError) as info:
            run(client.complete(_req("openai/m")))
    assert info.value.kind == "connection_refused"
    said = str(info.value)
    assert "connection refused" in said and "InternalServerError" not in said.split("(")[0]
    assert client.stats.retries_by_cause == {"connection_refused": 1}


@pytest.mark.usefixtures("openai_key")
def test_the_preflight_call_is_one_request_once_per_endpoint_and_marked(path: str) -> None:
    from harness_opt.llm.client import PREFLIGHT_HEADER
    from tests.support.faulty_llm import faulty_llm

    with faulty_llm() as server:
        config = FAST.model_copy(update={"api_base": server.url, "path": path})
        client = LLMClient(config)
        run(client.preflight("openai/m"))
        run(client.preflight("openai/m"))
        run(LLMClient(config).preflight("openai/m"))
    assert server.received == server.preflight == 1 and client.stats.preflight == 1
    assert PREFLIGHT_HEADER.lower().startswith("x-harness-opt")


@pytest.mark.usefixtures("openai_key")
def test_the_preflight_lets_a_flaky_server_through_but_not_a_dead_one(path: str) -> None:
    from tests.support.faulty_llm import faulty_llm

    with faulty_llm(fail_rate=1.0, seed=1) as flaky:  # answers, with errors: the run's retries decide
        run(LLMClient(FAST.model_copy(update={"api_base": flaky.url, "path": path})).preflight("openai/m"))
    assert flaky.preflight == 3
    with faulty_llm() as dead:
        dead.down()
        with pytest.raises(ModelError, match="cannot reach") as info:
            config = FAST.model_copy(update={"api_base": dead.url, "path": path})
            run(LLMClient(config).preflight("openai/m"))
    assert dead.url in info.value.message and "connection refused" in info.value.message


def test_in_process_models_need_no_preflight() -> None:
    with scripted_model("noprobe", ["x"]) as m:
        client = LLMClient(FAST)
        run(client.preflight(m.model))
    assert m.attempts == 0 and client.stats.preflight == 0
