"""An LLM judge: a model grades an output against a rubric when no exact answer can be written down.

A judge is not deterministic (two calls may disagree), so a suite using one sets
`deterministic_scorer = False` and `doctor` says so. The judge call goes through the same `LLMClient`
as agents (retries, cache, local models) but its cost is the suite's, never the harness's. It runs in
the rollout's cache scope, so each trial is judged on its own (never served another trial's verdict).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import threading
from typing import Any

from harness_opt.llm.types import LLMRequest
from harness_opt.records import Score, Task
from harness_opt.suites.scorers import _shown

JUDGE_SYSTEM = (
    "You grade the answer of a customer-support agent against a rubric. Reply with one JSON object "
    'and nothing else: {"score": <number from 0 to 1>, "reason": "<one sentence>"}.'
)
_SCORE = re.compile(r'"?score"?\s*[:=]\s*([01](?:\.\d+)?)')


def judge_messages(rubric: str, task: Task, output: Any) -> list[dict[str, Any]]:
    """The judge's prompt: rubric, the task input, the expected outcome when there is one, the output."""
    parts = [f"Rubric:\n{rubric.strip()}", f"Task input:\n{json.dumps(task.input, default=str)}"]
    if task.expected is not None:
        parts.append(f"Expected outcome:\n{json.dumps(task.expected, default=str)}")
    parts.append(f"Agent's answer:\n{output if isinstance(output, str) else json.dumps(output, default=str)}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> tuple[float, str] | None:
    """(score, reason) from the judge's reply; None when it holds no score."""
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start : end + 1])
            if isinstance(data, dict) and isinstance(data.get("score"), int | float):
                return min(max(float(data["score"]), 0.0), 1.0), str(data.get("reason", ""))
        except ValueError:
            pass
    match = _SCORE.search(text)
    return (float(match[1]), "") if match else None


class LLMJudge:
    """`[scorer] kind = "judge"`: score = the judge model's grade; passed when it reaches `threshold`."""

    def __init__(self, rubric: str, model: str, *, threshold: float = 0.5, max_tokens: int = 128) -> None:
        self.rubric = rubric
        self.model = model
        self.threshold = threshold
        self.max_tokens = max_tokens
        self._client: Any = None

    def _complete(self, request: LLMRequest) -> str:
        from harness_opt.llm.client import LLMClient

        if self._client is None:
            self._client = LLMClient()
        box: dict[str, Any] = {}

        # Scorers are called synchronously from inside the evaluator's event loop, so the judge's
        # async call runs to completion on its own loop in a helper thread, in this thread's context
        # (the rollout's cache scope travels with it).
        context = contextvars.copy_context()

        def work() -> None:
            try:
                box["result"] = context.run(asyncio.run, self._client.complete(request))
            except BaseException as exc:  # handed back to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=work, name="harness-opt-judge")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return str(box["result"].message.get("content") or "")

    def __call__(self, task: Task, output: Any) -> Score:
        request = LLMRequest(
            model=self.model,
            # A task may carry its own rubric (regression tasks from `traces to-tasks` do).
            messages=judge_messages(str(task.metadata.get("rubric") or self.rubric), task, output),
            params={"temperature": 0, "max_tokens": self.max_tokens},
        )
        try:
            reply = self._complete(request)
        except Exception as exc:  # the judge failing is a 0 with the reason, never a crash
            return Score(score=0.0, passed=False, feedback=f"judge call failed: {type(exc).__name__}: {exc}")
        verdict = parse_verdict(reply)
        if verdict is None:
            return Score(score=0.0, passed=False, feedback=f"judge gave no score: {_shown(reply)}")
        score, reason = verdict
        return Score(score=score, passed=score >= self.threshold, feedback=f"judge {score:.2f}: {reason}")
