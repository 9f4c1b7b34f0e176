"""A composed operators candidate runs in the real sandbox (fork server, broker) with a fake model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from harness_opt.llm.types import LLMRequest, LLMResult
from harness_opt.propose.operators import OperatorsProposer
from harness_opt.records import LLMCallEvent, LogEvent
from harness_opt.runtime.broker import HarnessRunner, RolloutResult
from harness_opt.suites.base import NoTools
from tests.support.operators import apply, proposal_input, seed_version, train_tasks


def test_composed_candidate_runs_in_the_sandbox(tmp_path: Path) -> None:
    version = seed_version(tmp_path)
    for name in ("constrained_output", "retrieval_demos", "self_consistency"):
        proposals = {p.meta["operator"]: p for p in OperatorsProposer().propose(proposal_input(version), 50)}
        version = apply(version, proposals[name])
    config = json.loads((version.path / "agent_config.json").read_text())
    assert (config["constrained"], config["retrieval_k"], config["vote_n"]) == (True, 6, 3)

    requests: list[LLMRequest] = []

    async def llm(req: LLMRequest) -> LLMResult:
        requests.append(req)
        enum = req.params["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
        demo = json.loads(req.messages[-2]["content"])["label"]  # copy the nearest demo's label
        assert demo in enum
        message = {"role": "assistant", "content": json.dumps({"label": demo})}
        return LLMResult(message=message, model=req.model)

    task = list(train_tasks())[2468]

    async def go() -> RolloutResult:
        async with HarnessRunner(version, model="fake/model") as runner:
            return await runner.run(task, NoTools(), llm)

    result = asyncio.run(go())
    assert result.error is None, result.error_detail
    assert result.output == task.expected
    calls = [e for e in result.events if isinstance(e, LLMCallEvent)]
    assert len(calls) == 3 == len(requests)
    assert [c.params.get("seed") for c in calls] == [None, 1, 2]
    votes = [e for e in result.events if isinstance(e, LogEvent) and e.message == "votes"]
    assert votes and votes[0].data["answers"] == [task.expected] * 3
