"""The lean OpenAI-compatible path (llm/openai_http.py) against the litellm path: same request on the
wire, same tokens, cost, attempts, retries by cause and error kind, against real loopback servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness_opt.llm import LLMClient, LLMConfig, LLMRequest
from harness_opt.llm.client import call_account
from harness_opt.llm.openai_http import PATH_ENV, Pricing, parse_completion, path_for
from tests.support.faulty_llm import faulty_llm
from tests.support.loopback_llm import loopback_llm

FAST = LLMConfig(backoff_base_s=0.001, backoff_max_s=0.01, max_retries=4, cache=False)
PATHS = ("litellm", "lean")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv(PATH_ENV, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)


def _through(path: str, url: str, reqs: list[LLMRequest], **config: Any) -> tuple[list[Any], Any, Any]:
    """Each request through a fresh client on `path`, one call account around them all: (results or
    errors, the account's counts, the client's stats)."""
    client = LLMClient(FAST.model_copy(update={"api_base": url, "path": path, **config}))
    assert client.path(reqs[0].model) == path

    async def go() -> tuple[list[Any], Any]:
        out: list[Any] = []
        with call_account() as account:
            for req in reqs:
                try:
                    out.append(await client.complete(req))
                except Exception as exc:  # the test compares what was raised
                    out.append(exc)
        return out, account.counts()

    results, counts = asyncio.run(go())
    return results, counts, client.stats


def _stats(stats: Any) -> dict[str, Any]:
    return {
        "attempts": stats.attempts,
        "model_calls": stats.model_calls,
        "retries": stats.retries,
        "retries_by_cause": dict(stats.retries_by_cause),
        "failures_by_cause": dict(stats.failures_by_cause),
        "tokens": (stats.tokens_in, stats.tokens_out),
        "cost": round(stats.cost_usd, 15),
    }


def _outcome(result: Any) -> Any:
    if isinstance(result, Exception):
        return (type(result).__name__, getattr(result, "kind", None), getattr(result, "attempts", None))
    return result.model_dump(exclude={"latency_s"})


def test_a_request_and_its_accounting_are_the_same_through_either_path() -> None:
    # A priced model (litellm's table has gpt-4o-mini), tools, sampling parameters, a tool-call reply.
    def respond(body: dict[str, Any], n: int) -> Any:
        if n == 1:
            call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        return f"answer number {n}"

    reqs = [
        LLMRequest(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": f"question {i} about cards"}],
            tools=TOOLS,
            params={"temperature": 0.2, "max_tokens": 50, "stop": ["\n\n"], "seed": 7},
        )
        for i in range(3)
    ]
    seen: dict[str, Any] = {}
    for path in PATHS:
        with loopback_llm(respond) as server:
            results, counts, stats = _through(path, server.url, reqs)
            seen[path] = (server.requests, [_outcome(r) for r in results], counts, _stats(stats))
    assert seen["lean"] == seen["litellm"]
    wire, outcomes, counts, stats = seen["lean"]
    assert wire[0]["model"] == "gpt-4o-mini" and wire[0]["tools"] == TOOLS and wire[0]["seed"] == 7
    assert outcomes[1]["message"]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": 1}'}
    assert counts.attempts == 3 and counts.calls_ok == 3
    assert stats["cost"] > 0  # priced: the comparison covers the cost, not two zeros


@pytest.mark.parametrize(
    ("settings", "config"),
    [
        ({"fail_rate": 0.5, "seed": 3}, {"max_retries": 6}),  # 500s retried, then answered
        ({"fail_rate": 1.0, "fail_status": 503}, {"max_retries": 2}),  # retries run out
        ({"fail_rate": 0.4, "fail_status": 429, "seed": 5}, {"max_retries": 3}),
        ({"context_words": 3}, {}),  # permanent: context overflow, one attempt
        ({"api_key": "right"}, {}),  # auth
        ({"models": {"other"}}, {}),  # unknown model
    ],
)
def test_failures_retries_and_error_kinds_are_the_same_through_either_path(
    settings: dict[str, Any], config: dict[str, Any]
) -> None:
    reqs = [
        LLMRequest(model="openai/m", messages=[{"role": "user", "content": f"q {i}"}], params={})
        for i in range(4)
    ]
    seen: dict[str, Any] = {}
    for path in PATHS:
        with faulty_llm(**settings) as server:
            results, counts, stats = _through(path, server.url, reqs, **config)
            seen[path] = ([_outcome(r) for r in results], counts, _stats(stats), server.received)
    assert seen["lean"] == seen["litellm"]
    _outcomes, counts, stats, received = seen["lean"]
    assert received == stats["attempts"] == counts.attempts  # every request counted, by the server too


def test_a_refused_connection_and_a_missing_key_are_the_same_through_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    req = LLMRequest(model="openai/m", messages=[{"role": "user", "content": "hi"}])
    seen: dict[str, Any] = {}
    for path in PATHS:
        with faulty_llm() as server:
            server.down()
            results, counts, stats = _through(path, server.url, [req], max_retries=1)
            seen[path] = (_outcome(results[0]), counts, _stats(stats))
    assert seen["lean"] == seen["litellm"]
    assert seen["lean"][0] == ("LLMCallError", "connection_refused", 2)
    monkeypatch.delenv("OPENAI_API_KEY")
    missing: dict[str, Any] = {}
    for path in PATHS:
        with faulty_llm() as server:
            results, counts, stats = _through(path, server.url, [req])
            missing[path] = (type(results[0]).__name__, counts, _stats(stats), server.received)
    assert missing["lean"] == missing["litellm"]
    assert missing["lean"][0] == "LLMAuthError" and missing["lean"][3] == 0  # nothing was sent


def test_a_timeout_is_retried_and_counted_alike() -> None:
    req = LLMRequest(model="openai/m", messages=[{"role": "user", "content": "hi"}])
    seen: dict[str, Any] = {}
    for path in PATHS:
        with faulty_llm(delay_s=1.0) as server:
            results, counts, stats = _through(path, server.url, [req], timeout_s=0.2, max_retries=1)
            seen[path] = (_outcome(results[0]), counts, _stats(stats))
    assert seen["lean"] == seen["litellm"]
    assert seen["lean"][0] == ("LLMCallError", "timeout", 2)


def test_cost_matches_litellms_own_pricing_cached_tokens_included() -> None:
    import litellm

    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "total_tokens": 1200,
            "prompt_tokens_details": {"cached_tokens": 600},
        },
    }
    ours = parse_completion("openai/gpt-4o-mini", body).cost_usd
    theirs = litellm.completion_cost(
        completion_response=litellm.ModelResponse(**body), model="openai/gpt-4o-mini"
    )
    assert ours == pytest.approx(theirs, rel=1e-9) and ours > 0
    assert parse_completion("openai/no-such-model", body).cost_usd == 0.0
    assert Pricing.prices("openai/no-such-model") is None


def test_which_path_a_call_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert path_for("openai/qwen", "http://127.0.0.1:8000/v1") == "lean"
    assert path_for("openai/gpt-4o-mini", None) == "litellm"  # OpenAI's own API: litellm maps params
    assert path_for("anthropic/claude-3-5-haiku-latest", "http://proxy/v1") == "litellm"
    assert path_for("local/smollm2", "http://x/v1", "lean") == "litellm"  # not an OpenAI endpoint
    assert path_for("openai/qwen", "http://x/v1", "litellm") == "litellm"
    assert path_for("openai/gpt-4o-mini", None, "lean") == "lean"
    assert path_for("openai/o3-mini", "http://gateway/v1") == "litellm"  # litellm rewrites its params
    assert path_for("openai/gpt-5-mini", "http://gateway/v1") == "litellm"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert path_for("openai/qwen", None) == "lean"
    monkeypatch.setenv(PATH_ENV, "litellm")
    assert path_for("openai/qwen", "http://x/v1") == "litellm"


def test_the_lean_path_neither_imports_litellm_nor_leaks_its_session(tmp_path: Path) -> None:
    # A fresh interpreter: an evaluation against a local server must not pay litellm's import, and
    # the pooled session closes with the event loop (aiohttp warns about an unclosed one).
    script = textwrap.dedent(
        """
        import asyncio, json, sys, warnings
        warnings.simplefilter("error")
        from harness_opt.llm import LLMClient, LLMConfig, LLMRequest
        from tests.support.loopback_llm import loopback_llm
        with loopback_llm() as server:
            client = LLMClient(LLMConfig(api_base=server.url, cache=False))
            req = LLMRequest(model="openai/m", messages=[{"role": "user", "content": "hi"}])
            first = asyncio.run(client.complete(req))
            second = asyncio.run(client.complete(req))  # a second loop gets its own session
        import gc; gc.collect()
        print(json.dumps([first.message["content"], second.message["content"], "litellm" in sys.modules]))
        """
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-x", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(PATH_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["m reply #0", "m reply #1", False]
    assert "Unclosed" not in done.stderr


def test_concurrent_calls_share_one_pool_and_each_gets_its_reply() -> None:
    def echo(body: dict[str, Any], n: int) -> str:
        return "re: " + body["messages"][-1]["content"]

    async def many(client: LLMClient) -> list[str]:
        reqs = [
            LLMRequest(model="openai/m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(40)
        ]
        results = await asyncio.gather(*(client.complete(r) for r in reqs))
        await client.aclose()
        return [r.message["content"] for r in results]

    with loopback_llm(echo) as server:
        client = LLMClient(FAST.model_copy(update={"api_base": server.url}))
        answers = asyncio.run(many(client))
    assert answers == [f"re: q{i}" for i in range(40)]
    assert client.stats.model_calls == 40 and client.stats.attempts == 40


def test_an_answer_that_is_not_a_completion_is_a_retried_server_error() -> None:
    from harness_opt.llm.failures import classify
    from harness_opt.llm.openai_http import OpenAIHTTPError

    with pytest.raises(OpenAIHTTPError) as info:
        parse_completion("openai/m", {"object": "list", "data": []})
    assert classify(info.value) == "server_error"
