"""The response cache: when it serves, what a hit reports, and that it survives concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from harness_opt.llm import LLMCallError, LLMClient, LLMConfig, LLMRequest, LLMResult, ResponseCache
from harness_opt.testing import scripted_model

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
