"""Noise-aware acceptance: a candidate replaces the incumbent only when its gain is real.

One protocol, three rules, each nameable by a string so a study can compare them:
- `"paired"` (agent harnesses): candidate and incumbent on the same val tasks and trials, task by task
  (a paired test removes the between-task variance that dominates small suites). Accept when the mean
  gain is positive, significant at `alpha`, and larger than the noise measured by re-running the
  baseline; or when the two are equal within that noise and the candidate is simpler.
- `"scalar"` (training runs): one metric per run; the noise is the spread of the baseline's seeds,
  `max(range, 2 x sample std)`. Keep a candidate when its gain exceeds the noise. A borderline gain
  (between 1x and 2x the noise) asks for one more run with another seed and is kept only if the mean
  of the two still beats the incumbent by more than the noise: one extra run where a lucky seed is
  plausible, none where the gain is clear or absent.
- `"greedy"`: any positive mean gain. For comparison studies only: it accepts noise.

A `Decision.delta` is always the improvement (positive = better), whichever way the metric goes.
"""

from __future__ import annotations

import statistics
from typing import Literal, Protocol

from pydantic import BaseModel

from harness_opt.errors import UserError
from harness_opt.evaluate.stats import paired_test
from harness_opt.harness.version import HarnessVersion
from harness_opt.search.measurement import Measurement

Direction = Literal["max", "min"]


class Decision(BaseModel):
    accepted: bool
    delta: float
    p_value: float | None
    ci: tuple[float, float]
    n_tasks: int
    reason: str
    more: bool = False
    """The rule cannot decide on this evidence: measure the candidate once more (another seed)."""


class Acceptance(Protocol):
    """How a candidate is judged against the incumbent, and how the baseline's noise is measured."""

    name: str

    def reference(self, repeats: list[Measurement]) -> tuple[Measurement, float]:
        """The baseline to compare candidates with, and the noise, from the seed measured repeatedly."""
        ...

    def decide(
        self, incumbent: Measurement, candidate: Measurement, *, noise: float, simpler: bool
    ) -> Decision: ...


def task_means(scores: dict[str, list[float]]) -> dict[str, float]:
    """Trials of one task are averaged first: the task, not the rollout, is the unit of evidence."""
    return {task: sum(v) / len(v) for task, v in scores.items() if v}


def scalar_noise(values: list[float]) -> float:
    """How far the same version moves across seeds: max(range, 2 x sample std)."""
    if len(values) < 2:
        return 0.0
    return max(max(values) - min(values), 2 * statistics.stdev(values))


def paired_noise(first: dict[str, float], rerun: dict[str, float]) -> float:
    """How far the same version moves when simply re-run: the observed shift, or the half-width of its
    95% CI when answers flip both ways and the means happen to agree."""
    test = paired_test(first, rerun)
    return max(abs(test.delta), (test.ci_hi - test.ci_lo) / 2)


def _text_size(version: HarnessVersion) -> int:
    """Simplicity proxy for ties: bytes of code and prompts (data files do not count)."""
    return sum(len(b) for p, b in version.files().items() if not p.startswith("data/"))


def simpler(cand: HarnessVersion, cand_m: Measurement, inc: HarnessVersion, inc_m: Measurement) -> bool:
    """A tie goes to the candidate only if it is smaller AND no more expensive to run: fewer bytes that
    spend more tokens (voting, longer demos) is not simpler, it is a costlier way to the same score."""
    cheaper_or_equal = cand_m.tokens_per_rollout <= inc_m.tokens_per_rollout
    return _text_size(cand) < _text_size(inc) and cheaper_or_equal and cand_m.cost_usd <= inc_m.cost_usd


def _oriented(m: Measurement, units: list[str], direction: Direction) -> dict[str, float]:
    """Values with "higher is better", so every rule computes an improvement the same way."""
    sign = 1.0 if direction == "max" else -1.0
    return {u: sign * m.values[u] for u in units}


class PairedAcceptance:
    name = "paired"

    def __init__(self, alpha: float = 0.05, direction: Direction = "max") -> None:
        self.alpha = alpha
        self.direction = direction

    def reference(self, repeats: list[Measurement]) -> tuple[Measurement, float]:
        """The first measurement is the reference (candidates run the same trials); the reruns give noise."""
        first = repeats[0]
        noise = max((paired_noise(first.values, r.values) for r in repeats[1:]), default=0.0)
        return first, noise

    def decide(
        self, incumbent: Measurement, candidate: Measurement, *, noise: float, simpler: bool
    ) -> Decision:
        common = sorted(set(incumbent.values) & set(candidate.values))
        if not common:
            return Decision(
                accepted=False,
                delta=0.0,
                p_value=None,
                ci=(0.0, 0.0),
                n_tasks=0,
                reason="no common val tasks to compare",
            )
        test = paired_test(
            _oriented(incumbent, common, self.direction), _oriented(candidate, common, self.direction)
        )
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
            why = f"no gain ({delta:+.3f}, p={p:.3g}, noise {noise:.3f})"
        elif delta <= noise:
            why = f"gain {delta:+.3f} is within the noise ({noise:.3f})"
        else:
            why = f"gain {delta:+.3f} not significant (p={p:.3g} >= {self.alpha}, noise {noise:.3f})"
        return verdict(False, why)


class ScalarNoiseAcceptance:
    name = "scalar"

    def __init__(self, direction: Direction = "min") -> None:
        self.direction = direction

    def reference(self, repeats: list[Measurement]) -> tuple[Measurement, float]:
        """All seeds pooled: the mean is the reference, their spread the noise."""
        pooled = repeats[0]
        for m in repeats[1:]:
            pooled = pooled.combined(m)
        return pooled, scalar_noise(list(pooled.values.values()))

    def decide(
        self, incumbent: Measurement, candidate: Measurement, *, noise: float, simpler: bool
    ) -> Decision:
        sign = 1.0 if self.direction == "max" else -1.0
        gain = sign * (candidate.mean - incumbent.mean)
        n = len(candidate.values)
        runs = f" over {n} seeds" if n > 1 else ""
        value = f"{candidate.mean:.4f}{runs}"
        lo, hi = candidate.figures().ci

        def verdict(accepted: bool, reason: str, more: bool = False) -> Decision:
            return Decision(
                accepted=accepted, delta=gain, p_value=None, ci=(lo, hi), n_tasks=n, reason=reason, more=more
            )

        if gain > 2 * noise or (gain > noise and n > 1):
            return verdict(True, f"{value}: gain {gain:+.4f} > noise {noise:.4f}")
        if gain > noise:
            return verdict(False, f"{value}: borderline gain {gain:+.4f}; one more seed", more=True)
        why = "no gain" if gain <= 0 else "gain within the noise"
        return verdict(False, f"{value}: {why} ({gain:+.4f}, noise {noise:.4f})")


class GreedyAcceptance:
    """Accept any positive mean gain. Kept for comparison studies only: it accepts noise."""

    name = "greedy"

    def __init__(self, direction: Direction = "max") -> None:
        self.direction = direction

    def reference(self, repeats: list[Measurement]) -> tuple[Measurement, float]:
        return repeats[0], 0.0

    def decide(
        self, incumbent: Measurement, candidate: Measurement, *, noise: float, simpler: bool
    ) -> Decision:
        common = sorted(set(incumbent.values) & set(candidate.values))
        inc, cand = (_oriented(m, common, self.direction) for m in (incumbent, candidate))
        delta = (sum(cand[t] - inc[t] for t in common) / len(common)) if common else 0.0
        return Decision(
            accepted=delta > 0,
            delta=delta,
            p_value=None,
            ci=(delta, delta),
            n_tasks=len(common),
            reason=f"greedy: delta {delta:+.3f}",
        )


def refuse_degraded(incumbent: Measurement, candidate: Measurement) -> Decision | None:
    """No rule judges on a degraded evaluation (too many rollouts lost to infrastructure failures):
    the comparison would be over whichever tasks happened to survive an outage. The refusal is a
    rejection that says so; a re-run of the run retries the failed rollouts."""
    which = [
        f"{name}'s evaluation is degraded ({m.degraded})"
        for name, m in (("the candidate", candidate), ("the incumbent", incumbent))
        if m.degraded
    ]
    if not which:
        return None
    return Decision(
        accepted=False,
        delta=0.0,
        p_value=None,
        ci=(0.0, 0.0),
        n_tasks=0,
        reason=f"not judged: {'; '.join(which)}",
    )


RULES = ("paired", "scalar", "greedy")


def acceptance_rule(name: str, alpha: float = 0.05, direction: Direction = "max") -> Acceptance:
    if name == "paired":
        return PairedAcceptance(alpha, direction)
    if name == "scalar":
        return ScalarNoiseAcceptance(direction)
    if name == "greedy":
        return GreedyAcceptance(direction)
    raise UserError(f"unknown acceptance rule '{name}'", fix=f"use one of: {', '.join(RULES)}")
