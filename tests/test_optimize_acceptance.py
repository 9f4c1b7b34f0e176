"""Acceptance rules on hand-made measurements: the paired test for agent harnesses and the scalar noise
rule for training, behind one protocol, each way the metric can go."""

from __future__ import annotations

import pytest

from harness_opt.errors import UserError
from harness_opt.search.acceptance import (
    PairedAcceptance,
    ScalarNoiseAcceptance,
    acceptance_rule,
    paired_noise,
)
from harness_opt.search.measurement import Measurement


def m(values: dict[str, float], label: str = "v", h: str = "h") -> Measurement:
    return Measurement(version_hash=h, label=label, values=values)


TASKS = [f"t{i}" for i in range(40)]
ZERO = m({t: 0.0 for t in TASKS})
HALF = m({t: 1.0 if i % 2 else 0.0 for i, t in enumerate(TASKS)})  # 20 of 40 tasks fixed


def test_a_significant_gain_above_the_noise_is_accepted() -> None:
    decision = PairedAcceptance().decide(ZERO, HALF, noise=0.1, simpler=False)
    assert decision.accepted and decision.delta == pytest.approx(0.5) and decision.p_value < 1e-4
    assert decision.n_tasks == 40


def test_the_same_gain_inside_the_noise_is_refused() -> None:
    decision = PairedAcceptance().decide(ZERO, HALF, noise=0.6, simpler=False)
    assert not decision.accepted and "within the noise (0.600)" in decision.reason


def test_a_tie_goes_to_the_simpler_candidate_only() -> None:
    rule = PairedAcceptance()
    assert rule.decide(HALF, HALF, noise=0.0, simpler=True).accepted
    assert not rule.decide(HALF, HALF, noise=0.0, simpler=False).accepted


def test_paired_direction_min_means_lower_is_better() -> None:
    decision = PairedAcceptance(direction="min").decide(HALF, ZERO, noise=0.0, simpler=False)
    assert decision.accepted and decision.delta == pytest.approx(0.5)


def test_paired_reference_is_the_first_run_and_noise_the_rerun_shift() -> None:
    rerun = m({t: 1.0 if i < 4 else 0.0 for i, t in enumerate(TASKS)})  # 4 of 40 flipped
    reference, noise = PairedAcceptance().reference([ZERO, rerun])
    assert reference is ZERO
    assert noise == pytest.approx(paired_noise(ZERO.values, rerun.values)) and noise >= 0.1


def test_scalar_reference_pools_the_seeds_and_their_spread_is_the_noise() -> None:
    seeds = [m({"seed 0": 2.00}), m({"seed 1": 2.02})]
    reference, noise = ScalarNoiseAcceptance().reference(seeds)
    assert reference.values == {"seed 0": 2.00, "seed 1": 2.02} and reference.mean == pytest.approx(2.01)
    assert noise == pytest.approx(2 * 0.0141421, rel=1e-4)  # 2 x std > range 0.02


def test_scalar_rule_keeps_clear_gains_asks_again_when_borderline_and_drops_the_rest() -> None:
    rule = ScalarNoiseAcceptance()  # val_bpb: lower is better
    incumbent = m({"seed 0": 2.00, "seed 1": 2.02})
    noise = 0.03
    clear = rule.decide(incumbent, m({"seed 0": 1.90}), noise=noise, simpler=False)
    assert clear.accepted and not clear.more and clear.delta == pytest.approx(0.11)
    borderline = rule.decide(incumbent, m({"seed 0": 1.97}), noise=noise, simpler=False)
    assert not borderline.accepted and borderline.more
    confirmed = rule.decide(incumbent, m({"seed 0": 1.97, "seed 1": 1.975}), noise=noise, simpler=False)
    assert confirmed.accepted and not confirmed.more
    faded = rule.decide(incumbent, m({"seed 0": 1.97, "seed 1": 2.03}), noise=noise, simpler=False)
    assert not faded.accepted and not faded.more and "within the noise" in faded.reason
    worse = rule.decide(incumbent, m({"seed 0": 2.2}), noise=noise, simpler=False)
    assert not worse.accepted and not worse.more and worse.delta == pytest.approx(-0.19)


def test_scalar_rule_for_a_metric_that_goes_up() -> None:
    rule = ScalarNoiseAcceptance(direction="max")
    assert rule.decide(m({"a": 1.0}), m({"a": 2.0}), noise=0.1, simpler=False).accepted
    assert not rule.decide(m({"a": 2.0}), m({"a": 1.0}), noise=0.1, simpler=False).accepted


def test_rules_are_named_by_a_string() -> None:
    assert acceptance_rule("paired").name == "paired"
    assert acceptance_rule("scalar", direction="min").name == "scalar"
    assert acceptance_rule("greedy").decide(ZERO, HALF, noise=1.0, simpler=False).accepted  # it accepts noise
    with pytest.raises(UserError, match="unknown acceptance rule"):
        acceptance_rule("vibes")


def test_a_measurement_of_other_seeds_combines_but_never_double_counts() -> None:
    a, b = m({"seed 0": 1.0}), m({"seed 1": 3.0})
    assert a.combined(b).mean == 2.0 and a.combined(b).figures().ci == (1.0, 3.0)
    with pytest.raises(ValueError, match="cannot combine"):
        a.combined(a)
