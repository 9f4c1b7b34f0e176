"""`OptimizeConfig`: everything an optimize run needs, stored in the ledger so `--resume` can rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from harness_opt.search.budget import Budget

AGENT_HARNESS_EDITABLE: tuple[str, ...] = (
    "agent.py",
    "prompts/*",
    "tools.json",
    "agent_config.json",
    "data/*",
    "harness.toml",
)
"""What a proposer may change in an agent-harness version. `[runtime.limits]` in harness.toml is
restored from the parent whatever the proposal says: a candidate may not buy itself more time."""


class OptimizeConfig(BaseModel):
    harness: Path = Field(description="Seed harness version directory.")
    suite: Path = Field(description="Suite folder.")
    proposer: Literal["operators", "llm", "agent"] = "operators"
    meta_model: str | None = Field(default=None, description="litellm model of the llm proposer.")
    agent_cmd: str | None = Field(default=None, description="Command of the agent proposer.")
    budget: Budget = Field(default_factory=lambda: Budget(wall_s=20 * 60))
    parallel: int = Field(default=1, ge=1, le=16, description="Candidates proposed per iteration.")
    trials: int = Field(default=1, ge=1, description="Trials per val task.")
    concurrency: int = Field(default=4, ge=1)
    model: str | None = Field(default=None, description="Task model; default from harness.toml.")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    acceptance: Literal["paired", "greedy"] = "paired"
    train_sample: int = Field(default=40, ge=1, description="Train tasks run per iteration for evidence.")
    val_limit: int | None = Field(default=None, ge=1, description="Use the first N val tasks only.")
    test_limit: int | None = Field(default=None, ge=1, description="Use the first N test tasks only.")
    skip_test: bool = Field(default=False, description="Do not evaluate the sealed test split at the end.")
    isolation: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    seed: int = 0
    stop_file: Path | None = Field(default=None, description="Touch this file to end the run cleanly.")
    max_invalid_streak: int = Field(default=5, ge=1, description="Stop after this many invalid rounds.")
    force: bool = Field(default=False, description="Start even when doctor reports a FAIL.")
    evidence: list[Path] = Field(default_factory=list, description="Extra imported traces for proposers.")
    executor: Literal["local", "ray"] = Field(
        default="local", description="Training domain: where experiments run (local GPUs/CPU or Ray)."
    )
    address: str | None = Field(default=None, description="Ray cluster address for --executor ray.")
