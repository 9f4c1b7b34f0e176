"""The offline search after the fixed operators: it keeps proposing distinct candidates (variants,
combinations, re-tries, re-tests) and stops only when nothing new is left, saying so."""

from __future__ import annotations

from pathlib import Path

from harness_opt.harness import HarnessVersion
from harness_opt.propose.base import HistoryEntry, Proposal, TaskWins
from harness_opt.propose.operators import OperatorsProposer
from harness_opt.propose.operators.night import FINGERPRINT
from tests.support.user_suites import apply, entry, proposal_input, scaffold


def run_offline(
    seed: HarnessVersion,
    suite: Path,
    outcome: callable,
    limit: int = 400,  # type: ignore[valid-type]
) -> tuple[list[Proposal], list[HistoryEntry], OperatorsProposer]:
    """The loop without a model: propose one, decide with `outcome(n, proposal)`, repeat."""
    proposer = OperatorsProposer()
    history: list[HistoryEntry] = []
    made: list[Proposal] = []
    incumbent = seed
    for n in range(1, limit):
        proposals = proposer.propose(proposal_input(incumbent, suite, history=history, seed=n), 1)
        if not proposals:
            break
        [proposal] = proposals
        made.append(proposal)
        result, delta, p = outcome(n, proposal)  # type: ignore[misc]
        candidate = apply(incumbent, proposal)
        history.append(entry(proposal, result, delta, p, n, candidate.label))
        if result == "accepted":
            incumbent = candidate
    return made, history, proposer


def test_the_search_outlasts_the_fixed_list_with_distinct_candidates_then_says_why_it_stops(
    tmp_path: Path,
) -> None:
    seed, suite = scaffold("intents", tmp_path)

    def outcome(n: int, proposal: Proposal) -> tuple[str, float, float]:
        if n == 1:
            assert proposal.meta["operator"] == "retrieval_demos"
            return "accepted", 0.7, 1e-9
        return "rejected", (-0.02 if n % 3 else 0.01), 0.6

    made, history, proposer = run_offline(seed, suite, outcome)
    fixed = [p for p in made if not p.mechanism.startswith(("tune ", "combine: ", "re-try: "))]
    night = [p for p in made if p not in fixed]
    assert len(fixed) <= 8 and len(night) >= 15  # the fixed list ends early; the search does not
    assert {p.mechanism.split(":")[0].split(" ")[0] for p in night} >= {"tune", "combine"}
    prints = [FINGERPRINT.search(p.mechanism)[1] for p in made]  # type: ignore[index]
    assert len(prints) == len(set(prints))  # never the same candidate twice
    tuned = {p.mechanism.split(":")[0] for p in night if p.mechanism.startswith("tune ")}
    assert {
        "tune retrieval_k",
        "tune retrieval_scoring",
        "tune retrieval_order",
        "tune system_template",
    } <= tuned
    assert proposer.stop_reason.startswith("nothing new to propose for this classification suite")
    assert len(history) == len(made)


def test_an_acceptance_reopens_the_neighbourhood(tmp_path: Path) -> None:
    seed, suite = scaffold("intents", tmp_path)

    def outcome(n: int, proposal: Proposal) -> tuple[str, float, float]:
        if n == 1 or proposal.mechanism.startswith("tune retrieval_k: 6 -> 4"):
            return "accepted", 0.1, 1e-4
        return "rejected", -0.01, 0.8

    made, _, _ = run_offline(seed, suite, outcome)
    after = made[[p.mechanism.startswith("tune retrieval_k: 6 -> 4") for p in made].index(True) + 1 :]
    assert any(p.mechanism.startswith("tune retrieval_k: 4 -> ") for p in after)
    assert any(p.mechanism.startswith("re-try: ") for p in after)  # operators get a second chance


def test_moves_that_won_different_tasks_are_combined_first(tmp_path: Path) -> None:
    seed, suite = scaffold("intents", tmp_path)
    proposer = OperatorsProposer()
    first = proposer.propose(proposal_input(seed, suite), 1)[0]
    v2 = apply(seed, first)
    history = [entry(first, "accepted", 0.7, 1e-9, 1, v2.label)]
    tried = []
    for n in range(2, 12):  # the fixed list and a few variants, all rejected
        [p] = proposer.propose(proposal_input(v2, suite, history=history, seed=n), 1)
        tried.append(p)
        history.append(entry(p, "rejected", 0.0, 1.0, n, f"intents@v{n + 1:04d}"))
    variants = [(p, e) for p, e in zip(tried, history[1:], strict=True) if p.mechanism.startswith("tune ")]
    (a, ea), (b, eb), (c, ec) = variants[:3]
    wins = [
        TaskWins(candidate=ea.candidate, mechanism=a.mechanism, incumbent=v2.label, wins=["k1", "k2"]),
        TaskWins(candidate=eb.candidate, mechanism=b.mechanism, incumbent=v2.label, wins=["k3"], losses=[]),
        TaskWins(
            candidate=ec.candidate, mechanism=c.mechanism, incumbent=v2.label, wins=["k1"], losses=["k9"]
        ),
    ]
    inp = proposal_input(v2, suite, history=history, seed=20, task_wins=wins)
    [combined] = proposer.propose(inp, 1)
    part = {x.mechanism.rsplit(" {", 1)[0] for x in (a, b)}
    assert combined.mechanism.startswith("combine: ")
    assert set(combined.mechanism.removeprefix("combine: ").rsplit(" {", 1)[0].split(" + ")) == part


def test_near_misses_are_re_tested_only_when_the_loop_offers_more_val_tasks(tmp_path: Path) -> None:
    seed, suite = scaffold("intents", tmp_path)
    proposer = OperatorsProposer()
    first = proposer.propose(proposal_input(seed, suite), 1)[0]
    v2 = apply(seed, first)
    history = [entry(first, "accepted", 0.7, 1e-9, 1, v2.label)]
    for n in range(2, 10):
        [p] = proposer.propose(proposal_input(v2, suite, history=history, seed=n), 1)
        history.append(entry(p, "rejected", 0.05 if p.mechanism.startswith("tune ") else -0.1, 0.2, n))
    plain = proposer.propose(proposal_input(v2, suite, history=history), 1)
    assert not plain[0].meta.get("retest")
    [retest] = proposer.propose(proposal_input(v2, suite, history=history, retest_val_limit=120), 1)
    assert retest.meta["retest"] is True and retest.meta["val_limit"] == 120
    assert retest.mechanism.startswith("re-test on 120 val tasks: tune ")
    history.append(entry(retest, "rejected", 0.02, 0.3, 20))
    again = proposer.propose(proposal_input(v2, suite, history=history, retest_val_limit=120), 5)
    assert retest.mechanism not in {p.mechanism for p in again}  # re-tested once only


def test_json_and_tool_suites_have_night_moves_too(tmp_path: Path) -> None:
    seed, suite = scaffold("expenses", tmp_path)

    def outcome(n: int, proposal: Proposal) -> tuple[str, float, float]:
        return ("accepted", 0.3, 1e-5) if n <= 2 else ("rejected", -0.01, 0.9)

    made, _, proposer = run_offline(seed, suite, outcome)
    tuned = {p.mechanism.split(":")[0] for p in made if p.mechanism.startswith("tune ")}
    assert {"tune retrieval_k", "tune pattern_mode"} <= tuned
    assert "json suite" in proposer.stop_reason
