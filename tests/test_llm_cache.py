"""The response cache: when it serves, what a hit reports, that it survives concurrency, and that inside
a rollout it never serves one trial's (or rollout's) reply to another while a re-run replays its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from harness_opt.llm import LLMCallError, LLMClient, LLMConfig, LLMRequest, LLMResult, ResponseCache
from harness_opt.llm.cache import CallScope, rollout_scope
from harness_opt.records import RolloutKey
from harness_opt.testing import scripted_model
from tests.support.loopback_llm import loopback_llm

CACHED = LLMConfig(backoff_base_s=0.001, backoff_max_s=0.01, cache=True)


def _req(model: str, text: str = "hi", **params: object) -> LLMRequest:
    return LLMRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))


def _two_calls(
    config: LLMConfig, first: LLMRequest, second: LLMRequest
) -> tuple[LLMResult, LLMResult, LLMClient]:
    client = LLMClient(config)

    async def go() -> tuple[LLMResult, LLMResult]:
        return await client.complete(first), await client.complete(second)

    a, b = asyncio.run(go())
    return a, b, client


def test_deterministic_call_is_served_from_cache_with_original_figures() -> None:
    with scripted_model("det", ["first answer", "second answer"], cost_per_token=0.01) as m:
        a, b, client = _two_calls(CACHED, _req(m.model, temperature=0), _req(m.model, temperature=0))
    assert m.attempts == 1
    assert b.cached and not a.cached
    assert b.message == a.message
    assert (b.tokens_in, b.tokens_out, b.cost_usd) == (a.tokens_in, a.tokens_out, a.cost_usd)
    assert client.stats.model_calls == 1 and client.stats.cache_hits == 1
    assert client.stats.cost_usd == pytest.approx(a.cost_usd)  # a hit spends nothing
    assert "1 model calls, 1 cached" in client.stats.summary()


def test_fixed_seed_counts_as_deterministic() -> None:
    with scripted_model("seeded", ["a", "b"]) as m:
        _, b, _ = _two_calls(
            CACHED, _req(m.model, temperature=0.7, seed=1), _req(m.model, temperature=0.7, seed=1)
        )
    assert b.cached and m.attempts == 1


def test_sampling_call_is_never_cached() -> None:
    with scripted_model("hot", ["a", "b"]) as m:
        _, b, _ = _two_calls(CACHED, _req(m.model, temperature=0.7), _req(m.model, temperature=0.7))
    assert m.attempts == 2 and not b.cached and b.message["content"] == "b"


def test_cache_off_calls_every_time() -> None:
    config = CACHED.model_copy(update={"cache": False})
    with scripted_model("off", ["a", "b"]) as m:
        _, b, _ = _two_calls(config, _req(m.model, temperature=0), _req(m.model, temperature=0))
    assert m.attempts == 2 and not b.cached


@pytest.mark.parametrize(
    "change",
    [
        {"text": "other prompt"},
        {"params": {"temperature": 0, "max_tokens": 5}},
        {"tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]},
    ],
)
def test_any_change_to_the_request_misses(change: dict) -> None:
    with scripted_model("keys", ["a", "b"]) as m:
        base = _req(m.model, temperature=0)
        other = LLMRequest(
            model=m.model,
            messages=[{"role": "user", "content": change.get("text", "hi")}],
            tools=change.get("tools"),
            params=change.get("params", {"temperature": 0}),
        )
        assert other.cache_key() != base.cache_key()
        _, b, _ = _two_calls(CACHED, base, other)
    assert not b.cached and m.attempts == 2


def test_model_is_part_of_the_key() -> None:
    with scripted_model("m1", ["a"]) as m1, scripted_model("m2", ["b"]) as m2:
        _, b, _ = _two_calls(CACHED, _req(m1.model, temperature=0), _req(m2.model, temperature=0))
    assert b.message["content"] == "b" and not b.cached


def test_concurrent_identical_requests_make_one_call() -> None:
    with scripted_model("burst", ["only once"], delay_s=0.02) as m:
        client = LLMClient(CACHED)

        async def burst() -> list[LLMResult]:
            return await asyncio.gather(*(client.complete(_req(m.model, temperature=0)) for _ in range(8)))

        results = asyncio.run(burst())
    assert m.attempts == 1
    assert sum(r.cached for r in results) == 7
    assert {r.message["content"] for r in results} == {"only once"}


def test_failed_call_is_not_cached() -> None:
    from harness_opt.testing import Fail

    config = CACHED.model_copy(update={"max_retries": 0})
    with scripted_model("failonce", [Fail("server_error"), "ok"]) as m:
        client = LLMClient(config)

        async def go() -> LLMResult:
            with pytest.raises(LLMCallError):
                await client.complete(_req(m.model, temperature=0))
            return await client.complete(_req(m.model, temperature=0))

        result = asyncio.run(go())
    assert result.message["content"] == "ok" and not result.cached


def test_cache_lives_in_the_home_cache_dir(isolated_home: Path) -> None:
    cache = ResponseCache()
    assert cache.path.is_relative_to(isolated_home)
    cache.put("k", LLMResult(message={"role": "assistant", "content": "x", "tool_calls": None}, tokens_in=3))
    again = ResponseCache().get("k")
    assert again is not None and again.tokens_in == 3 and not again.cached


_WRITER = """
import sys
from pathlib import Path
from harness_opt.llm.cache import ResponseCache
from harness_opt.llm.types import LLMResult
cache = ResponseCache(Path(sys.argv[1]))
start = int(sys.argv[2])
for i in range(start, start + 50):
    cache.put(f"k{i}", LLMResult(message={"role": "assistant", "content": str(i)}, tokens_in=i))
"""


def test_two_processes_write_one_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    ResponseCache(path)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(start)]) for start in (0, 50)]
    assert [p.wait(60) for p in procs] == [0, 0]
    cache = ResponseCache(path)
    assert len(cache) == 100
    hit = cache.get("k77")
    assert hit is not None and hit.message["content"] == "77"


# --- trial independence: the cache key is per rollout and per repeat -------------------------------


def _key(trial: int, task: str = "t1", version: str = "v1") -> RolloutKey:
    return RolloutKey(version_hash=version, suite="s", split="val", task_id=task, trial=trial, model="m")


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    with loopback_llm() as server:
        yield server


def _loop_client(server, **config: object) -> LLMClient:
    return LLMClient(CACHED.model_copy(update={"api_base": server.url, **config}))


def _ask(client: LLMClient, key: RolloutKey | None, times: int = 1, text: str = "same question") -> list[str]:
    async def go() -> list[str]:
        answers = []
        for _ in range(times):
            request = _req("openai/loop", text, temperature=0)
            if key is None:
                answers.append((await client.complete(request)).message["content"])
            else:
                with rollout_scope(key):
                    answers.append((await client.complete(request)).message["content"])
        return answers

    return asyncio.run(go())


def test_k_trials_of_one_request_make_k_calls_and_may_differ(loopback) -> None:
    client = _loop_client(loopback)
    answers = [_ask(client, _key(trial))[0] for trial in range(4)]
    assert len(loopback.calls("loop")) == 4 and client.stats.cache_hits == 0
    assert answers == ["loop reply #0", "loop reply #1", "loop reply #2", "loop reply #3"]


def test_another_rollout_of_the_same_request_is_not_served_the_first_ones_reply(loopback) -> None:
    client = _loop_client(loopback)
    first = _ask(client, _key(0, task="a"))
    other_task = _ask(client, _key(0, task="b"))
    other_version = _ask(client, _key(0, version="v2"))
    assert len({*first, *other_task, *other_version}) == 3 and len(loopback.requests) == 3


def test_a_rollout_asking_twice_gets_two_answers_and_a_rerun_replays_both_in_order(loopback) -> None:
    key = _key(0)

    async def rollout(client: LLMClient) -> list[str]:
        with rollout_scope(key):
            request = _req("openai/loop", "again?", temperature=0)
            return [(await client.complete(request)).message["content"] for _ in range(2)]

    first = asyncio.run(rollout(_loop_client(loopback)))
    assert first == ["loop reply #0", "loop reply #1"]
    rerun_client = _loop_client(loopback)  # a new process resuming the same rollout
    assert asyncio.run(rollout(rerun_client)) == first
    assert len(loopback.requests) == 2 and rerun_client.stats.cache_hits == 2


def test_an_interrupted_rollout_resumes_from_its_own_replies(loopback) -> None:
    key = _key(1)

    async def rollout(client: LLMClient, steps: int) -> list[str]:
        out = []
        with rollout_scope(key):
            for step in range(steps):
                reply = await client.complete(_req("openai/loop", f"step {step}", temperature=0))
                out.append(reply.message["content"])
        return out

    killed = asyncio.run(rollout(_loop_client(loopback), 2))  # the process died after two calls
    resumed_client = _loop_client(loopback)
    resumed = asyncio.run(rollout(resumed_client, 3))
    assert resumed[:2] == killed and resumed_client.stats.cache_hits == 2
    assert len(loopback.requests) == 3  # only the step it had not reached was asked


def test_concurrent_trials_are_not_merged_by_in_flight_deduplication(loopback) -> None:
    client = _loop_client(loopback)

    async def trial(n: int) -> str:
        with rollout_scope(_key(n)):
            return (await client.complete(_req("openai/loop", "burst", temperature=0))).message["content"]

    async def burst() -> list[str]:
        return await asyncio.gather(*(trial(n) for n in range(6)))

    answers = asyncio.run(burst())
    assert len(loopback.requests) == 6 and len(set(answers)) == 6


def test_a_scope_counts_repeats_per_request_not_per_call() -> None:
    scope = CallScope("r")
    a0, b0, a1 = scope.cache_key("a"), scope.cache_key("b"), scope.cache_key("a")
    assert len({a0, b0, a1}) == 3
    again = CallScope("r")
    assert again.cache_key("b") == b0 and again.cache_key("a") == a0  # order of other requests is irrelevant
    assert CallScope("other").cache_key("a") != a0
