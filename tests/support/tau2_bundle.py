"""A τ² leaderboard bundle built directly (no rollouts): every retail task of τ²'s data with k
simulations, rewards chosen by the test, figures computed as the exporter computes them. Fast enough
to be mutated once per defect a validator must catch."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from harness_opt.export.tau2_format import ContactInfo, Methodology, Results, Submission, Verification
from harness_opt.export.tau2_metrics import compute_metrics, leaderboard_figures
from harness_opt.export.tau2_validate import load_task_set
from harness_opt.suites.tau2_models import (
    AgentInfo,
    AssistantMessage,
    EnvironmentInfo,
    Info,
    RewardInfo,
    SimulationRun,
    Task,
    ToolSignature,
    UserInfo,
    UserMessage,
)
from harness_opt.suites.tau2_models import Results as Tau2Results

AGENT = "openai/gpt-4.1"
USER = "openai/gpt-4.1-mini"
DAY = date(2026, 1, 2)


def retail_data(shared: Path) -> Path:
    return shared / "tau2" / "retail"


def task_set(retail: Path) -> dict[str, Task]:
    return load_task_set(retail / "tasks.json", retail / "split_tasks.json")


def results(
    retail: Path, trials: int = 4, reward: Callable[[str, int], float] = lambda task, trial: 1.0
) -> Tau2Results:
    raw = json.loads((retail / "tasks.json").read_text(encoding="utf-8"))
    sims = []
    for record in raw:
        basis = record["evaluation_criteria"]["reward_basis"]
        for trial in range(trials):
            value = reward(str(record["id"]), trial)
            parts = {b: value if b == "DB" else 1.0 for b in basis}
            sims.append(
                SimulationRun(
                    id=f"sim-{record['id']}-{trial}",
                    task_id=str(record["id"]),
                    timestamp="2026-01-02T00:00:00",
                    start_time="2026-01-02T00:00:00",
                    end_time="2026-01-02T00:01:00",
                    duration=60.0,
                    termination_reason="user_stop",
                    agent_cost=0.001 * (1 + trial) + 0.0001 * len(sims),
                    user_cost=0.0005,
                    trial=trial,
                    reward_info=RewardInfo(reward=value, reward_basis=basis, reward_breakdown=parts),
                    messages=[
                        AssistantMessage(role="assistant", content="Hi! How can I help you today?"),
                        UserMessage(role="user", content="###STOP###"),
                    ],
                )
            )
    return Tau2Results(
        timestamp="2026-01-02T00:00:00",
        info=Info(
            git_commit="test",
            num_trials=trials,
            max_steps=130,
            max_errors=10,
            user_info=UserInfo(implementation="user", llm=USER, llm_args={"temperature": 0}),
            agent_info=AgentInfo(implementation="agent", llm=AGENT, llm_args={"temperature": 0}),
            environment_info=EnvironmentInfo(
                domain_name="retail",
                policy="policy",
                tool_defs={
                    "calculate": ToolSignature(name="calculate", doc="Calculate.", params={"type": "object"})
                },
            ),
        ),
        tasks=[Task.model_validate(r) for r in raw],
        simulations=sims,
    )


def write(
    root: Path,
    trajectories: Tau2Results,
    name: str = "gpt-4.1_retail_gpt-4.1-mini_4trials.json",
    **changes: Any,
) -> Path:
    """Write submission.json (figures from `trajectories`, then `changes`) and the trajectories file."""
    figures = leaderboard_figures(compute_metrics(trajectories))
    submission = Submission(
        model_name=AGENT,
        model_organization="OpenAI",
        submitting_organization="Lab",
        submission_date=DAY,
        contact_info=ContactInfo(email="lab@example.com"),
        results=Results(retail=figures),
        trajectories_available=True,
        trajectory_files={"retail": name},
        methodology=Methodology(user_simulator=USER, verification=Verification(omitted_questions=False)),
    )
    raw = submission.model_dump(mode="json", exclude_none=True)
    raw.update(changes)
    folder = root / f"openai-gpt-4-1_openai_{DAY.isoformat()}"
    (folder / "trajectories").mkdir(parents=True, exist_ok=True)
    (folder / "trajectories" / name).write_text(
        trajectories.model_dump_json(exclude_unset=True), encoding="utf-8"
    )
    (folder / "submission.json").write_text(json.dumps(raw), encoding="utf-8")
    return folder
