"""Red team: a harness that fools the score instead of earning it.

An infrastructure failure (`records.INFRA_ERRORS`: llm_error, sandbox, scorer) is never scored: it is
counted apart and re-run. A harness that could report one itself would drop the tasks it is unsure of
from its mean, up to the 5% an evaluation tolerates before it is degraded. These tests never skip.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness_opt.harness.manifest import RolloutLimits
from harness_opt.llm.client import LLMCallError
from harness_opt.records import Task, is_infra_error
from harness_opt.runtime.session import RolloutSession
from harness_opt.suites.base import NoTools
from harness_opt.suites.loader import load_suite
from tests.support.hostile import SUITE_DIR, run_attack
from tests.support.runtime import Listener


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_a_harness_cannot_report_an_infrastructure_failure(
    tmp_path: Path, suite: Any, gold: dict[str, str]
) -> None:
    out = run_attack("forge_infra", tmp_path, suite, gold, limit=6, concurrency=2)
    errors = out.errors()
    assert all(e is not None for e in errors), errors  # every rollout declined
    assert not any(is_infra_error(e) for e in errors), errors  # ...and each is the version's failure
    assert out.result.summary.n_scored == 6
    assert out.result.summary.infra_failures == {}
    assert out.result.degraded is None


class _Frames:
    """A child's frames as the broker's FrameProtocol would hand them over, in order."""

    def __init__(self, *frames: Any) -> None:
        self.frames = list(frames)
        self.sent: list[bytes] = []

    async def recv(self) -> Any:
        return self.frames.pop(0) if self.frames else None

    def send_raw(self, data: bytes) -> None:
        self.sent.append(data)


def _serve(*frames: Any) -> tuple[Any, str | None, str | None]:
    session = RolloutSession(
        Task(id="t1", input={"text": "x"}, expected="y"),
        NoTools(),
        _no_model,
        model="scripted/none",
        model_params={},
        limits=RolloutLimits(),
    )
    return asyncio.run(session.serve(_Frames(*frames)))  # type: ignore[arg-type]


async def _no_model(request: Any) -> Any:
    raise AssertionError("no model call expected")


@pytest.mark.parametrize("late", ["sandbox", "llm_error", "scorer"])
def test_only_an_unconfined_child_may_report_a_sandbox_failure(late: str) -> None:
    # the zygote's own report, before harness code ran: an infrastructure failure
    assert _serve({"op": "sandbox", "detail": "mount failed"})[1:] == ("sandbox", "mount failed")
    # the same words after the child said it is confined come from harness code: the version's failure
    _, kind, detail = _serve({"op": "confined"}, {"op": late, "detail": "declined"})
    assert kind == "crash" and late in str(detail)
    # a child that skips the confinement report is not believed either
    assert _serve({"op": "result", "output": "y"})[1] == "crash"
    assert _serve({"op": "confined"}, {"op": "result", "output": "y"}) == ("y", None, None)


def test_llm_content_parts_that_a_provider_adapter_would_download_are_refused(
    tmp_path: Path, suite: Any, gold: dict[str, str]
) -> None:
    """litellm downloads image_url (Gemini, Bedrock, Ollama adapters) and a file part's http file_id
    (OpenAI) in the parent, with the URL the harness wrote: the task text could leave for any host.
    Only text parts reach the model; the rest end the call with an error naming the part."""
    listener = Listener()
    try:
        out = run_attack("llm_content_urls", tmp_path, suite, gold, port=listener.port)
    finally:
        listener.close()
    assert listener.accepted == 0
    for item in out.decoded():
        refused = {k: v for k, v in item["outcome"].items() if v.startswith("refused")}
        assert sorted(refused) == sorted(set(item["outcome"]) - {"text parts"}), item
        assert all("content part" in v for v in refused.values()), refused
        assert item["outcome"]["text parts"] == "sent"
    assert out.errors() == [None, None]
    sent = [str(call.messages) for call in out.model.calls]
    assert sent and not any("/leak?q=" in m for m in sent)  # the model saw the text parts only


class _Customer:
    """A suite environment with a simulated user whose model call fails as `kind` says."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        raise AssertionError("no tools here")

    async def user_turn(self, message: str) -> Any:
        raise LLMCallError("scripted/user", 1, ValueError(f"{len(message)} chars"), kind=self.kind)


def _say(kind: str) -> tuple[Any, str | None, str | None]:
    session = RolloutSession(
        Task(id="t1", input={"text": "x"}, expected="y"),
        _Customer(kind),
        _no_model,
        model="scripted/none",
        model_params={},
        limits=RolloutLimits(),
    )
    frames = _Frames({"op": "confined"}, {"op": "say", "message": "x" * 8_000_000})
    return asyncio.run(session.serve(frames))  # type: ignore[arg-type]


def test_a_message_that_overflows_the_simulated_user_is_the_versions_failure() -> None:
    """ctx.say("x" * 8 MB) overflowed the simulated user's context and the rollout was recorded as
    `llm_error`, an infrastructure failure: a τ² harness could drop any task from its score that way."""
    _, error, _ = _say("context_overflow")
    assert error == "context_overflow" and not is_infra_error(error)


@pytest.mark.parametrize("kind", ["server_error", "bad_request"])
def test_a_simulated_user_outage_or_refusal_is_still_the_infrastructures(kind: str) -> None:
    """An outage, or a request the user model refuses (its own settings, test_say's dead user)."""
    assert _say(kind)[1] == "llm_error"
