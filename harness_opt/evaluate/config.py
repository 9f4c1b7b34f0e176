"""`EvalConfig`: how to evaluate, in a module light enough for the CLI to build its options from.

The evaluator itself pulls in the sandbox runtime, the ledger and the model client; the command
line only needs the field names, help and defaults, so they live here (re-exported by the
evaluator, where the library's users import them from).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from harness_opt.evaluate.summary import DEFAULT_MAX_INFRA_FAILURES
from harness_opt.llm.client import LLMConfig


class EvalConfig(BaseModel):
    """How to evaluate. Every field is also a CLI option (and a HARNESS_OPT_* env var)."""

    split: str = Field(default="val", description="train, val or test (test only when allow_test).")
    trials: int = Field(default=1, ge=1, description="Rollouts per task (k of pass^k).")
    model: str | None = Field(default=None, description="litellm model string; default: harness.toml.")
    concurrency: int = Field(default=4, ge=1, le=512, description="Rollouts in flight at once.")
    limit: int | None = Field(default=None, ge=1, description="First N tasks of the split only.")
    task_ids: list[str] | None = Field(default=None, description="Only these tasks (after limit).")
    trial_offset: int = Field(default=0, ge=0, description="Trials are numbered from here (noise reruns).")
    isolation: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    llm_cache: bool = Field(default=True, description="Serve deterministic model calls from disk.")
    reuse: bool = Field(default=True, description="Serve already-evaluated rollouts from the ledger.")
    allow_test: bool = Field(default=False, description="The sealed test split needs explicit consent.")
    max_infra_failures: float = Field(
        default=DEFAULT_MAX_INFRA_FAILURES,
        ge=0,
        le=1,
        description="Share of rollouts that may fail for infrastructure reasons (llm_error, sandbox, "
        "scorer) before the evaluation is degraded (status degraded, exit code 3).",
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="Where rollouts run: here, or as Ray tasks on a cluster's nodes (each node sandboxes "
        "them as here; keys, scoring, traces and the ledger stay on this machine).",
    )
    address: str | None = Field(
        default=None,
        description="Ray cluster for --executor ray: host:port of its head (as `ray start --head` "
        "prints), or auto on one of its nodes; default: a Ray started on this machine.",
    )
    llm: LLMConfig = Field(default_factory=LLMConfig)
