"""The throughput bench's own parts: the loopback server, the fixture suite and harness, the arithmetic.

The bench itself takes minutes, so it is not run here; these tests make sure that what it measures
against (a server that really waits and speaks OpenAI's format) is right.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("bench_eval_throughput", BENCH / "eval_throughput.py")


@pytest.fixture(scope="module")
def server(bench: ModuleType):
    with bench.LoopbackServer(latency_ms=50) as srv:
        yield srv


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str] | None = None) -> dict:
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={"content-type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def test_server_answers_a_chat_completion_after_its_latency(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    started = time.perf_counter()
    first = _post(conn, body)
    elapsed = time.perf_counter() - started
    second = _post(conn, body)  # same connection: keep-alive works
    conn.close()
    assert elapsed >= 0.05
    assert first["object"] == "chat.completion"
    assert first["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    assert first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + 1
    assert first["id"] != second["id"]


def test_server_reads_chunked_bodies_and_404s_unknown_routes(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    chunks = iter([b'{"model": "bench-model",', b' "messages": []}'])
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=chunks,
        encode_chunked=True,
        headers={"transfer-encoding": "chunked"},
    )
    assert json.loads(conn.getresponse().read())["object"] == "chat.completion"
    conn.request("GET", "/v1/nowhere")
    response = conn.getresponse()
    assert response.status == 404 and "error" in json.loads(response.read())
    conn.close()


def test_server_stops_with_the_bench(bench: ModuleType) -> None:
    with bench.LoopbackServer(latency_ms=1) as srv:
        proc = srv.proc
        assert proc.poll() is None
    assert proc.poll() is not None


def test_fixture_suite_and_harness_load(bench: ModuleType) -> None:
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.suites.base import NoTools
    from harness_opt.suites.loader import load_suite

    suite = load_suite(bench.SUITE_DIR)
    tasks = suite.tasks("val")
    assert len(tasks) == 2000 and len({t.id for t in tasks}) == 2000
    assert suite.score(tasks[0], "ok", NoTools()).passed
    assert not suite.score(tasks[0], "  ", NoTools()).passed
    version = HarnessVersion.load(bench.HARNESS_DIR)
    assert version.manifest.model.name == bench.MODEL
    assert version.render("system.j2") == bench.MESSAGES[0]["content"]


def test_rollouts_per_point_and_steady_rate(bench: ModuleType) -> None:
    # 10 s at the ideal 10/s for concurrency 1 and 100 ms; capped by --n at high concurrency.
    assert bench.rollouts_for(1, 0.1, 2000, 10.0, 50) == 100
    assert bench.rollouts_for(64, 0.1, 2000, 10.0, 50) == 2000
    assert bench.rollouts_for(1, 0.1, 2000, 1.0, 50) == 50
    assert bench.steady_rate([1.0, 1.5, 2.0, 3.0]) == pytest.approx(1.5)
    assert bench.steady_rate([1.0]) == 0.0


def test_quick_keeps_explicit_flags(bench: ModuleType) -> None:
    args = bench.parse_args(["--quick", "--concurrency", "4"])
    assert args.concurrency == [4] and args.seconds == 2.0
    defaults = bench.parse_args([])
    assert defaults.concurrency == [8, 32, 64]
    assert defaults.systems == ["bare aiohttp", "bare openai", "bare litellm", "harness-opt"]
    assert bench.parse_args(["--systems", "ours,litellm"]).systems == ["harness-opt", "bare litellm"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--concurrency", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--systems", "ours,requests"])


def test_ratio_is_the_share_of_the_ideal_rate(bench: ModuleType) -> None:
    point = {"concurrency": 32, "steady_rps": 272.0, "rps": 240.0}
    assert bench.ratio(point, 100.0) == pytest.approx(0.85)  # 272 / (32 / 0.1)
    assert bench.ratio(point, 100.0, steady=False) == pytest.approx(0.75)


def test_the_server_reports_its_most_requests_in_flight(bench: ModuleType) -> None:
    import concurrent.futures

    with bench.LoopbackServer(latency_ms=200) as srv:
        assert srv.max_inflight() == 0
        body = json.dumps({"model": "bench-model", "messages": []}).encode()

        def one(_: int) -> dict:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            try:
                return _post(conn, body)
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            list(pool.map(one, range(5)))
        assert srv.max_inflight() == 5
        assert srv.max_inflight() == 0  # reading resets the high-water mark


@pytest.mark.slow
def test_bench_runs_end_to_end_through_the_real_evaluator(bench: ModuleType, tmp_path: Path) -> None:
    # A few rollouts per system: checks the bench still drives evaluate_async, not the figures.
    assert (
        bench.main(
            ["--concurrency", "2", "--n", "6", "--n-min", "6", "--latency-ms", "5", "--out", str(tmp_path)]
        )
        == 0
    )
    (out,) = tmp_path.glob("eval_throughput-*.json")
    points = json.loads(out.read_text())["points"]
    assert [(p["system"], p["rollouts"], p["failures"]) for p in points] == [
        ("bare aiohttp", 6, 0),
        ("bare openai", 6, 0),
        ("bare litellm", 6, 0),
        ("harness-opt", 6, 0),
    ]
    # The bare clients send both requests at once; a loaded machine may let harness-opt's first
    # rollout finish before its second child is forked, so only "at most C" holds there.
    assert [p["max_inflight"] for p in points[:3]] == [2, 2, 2]
    assert 1 <= points[3]["max_inflight"] <= 2
