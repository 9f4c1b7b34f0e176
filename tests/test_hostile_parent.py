"""Hostile harnesses against the parent process: its keys, its event loop, its memory, its trace files.

The broker holds the API keys and writes the trace and the ledger; a harness must not be able to send
the key elsewhere through model parameters, stall the event loop every rollout shares, grow the
parent past its limits, or abort the evaluation (and leave its run row `running`) with one odd value.
Every test asserts the effect did not happen; none skips.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness_opt.errors import HarnessError
from harness_opt.evaluate import evaluator
from harness_opt.evaluate.evaluator import EvalConfig, evaluate, evaluate_async
from harness_opt.evaluate.tracestore import TRACE_LINE_BYTES
from harness_opt.harness.version import HarnessVersion
from harness_opt.home import traces_dir
from harness_opt.ledger import Ledger
from harness_opt.llm.params import MAX_CALL_TOKENS
from harness_opt.records import LogEvent
from harness_opt.suites.loader import load_suite
from harness_opt.testing import scripted_model
from tests.support.hostile import SEED, SUITE_DIR, answer_gold, prepare, run_attack
from tests.support.runtime import Listener

MARK = "truncated by harness-opt"


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_llm_params_exfil(
    tmp_path: Path, suite: Any, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-canary-exfil")
    listener = Listener()
    try:
        out = run_attack("llm_params_exfil", tmp_path, suite, gold, port=listener.port)
    finally:
        listener.close()
    assert listener.accepted == 0 and b"canary" not in listener.received  # no request, no key, no task
    assert out.model.calls == []  # and nothing went to the real model either
    assert out.errors() == ["crash", "crash"]
    assert all("'api_base' is not allowed" in (r.error_detail or "") for r in out.result.rollouts)


def test_llm_params_greedy(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("llm_params_greedy", tmp_path, suite, gold)
    assert len(out.model.calls) == 2  # one call per rollout went out: the max_tokens one
    for call in out.model.calls:
        assert call.params.get("max_tokens") is not None and call.params["max_tokens"] <= MAX_CALL_TOKENS
        assert call.params.get("n", 1) == 1
    assert out.errors() == ["crash", "crash"]  # n=64 ended each rollout, naming the parameter
    assert all("'n' is fixed at 1" in (r.error_detail or "") for r in out.result.rollouts)


def test_harness_toml_params_do_not_load(tmp_path: Path) -> None:
    version = tmp_path / "v"
    shutil.copytree(SEED, version)
    toml = (version / "harness.toml").read_text()
    assert "params = { temperature = 0" in toml
    (version / "harness.toml").write_text(
        toml.replace(
            "params = { temperature = 0",
            'params = { api_base = "http://127.0.0.1:9/v1", custom_llm_provider = "openai", temperature = 0',
        )
    )
    with pytest.raises(HarnessError, match="'api_base' is not allowed") as err:
        HarnessVersion.load(version)
    assert "harness.toml" in (err.value.where or "")


def test_deep_payload(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("deep_payload", tmp_path, suite, gold)  # it used to abort the whole evaluation
    assert out.errors() == ["invalid_output", "invalid_output"]
    run = Ledger().query("SELECT status FROM runs WHERE run_id = ?", [out.result.run_id])
    assert run == [{"status": "ok"}]
    for trace in out.traces:
        deep_log = next(e for e in trace.events if isinstance(e, LogEvent) and e.message == "deep log")
        assert MARK in str(deep_log.data)  # kept, cut at a readable depth with a marker


def test_log_flood_big(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("log_flood_big", tmp_path, suite, gold)
    assert set(out.errors()) <= {"invalid_output", "timeout"}  # a 5 MB output is not scored
    lines = [p.read_bytes() for p in traces_dir().rglob("*.jsonl")]
    assert lines and max(len(line) for text in lines for line in text.splitlines()) < TRACE_LINE_BYTES
    for trace in out.traces:
        logs = [e for e in trace.events if isinstance(e, LogEvent) and e.message.startswith("flood")]
        assert logs and all(MARK in str(e.data) for e in logs)


def test_render_bomb_never_blocks_the_parent(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    version_dir, _ = prepare("render_bomb", tmp_path)
    version = HarnessVersion.load(version_dir)
    lags: list[float] = []

    async def watch(stop: asyncio.Event) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - t0 - 0.02)

    async def go() -> Any:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        with scripted_model("render-bomb", answer_gold(gold)) as model:
            config = EvalConfig(split="val", limit=2, model=model.model, isolation="bwrap", concurrency=2)
            try:
                return await evaluate_async(version, suite, config)
            finally:
                stop.set()
                await watcher

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = asyncio.run(go())
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert [r.error for r in result.rollouts] == ["timeout", "timeout"]  # the spinning template, cut off
    assert max(lags) < 1.0, f"the event loop stalled {max(lags):.1f}s while templates rendered"
    assert grown_mb < 300, f"the parent grew {grown_mb:.0f} MB"


@pytest.mark.parametrize("where", ["tools.json", "harness.toml", "prompts/system.j2"])
def test_deeply_nested_version_files_are_a_load_error(where: str, tmp_path: Path) -> None:
    version = tmp_path / "v"
    shutil.copytree(SEED, version)
    path = version / where
    if where == "tools.json":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif where == "harness.toml":
        path.write_text(path.read_text().replace("[model]", "[model]\ndeep = " + "[" * 5000 + "]" * 5000, 1))
    else:
        path.write_text("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")
    with pytest.raises(HarnessError, match="nested too deeply") as err:
        HarnessVersion.load(version)  # a RecursionError escaped every caller before
    assert str(path) in (err.value.where or "")


def test_a_crash_never_leaves_the_run_running(
    suite: Any, gold: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(rollouts: Any, **_: Any) -> Any:
        raise RuntimeError("summary exploded")

    monkeypatch.setattr(evaluator, "summarize", broken)
    config = EvalConfig(split="val", limit=1, isolation="bwrap")
    exploded = pytest.raises(RuntimeError, match="exploded")
    with scripted_model("crash-run", answer_gold(gold)) as model, exploded:
        evaluate(SEED, suite, config.model_copy(update={"model": model.model}))
    runs = Ledger().query("SELECT status, summary FROM runs")
    assert [r["status"] for r in runs] == ["failed"]
    assert "summary exploded" in str(runs[0]["summary"])
