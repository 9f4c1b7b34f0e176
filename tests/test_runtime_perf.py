"""Overhead of the broker and fork server: parent CPU per rollout and rollouts/s at several concurrencies.

Run `python tests/test_runtime_perf.py` for the figures; the slow test guards the budget (1 ms of parent
CPU per rollout) with headroom for noisy CI machines.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from harness_opt.runtime.broker import HarnessRunner
from tests.support.runtime import FakeLLM, LookupEnv, fixture_version, task


async def measure(n: int, concurrency: int, isolation: str = "auto") -> dict[str, Any]:
    """Run n trivial rollouts; returns parent CPU ms per rollout and rollouts per second (wall)."""
    llm = FakeLLM()
    version = fixture_version("trivial")
    tasks = [task(f"t{i}", question=f"q{i}") for i in range(n)]
    async with HarnessRunner(version, model="fake/model", isolation=isolation,
                             concurrency=concurrency) as runner:
        await asyncio.gather(*(runner.run(t, LookupEnv(), llm) for t in tasks[:concurrency]))  # warm-up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(runner.run(t, LookupEnv(), llm) for t in tasks))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    failed = [r for r in results if r.error is not None]
    assert not failed, failed[0].error_detail
    return {"cpu_ms_per_rollout": round(1000 * cpu / n, 3), "rollouts_per_s": round(n / wall, 1),
            "isolation": runner.isolation_used}


@pytest.mark.slow
def test_parent_cpu_per_rollout_is_small() -> None:
    figures = asyncio.run(measure(500, 8))
    assert figures["cpu_ms_per_rollout"] < 3.0, figures


if __name__ == "__main__":
    for conc in (1, 8, 32, 64):
        print(f"concurrency {conc:>2}:", asyncio.run(measure(500, conc)))
