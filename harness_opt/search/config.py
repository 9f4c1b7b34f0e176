"""`OptimizeConfig`: everything an optimize run needs, stored in the ledger so `--resume` can rebuild it.

Each field is also an option of `harness-opt optimize` (name, help, default and choices come from
here; see `cli/options.py`), and each option a `HARNESS_OPT_<OPTION>` environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from harness_opt.llm.client import LLMConfig
from harness_opt.search.budget import Budget, Duration

AGENT_HARNESS_EDITABLE: tuple[str, ...] = (
    "agent.py",
    "prompts/*",
    "tools.json",
    "agent_config.json",
    "data/*",
    "harness.toml",
)
"""What a proposer may change in an agent-harness version. `[runtime]` in harness.toml is frozen:
a candidate that changes it is invalid (it may not buy itself more time or steps)."""


class OptimizeConfig(BaseModel):
    harness: Path = Field(description="Seed harness version dir, e.g. harnesses/banking77/v0001.")
    suite: Path = Field(description="Suite folder (omit when HARNESS is a training suite folder).")
    proposer: Literal["operators", "llm", "agent"] = Field(
        default="operators",
        description="operators (offline), llm (a meta-model) or agent (a coding-agent command).",
    )
    meta_model: str | None = Field(default=None, description="litellm model of the llm proposer.")
    proposer_mode: Literal["tools", "single"] = Field(
        default="tools",
        description="llm proposer: tools (an agent that lists, greps and reads the history of every "
        "candidate and writes files) or single (one call over a budgeted cut of the traces; cheaper).",
    )
    meta_context: int | None = Field(
        default=None,
        ge=1024,
        description="The meta-model's context window in tokens (default: litellm's model info, the "
        "local model's context, else 32000).",
    )
    meta_steps: int = Field(
        default=16, ge=2, le=200, description="llm proposer, tools mode: tool calls per proposal."
    )
    agent_cmd: str | None = Field(
        default=None,
        description="Command of the agent proposer; {workdir} and {prompt} are filled in.",
    )
    agent_preset: Literal["claude", "codex", "gemini", "aider", "opencode"] | None = Field(
        default=None,
        description="Coding-agent CLI run as the agent proposer with its non-interactive flags "
        "(docs/proposers.md); --agent-cmd runs any other.",
    )
    agent_timeout: Duration = Field(
        default=900.0, gt=0, description="agent proposer: time one candidate may take, e.g. 15m."
    )
    history_train: int = Field(
        default=10,
        ge=0,
        description="llm/agent proposers: train tasks each valid candidate also runs, so the history "
        "holds its train traces and per-task wins (0: its one validation task only).",
    )
    meta_history: Literal["run", "agent"] = Field(
        default="run",
        description="The history the llm/agent proposers read: this run's candidates, or those of "
        "every optimize run of the agent in the ledger.",
    )
    max_checks: int = Field(
        default=5,
        ge=0,
        description="llm/agent proposers: `check` runs (one train task each) a proposal may make.",
    )
    budget: Budget = Field(default_factory=lambda: Budget(wall_s=20 * 60))
    parallel: int = Field(default=1, ge=1, le=16, description="Candidates proposed per iteration.")
    trials: int = Field(default=1, ge=1, description="Trials per val task.")
    concurrency: int = Field(default=4, ge=1, description="Rollouts in flight at once.")
    model: str | None = Field(default=None, description="Task model; default from harness.toml.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level of the paired test.")
    acceptance: Literal["paired", "scalar", "greedy"] | None = Field(
        default=None,
        description="Acceptance rule; default: the domain's (paired for agents, scalar for training).",
    )
    train_sample: int = Field(default=40, ge=1, description="Train tasks run per iteration for evidence.")
    val_limit: int | None = Field(default=None, ge=1, description="Use the first N val tasks only.")
    test_limit: int | None = Field(default=None, ge=1, description="Use the first N test tasks at the end.")
    skip_test: bool = Field(default=False, description="Leave the sealed test split untouched.")
    isolation: Literal["auto", "bwrap", "unshare", "none"] = Field(
        default="auto", description="Sandbox of harness code."
    )
    max_infra_failures: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of an evaluation's rollouts that may fail for infrastructure reasons (llm_error, "
        "sandbox, scorer) before it is degraded: a degraded candidate is not judged, a degraded baseline "
        "stops the run, and a run degraded overall ends with status degraded (exit code 3).",
    )
    user_model: str | None = Field(
        default=None,
        description="Model of the simulated user in conversational suites (tau2-retail); default from "
        "suite.toml.",
    )
    judge_model: str | None = Field(
        default=None,
        description="Judge of suites scored by a model (tau2-retail: the NL-assertion judge): a model, "
        "'agent' or 'off' (scores are then unofficial); default from suite.toml.",
    )
    data: Path | None = Field(
        default=None,
        description="Data folder of a suite whose data is not in the repo (tau2-retail: the tau2 data "
        "folder; also HARNESS_OPT_TAU2_DATA).",
    )
    seed: int = Field(default=0, description="Seed for sampling and proposers.")
    stop_file: Path | None = Field(default=None, description="Touch this file to end the run cleanly.")
    max_invalid_streak: int = Field(
        default=5,
        ge=1,
        description="Stop after this many rounds in a row without a valid candidate (all invalid, or "
        "the proposer failed).",
    )
    force: bool = Field(default=False, description="Start even when `harness-opt doctor` reports a FAIL.")
    evidence: list[Path] = Field(
        default_factory=list,
        description="Imported production traces (traces/imported/...) shown to the llm and agent "
        "proposers; acceptance is still decided on the suite.",
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="Where rollouts (agent harness: sandboxed on each node, keys and ledger here) or "
        "training runs (local GPUs/CPU) go: here, or on a Ray cluster.",
    )
    address: str | None = Field(
        default=None,
        description="Ray cluster for --executor ray: host:port of its head, or auto on one of its "
        "nodes; default: a Ray started on this machine (agent harness) or auto (training).",
    )
    llm: LLMConfig = Field(
        default_factory=LLMConfig, description="How task-model calls are made (timeouts, endpoint)."
    )
