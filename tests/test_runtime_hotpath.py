"""The per-rollout hot path of the broker (issue 16): the heap frozen out of the garbage collector while
runners are open, one watchdog timer for all unacknowledged forks, no kill datagram for a child whose
exit is already known; isolation untouched (the security suites cover it)."""

from __future__ import annotations

import asyncio
import gc

from harness_opt.runtime.broker import HarnessRunner
from tests.support.runtime import FakeLLM, LookupEnv, fixture_version, task


def test_the_heap_is_frozen_while_runners_are_open_and_handed_back_after() -> None:
    gc.unfreeze()
    seen: list[int] = []

    async def go() -> None:
        version = fixture_version("trivial")
        async with HarnessRunner(version, model="fake/model") as outer:
            seen.append(gc.get_freeze_count())
            async with HarnessRunner(version, model="fake/model") as inner:
                result = await inner.run(task(question="q"), LookupEnv(), FakeLLM())
                assert result.error is None, result.error_detail
            seen.append(gc.get_freeze_count())  # the outer runner is still open
            result = await outer.run(task(question="q"), LookupEnv(), FakeLLM())
            assert result.error is None, result.error_detail
        seen.append(gc.get_freeze_count())

    asyncio.run(go())
    assert seen[0] > 1000 and seen[1] > 1000  # the interpreter's objects, at least
    assert seen[2] == 0  # unfrozen: garbage among them is collectable again, nothing leaks


def test_many_forks_share_one_watchdog_and_leave_nothing_pending() -> None:
    async def go() -> tuple[int, int, object, int]:
        version = fixture_version("trivial")
        async with HarnessRunner(version, model="fake/model", concurrency=16) as runner:
            server = runner._server
            assert server is not None
            loop = asyncio.get_running_loop()
            before = len(loop._scheduled)  # type: ignore[attr-defined]
            runs = [runner.run(task(f"t{i}", question=f"q{i}"), LookupEnv(), FakeLLM()) for i in range(32)]
            pending = asyncio.gather(*runs)
            await asyncio.sleep(0)  # the first forks are sent
            timers = len(loop._scheduled) - before  # type: ignore[attr-defined]
            results = await pending
            failed = sum(r.error is not None for r in results)
        return failed, timers, server._watchdog, len(server._acks)

    failed, timers, watchdog, acks = asyncio.run(go())
    assert failed == 0
    assert acks == 0  # every fork acknowledged
    # 16 rollouts in flight: each has its wall-time timer, but the forks share one watchdog
    assert timers <= 16 + 1, timers
    assert watchdog is None  # the closed server left no timer behind


def test_no_kill_is_sent_for_a_child_whose_exit_is_known() -> None:
    sent: list[bytes] = []

    async def go() -> None:
        async with HarnessRunner(fixture_version("trivial"), model="fake/model") as runner:
            server = runner._server
            assert server is not None
            result = await runner.run(task(question="q"), LookupEnv(), FakeLLM())
            assert result.error is None, result.error_detail
            for _ in range(500):  # its exit status arrives
                if not server._exits:
                    break
                await asyncio.sleep(0.01)
            assert not server._exits
            real = server._send
            server._send = lambda payload, fds: (sent.append(payload), real(payload, fds))  # type: ignore[method-assign]
            server.kill(1)  # rollout 1 is over and reaped: nothing to send
            server._exits[99] = asyncio.get_running_loop().create_future()
            server.kill(99)  # a child still running is killed as before
            server._exits.pop(99)

    asyncio.run(go())
    assert sent == [b'{"op": "kill", "id": 99}']
