"""Noise-aware acceptance: a candidate replaces the incumbent only when its gain is real.

Candidate and incumbent are compared on the same val tasks and trials, task by task (a paired test
removes the between-task variance that dominates small suites). Accept when the mean gain is positive,
significant at `alpha`, and larger than the noise measured by re-running the baseline; or when the two
are equal within that noise and the candidate is simpler. Strategies are one-method objects also
nameable by a string (`"paired"`, `"greedy"`), so a study can compare them.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from harness_opt.errors import UserError
from harness_opt.evaluate.stats import paired_test


class Decision(BaseModel):
    accepted: bool
    delta: float
    p_value: float | None
    ci: tuple[float, float]
    n_tasks: int
    reason: str


class AcceptanceRule(Protocol):
    name: str

    def decide(
        self, incumbent: dict[str, float], candidate: dict[str, float], *, noise: float, simpler: bool
    ) -> Decision: ...


def task_means(scores: dict[str, list[float]]) -> dict[str, float]:
    """Trials of one task are averaged first: the task, not the rollout, is the unit of evidence."""
    return {task: sum(v) / len(v) for task, v in scores.items() if v}


class PairedAcceptance:
    name = "paired"

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def decide(
        self, incumbent: dict[str, float], candidate: dict[str, float], *, noise: float, simpler: bool
    ) -> Decision:
        common = sorted(set(incumbent) & set(candidate))
        if not common:
            return Decision(
                accepted=False,
                delta=0.0,
                p_value=None,
                ci=(0.0, 0.0),
                n_tasks=0,
                reason="no common val tasks to compare",
            )
        test = paired_test({t: incumbent[t] for t in common}, {t: candidate[t] for t in common})
        delta, p = test.delta, test.p_value
        ci = (test.ci_lo, test.ci_hi)

        def verdict(accepted: bool, reason: str) -> Decision:
            return Decision(
                accepted=accepted, delta=delta, p_value=p, ci=ci, n_tasks=len(common), reason=reason
            )

        if delta > noise and p < self.alpha:
            return verdict(
                True, f"significant gain {delta:+.3f} (p={p:.3g}, noise {noise:.3f}, {test.method})"
            )
        if abs(delta) <= noise and simpler:
            return verdict(True, f"equal within noise ({delta:+.3f}, noise {noise:.3f}) and simpler")
        if delta <= 0:
            why = f"no gain ({delta:+.3f}, p={p:.3g})"
        elif delta <= noise:
            why = f"gain {delta:+.3f} is within the noise ({noise:.3f})"
        else:
            why = f"gain {delta:+.3f} not significant (p={p:.3g} >= {self.alpha})"
        return verdict(False, why)


class GreedyAcceptance:
    """Accept any positive mean gain. Kept for comparison studies only: it accepts noise."""

    name = "greedy"

    def decide(
        self, incumbent: dict[str, float], candidate: dict[str, float], *, noise: float, simpler: bool
    ) -> Decision:
        common = sorted(set(incumbent) & set(candidate))
        delta = (sum(candidate[t] - incumbent[t] for t in common) / len(common)) if common else 0.0
        return Decision(
            accepted=delta > 0,
            delta=delta,
            p_value=None,
            ci=(delta, delta),
            n_tasks=len(common),
            reason=f"greedy: delta {delta:+.3f}",
        )


def acceptance_rule(name: str, alpha: float = 0.05) -> AcceptanceRule:
    if name == "paired":
        return PairedAcceptance(alpha)
    if name == "greedy":
        return GreedyAcceptance()
    raise UserError(f"unknown acceptance rule '{name}'", fix="use 'paired' (default) or 'greedy'")
