"""Overhead of the broker and fork server: CPU per rollout (parent, rollout child, fork server) and
rollouts/s at several concurrencies.

Run `python tests/test_runtime_perf.py` for the figures; the slow test guards the budget (1 ms of parent
CPU per rollout) with headroom for noisy CI machines. The child's share is its whole life: fork, its own
user and mount namespaces with a fresh /tmp, the seccomp filter, one model call, exit and teardown.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from harness_opt.runtime.broker import HarnessRunner
from tests.support.runtime import FakeLLM, LookupEnv, fixture_version, task


def _server_cpu_s(pid: int | None) -> float:
    """CPU seconds the fork server has used so far (from /proc; 0 if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


async def measure(n: int, concurrency: int, isolation: str = "auto") -> dict[str, Any]:
    """Run n one-call rollouts; CPU ms per rollout (parent, child, fork server) and rollouts/s (wall)."""
    llm = FakeLLM()
    version = fixture_version("trivial")
    tasks = [task(f"t{i}", question=f"q{i}") for i in range(n)]
    async with HarnessRunner(
        version, model="fake/model", isolation=isolation, concurrency=concurrency
    ) as runner:
        await asyncio.gather(*(runner.run(t, LookupEnv(), llm) for t in tasks[:concurrency]))  # warm-up
        server = runner._server
        assert server is not None
        for _ in range(200):  # the warm-up children's exit statuses
            if not server._exits:
                break
            await asyncio.sleep(0.01)
        child0, server0 = server.rollout_cpu_s, _server_cpu_s(server.host_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(runner.run(t, LookupEnv(), llm) for t in tasks))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        for _ in range(500):
            if not server._exits:
                break
            await asyncio.sleep(0.01)
        child = server.rollout_cpu_s - child0
        server_cpu = _server_cpu_s(server.host_pid) - server0
    failed = [r for r in results if r.error is not None]
    assert not failed, failed[0].error_detail
    per = {"parent": cpu, "child": child, "fork_server": server_cpu}
    return {
        **{f"{k}_cpu_ms": round(1000 * v / n, 3) for k, v in per.items()},
        "cpu_ms_per_rollout": round(1000 * cpu / n, 3),
        "total_cpu_ms": round(1000 * sum(per.values()) / n, 3),
        "rollouts_per_s": round(n / wall, 1),
        "isolation": runner.isolation_label,
    }


@pytest.mark.slow
def test_parent_cpu_per_rollout_is_small() -> None:
    figures = asyncio.run(measure(500, 8))
    assert figures["cpu_ms_per_rollout"] < 3.0, figures


if __name__ == "__main__":
    for conc in (1, 8, 32, 64):
        print(f"concurrency {conc:>2}:", asyncio.run(measure(500, conc)))
