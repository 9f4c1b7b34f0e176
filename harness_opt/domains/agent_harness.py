"""The agent-harness domain: prompts + tools + agent.py, evaluated in the sandbox on suite tasks.

It wraps what exists (suite loader, evaluator, trust scan, the paired optimize loop) behind the
Domain protocol; the behaviour of the agent-harness loop is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from harness_opt.harness.version import HarnessVersion
from harness_opt.records import Rollout, Task, Trace
from harness_opt.search.config import AGENT_HARNESS_EDITABLE
from harness_opt.suites.base import Suite


@dataclass
class AgentHarnessDomain:
    name: str = "agent-harness"
    editable: tuple[str, ...] = AGENT_HARNESS_EDITABLE
    score_direction: Literal["max", "min"] = "max"

    def load_suite(self, path: Path) -> Suite:
        from harness_opt.suites.loader import load_suite

        return load_suite(path)

    def outside_editable(self, edits: dict[str, str | None]) -> list[str]:
        return sorted(p for p in edits if not any(fnmatch(p, g) for g in self.editable))

    def evaluate(
        self,
        version: HarnessVersion,
        tasks: list[Task],
        trials: int,
        *,
        suite: Suite,
        model: str | None = None,
    ) -> list[Rollout]:
        """Never raises for one task's failure: the evaluator scores it 0 with the reason."""
        from harness_opt.evaluate.evaluator import EvalConfig, evaluate

        config = EvalConfig(split="val", trials=trials, model=model, task_ids=[t.id for t in tasks])
        return list(evaluate(version, suite, config).rollouts)

    def reflect(self, rollouts: list[Rollout]) -> list[Trace]:
        """The raw traces a proposer reads (train split only: the loop never passes val/test here)."""
        from harness_opt.evaluate.tracestore import read_trace

        return [read_trace(r.trace_ref) for r in rollouts if r.trace_ref]

    def optimizer(self, config: Any, **kwargs: Any) -> Any:
        from harness_opt.search.loop import Optimizer

        return Optimizer(config, domain=self, **kwargs)
