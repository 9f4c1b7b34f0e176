"""The broker and fork server: events, outputs, limits, crashes, timeouts, concurrency, restarts.

Every test runs real harness fixtures in a real sandbox (bubblewrap where it works), with fake model
calls; plain `asyncio.run` keeps the tests free of an async pytest plugin.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.records import LLMCallEvent, LogEvent, ToolCallEvent
from harness_opt.runtime.broker import HarnessRunner, RolloutResult, classify_exit
from harness_opt.runtime.channel import FrameProtocol, to_json_bytes
from harness_opt.runtime.zygote import EXIT_MEMORY, MAX_FRAME
from tests.support.runtime import FakeLLM, LookupEnv, fixture_version, task


def run_one(name: str, llm: Any = None, limits: RolloutLimits | None = None, **inputs: Any) -> RolloutResult:
    async def go() -> RolloutResult:
        async with HarnessRunner(fixture_version(name), model="fake/model", limits=limits) as runner:
            return await runner.run(task(**inputs), LookupEnv(), llm or FakeLLM())

    return asyncio.run(go())


def test_good_harness_records_every_event_and_returns_its_output() -> None:
    llm = FakeLLM(content="hi")
    result = run_one("good", llm, question="q")
    assert result.error is None, result.error_detail
    assert result.output["answer"] == "hi!"  # helper.py next to agent.py was importable
    assert result.output["found"] == {"value": "qq"}
    assert result.output["missing"] == {"error": "key is empty"}
    assert result.output["task_id"] == "t1"
    assert "no template 'no_such_template.j2'" in result.output["render_error"]
    assert "/work" not in result.output["render_error"]  # host paths stay in the parent
    kinds = [type(e) for e in result.events]
    assert kinds == [LLMCallEvent, ToolCallEvent, ToolCallEvent, LogEvent, LogEvent]
    call = result.events[0]
    assert isinstance(call, LLMCallEvent)
    assert call.model == "fake/model"
    assert call.params == {"temperature": 0.5, "max_tokens": 32}  # call params override harness.toml
    assert call.messages[0]["content"] == "You are a test agent with 1 tool(s)."  # rendered in the parent
    assert call.messages[1]["content"] == "Question: q"
    assert (call.tokens_in, call.tokens_out, call.response) == (10, 5, {"role": "assistant", "content": "hi"})
    assert llm.requests[0].params["temperature"] == 0.5
    missing = result.events[2]
    assert isinstance(missing, ToolCallEvent) and missing.error == "key is empty"
    log, stdout = result.events[3], result.events[4]
    assert isinstance(log, LogEvent) and log.data == {"key": "q", "tools": 1}
    assert isinstance(stdout, LogEvent) and stdout.data["text"] == "hello from the harness\n"
    assert result.started <= result.ended


def test_only_task_id_and_input_reach_the_harness() -> None:
    result = run_one("hostile", mode="introspect")
    assert result.error is None, result.error_detail
    assert result.output["task"] == {"mode": "introspect"}
    assert result.output["task_id"] == "t1"
    assert "SECRET" not in json.dumps(result.output)


def test_crash_reports_the_exception_text() -> None:
    result = run_one("hostile", mode="crash")
    assert result.error == "crash"
    assert "ValueError: boom 42" in (result.error_detail or "")


def test_child_exiting_without_result_is_a_crash() -> None:
    result = run_one("hostile", mode="exit")
    assert result.error == "crash"
    assert "code 3" in (result.error_detail or "")


def test_a_child_writing_garbage_to_its_channel_is_a_crash_and_is_killed() -> None:
    t0 = time.monotonic()
    result = run_one("hostile", mode="garbage")  # it then sleeps 30 s: it must not hold the runner
    assert result.error == "crash"
    assert "protocol violation" in (result.error_detail or "")
    assert time.monotonic() - t0 < 10


def test_non_json_output_is_invalid_output() -> None:
    result = run_one("hostile", mode="invalid")
    assert result.error == "invalid_output"
    assert "not JSON-serialisable" in (result.error_detail or "")


def test_step_limit_stops_a_harness_that_swallows_errors() -> None:
    result = run_one("hostile", mode="steps")  # hostile/harness.toml: max_steps = 5
    assert result.error == "step_limit"
    assert sum(isinstance(e, ToolCallEvent) for e in result.events) == 5


def test_token_limit_is_enforced_before_the_call_that_would_exceed_it() -> None:
    llm = FakeLLM(tokens=30)
    result = run_one("hostile", llm, mode="tokens")  # max_tokens = 100
    assert result.error == "token_limit"
    assert "90 tokens used of 100" in (result.error_detail or "")
    assert len(llm.requests) == 3  # the 4th call was never sent: its prompt alone did not fit
    assert sum(isinstance(e, LLMCallEvent) for e in result.events) == 3
    # the last call sent could not answer past the budget: its max_tokens was lowered to what was left
    assert llm.requests[-1].params["max_tokens"] <= 100 - 60


def test_cost_limit() -> None:
    limits = RolloutLimits(max_steps=50, max_cost_usd=0.01, wall_time_s=20)
    result = run_one("hostile", FakeLLM(tokens=1, cost=0.004), limits, mode="tokens")
    assert result.error == "cost_limit"
    assert sum(isinstance(e, LLMCallEvent) for e in result.events) == 3


def test_model_failure_is_llm_error_with_the_call_recorded() -> None:
    result = run_one("hostile", FakeLLM(fail=RuntimeError("provider down")), mode="tokens")
    assert result.error == "llm_error"
    assert "provider down" in (result.error_detail or "")
    assert isinstance(result.events[0], LLMCallEvent) and "provider down" in (result.events[0].error or "")


def test_memory_limit() -> None:
    limits = RolloutLimits(memory_mb=300, wall_time_s=20)
    result = run_one("hostile", limits=limits, mode="memory")
    assert result.error == "memory", result.error_detail


def test_agent_that_fails_to_import_crashes_every_rollout() -> None:
    async def go() -> list[RolloutResult]:
        async with HarnessRunner(fixture_version("broken_import"), model="fake/model") as runner:
            return [await runner.run(task(f"t{i}"), LookupEnv(), FakeLLM()) for i in range(2)]

    for result in asyncio.run(go()):
        assert result.error == "crash"
        assert "import-time failure 17" in (result.error_detail or "")


def test_infinite_loop_is_killed_at_the_wall_limit_and_the_runner_goes_on() -> None:
    limits = RolloutLimits(wall_time_s=1.0)

    async def go() -> tuple[RolloutResult, float, list[RolloutResult]]:
        async with HarnessRunner(fixture_version("hostile"), model="fake/model", limits=limits) as runner:
            t0 = time.monotonic()
            looped = await runner.run(task(mode="loop"), LookupEnv(), FakeLLM())
            elapsed = time.monotonic() - t0
            after = [
                await runner.run(task(mode="sleep", seconds=0), LookupEnv(), FakeLLM()) for _ in range(3)
            ]
            return looped, elapsed, after

    looped, elapsed, after = asyncio.run(go())
    assert looped.error == "timeout"
    assert "1s" in (looped.error_detail or "")
    assert 0.9 <= elapsed < 3.0
    assert [r.output for r in after] == ["woke"] * 3


def test_sixteen_concurrent_rollouts_all_complete() -> None:
    llm = FakeLLM(delay_s=0.3)

    async def go() -> tuple[list[RolloutResult], float]:
        async with HarnessRunner(fixture_version("good"), model="fake/model", concurrency=16) as runner:
            t0 = time.monotonic()
            results = await asyncio.gather(
                *(runner.run(task(f"t{i}", question=f"q{i}"), LookupEnv(), llm) for i in range(16))
            )
            return list(results), time.monotonic() - t0

    results, elapsed = asyncio.run(go())
    assert [r.error for r in results] == [None] * 16
    assert [r.output["found"]["value"] for r in results] == [f"q{i}" * 2 for i in range(16)]
    assert elapsed < 2.5  # 16 x 0.3 s serially would be 4.8 s


def test_a_dead_fork_server_fails_in_flight_rollouts_and_is_restarted() -> None:
    async def go() -> tuple[RolloutResult, RolloutResult]:
        async with HarnessRunner(fixture_version("hostile"), model="fake/model") as runner:
            server = runner._server
            assert server is not None and server._proc is not None
            pending = asyncio.create_task(runner.run(task(mode="sleep", seconds=10), LookupEnv(), FakeLLM()))
            await asyncio.sleep(0.5)
            assert server.host_pid is not None
            os.kill(server.host_pid, signal.SIGKILL)  # what the OOM killer would do
            in_flight = await pending
            after = await runner.run(task(mode="sleep", seconds=0), LookupEnv(), FakeLLM())
            return in_flight, after

    in_flight, after = asyncio.run(go())
    assert in_flight.error == "sandbox", in_flight.error_detail
    assert "fork server died: killed by SIGKILL" in (in_flight.error_detail or ""), in_flight.error_detail
    assert after.error is None and after.output == "woke"


def test_classify_exit_maps_wait_statuses() -> None:
    assert classify_exit(signal.SIGXCPU, 5)[0] == "timeout"
    assert classify_exit(signal.SIGKILL, 5)[0] == "memory"
    assert classify_exit(signal.SIGSEGV, 5)[0] == "crash"
    assert classify_exit(EXIT_MEMORY << 8, 5)[0] == "memory"
    assert classify_exit(1 << 8, 5) == (
        "crash",
        "the harness process exited (code 1) without returning a result",
    )


def test_frame_protocol_reassembles_split_frames_and_rejects_oversized_ones() -> None:
    async def go() -> tuple[list[Any], Any, str | None]:
        proto = FrameProtocol()
        messages = ({"op": "log", "message": "a"}, {"op": "result", "output": 1})
        data = b"".join(to_json_bytes(m)[0] for m in messages)
        for i in range(len(data)):  # one byte at a time: frames must survive any split
            proto.data_received(data[i : i + 1])
        got = [await proto.recv(), await proto.recv()]
        bad = FrameProtocol()
        bad.data_received((MAX_FRAME + 1).to_bytes(4, "big"))
        return got, await bad.recv(), bad.error

    got, after_violation, error = asyncio.run(go())
    deep = FrameProtocol()  # nested past json's C recursion limit: a violation, not a broker exception
    body = b"[" * 200_000 + b"]" * 200_000
    deep.data_received(len(body).to_bytes(4, "big") + body)
    assert deep.error is not None and "RecursionError" in deep.error
    assert got == [{"op": "log", "message": "a"}, {"op": "result", "output": 1}]
    assert after_violation is None and error is not None and "protocol violation" in error


def test_templates_render_in_the_child_within_its_limits() -> None:
    templates = ["hello.j2", "huge.j2", "grow.j2", "private.j2", "missing.j2"]
    llm = FakeLLM()
    t0 = time.monotonic()
    result = run_one("hostile", llm, mode="render", templates=templates)
    assert result.error is None, result.error_detail
    out = result.output
    assert out["hello.j2"] == "rendered: Hello ada with 0 tools"  # `tools` is filled in, as before
    assert "more than 1000000 characters" in out["huge.j2"]  # the output cap, not a 1 GB string
    assert "out of memory" in out["grow.j2"]  # memory_mb, in the child, never the parent
    assert "SecurityError" in out["private.j2"]  # the jinja2 sandbox still applies
    assert "no template 'missing.j2'" in out["missing.j2"]
    assert time.monotonic() - t0 < 15


def test_a_rollout_that_reported_is_killed() -> None:
    async def go() -> tuple[RolloutResult, int | None]:
        async with HarnessRunner(fixture_version("hostile"), model="fake/model") as runner:
            server = runner._server
            assert server is not None
            result = await runner.run(task(mode="linger"), LookupEnv(), FakeLLM())
            exits = list(server._exits.values())
            await asyncio.sleep(0)
            status = None
            if exits:  # the exit status arrives once the child is killed
                status = await asyncio.wait_for(exits[0], 5)
            return result, status

    result, status = asyncio.run(go())
    assert result.error is None and result.output == "reported"
    assert status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_a_stopped_fork_server_is_detected_and_replaced(monkeypatch: Any) -> None:
    from harness_opt.runtime import forkserver

    monkeypatch.setattr(forkserver, "FORK_ACK_TIMEOUT_S", 1.0)

    async def go() -> tuple[RolloutResult, RolloutResult, int]:
        async with HarnessRunner(fixture_version("hostile"), model="fake/model") as runner:
            server = runner._server
            assert server is not None and server.host_pid is not None
            os.kill(server.host_pid, signal.SIGSTOP)  # what a hostile process outside could do
            stuck = await runner.run(task(mode="sleep", seconds=0), LookupEnv(), FakeLLM())
            after = await runner.run(task(mode="sleep", seconds=0), LookupEnv(), FakeLLM())
            return stuck, after, runner.servers_started

    stuck, after, started = asyncio.run(go())
    assert stuck.error == "sandbox", stuck.error_detail
    assert "stopped by a signal" in (stuck.error_detail or ""), stuck.error_detail
    assert after.error is None and after.output == "woke"
    assert started == 2


def test_a_log_flood_ends_the_rollout_instead_of_burning_the_parent() -> None:
    t0 = time.monotonic()
    result = run_one("hostile", mode="logflood")  # wall limit 20 s
    assert result.error == "crash" and "floods its channel" in (result.error_detail or "")
    assert time.monotonic() - t0 < 15
    assert sum(isinstance(e, LogEvent) for e in result.events) == 1001  # 1,000 kept and the marker
