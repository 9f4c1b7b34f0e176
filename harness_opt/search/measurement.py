"""`Measurement`: what one evaluation of one version found, in its domain's units, for the loop to judge.

The loop never looks inside a domain: an agent harness measures mean score per val task, the
training domain one metric value per run, and both reach acceptance, the display, the ledger's
decision rows and the progress plot as the same record.
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel, Field

from harness_opt.search.records import SplitFigures


class Measurement(BaseModel):
    """One version measured: per-unit values (the evidence acceptance compares) and what it cost."""

    version_hash: str
    label: str
    values: dict[str, float] = Field(
        default_factory=dict,
        description="Unit -> value: a val task's mean score over trials, or one training run's metric.",
    )
    score: float | None = Field(default=None, description="Headline figure; default: mean of `values`.")
    ci: tuple[float, float] | None = Field(
        default=None, description="95% CI of the score; default: the range of `values`."
    )
    cost_usd: float = Field(default=0.0, description="What running the version cost on these units.")
    tokens_per_rollout: float = Field(default=0.0, description="Model tokens one rollout spends.")
    invalid: str | None = Field(
        default=None, description="Refused before its evaluation (scan, smoke test): why."
    )
    failure: str | None = Field(default=None, description="Evaluated and failed (a crashed run): why.")
    flagged: str | None = Field(
        default=None, description="Evaluated, but may never become the incumbent (the scan's flag): why."
    )
    degraded: str | None = Field(
        default=None,
        description="Evaluated with too many infrastructure failures (model outage, sandbox): why. The "
        "acceptance test refuses to judge on it.",
    )

    @property
    def mean(self) -> float:
        if self.score is not None:
            return self.score
        return statistics.fmean(self.values.values()) if self.values else 0.0

    @property
    def usable(self) -> bool:
        """Whether acceptance may compare it: evaluated, not failed, with values."""
        return self.invalid is None and self.failure is None and bool(self.values)

    def figures(self) -> SplitFigures:
        values = list(self.values.values())
        if self.ci is not None:
            return SplitFigures(score=self.mean, ci=self.ci, n_tasks=len(values))
        spread = (min(values), max(values)) if values else (0.0, 0.0)
        return SplitFigures(score=self.mean, ci=spread, n_tasks=len(values), interval="range")

    def combined(self, other: Measurement) -> Measurement:
        """This measurement and another of the same version on other units (another seed) as one."""
        overlap = set(self.values) & set(other.values)
        if other.version_hash != self.version_hash or overlap:
            raise ValueError(f"cannot combine measurements of {self.label} over units {sorted(overlap)}")
        return self.model_copy(
            update={
                "values": {**self.values, **other.values},
                "score": None,
                "ci": None,
                "cost_usd": self.cost_usd + other.cost_usd,
                "failure": self.failure or other.failure,
                "degraded": self.degraded or other.degraded,
            }
        )
