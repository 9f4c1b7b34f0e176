"""The one rule for failed rollouts in the read commands: `leaderboard`, `diff` and `report` count a
version's infrastructure failures apart, never score them and never drop them silently, and rank a
degraded version last, off the Pareto set, never the top-score incumbent; a lineage test for the
version folders candidates land in."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness_opt.ledger import Ledger, VersionRow
from harness_opt.records import Rollout
from tests.support.ledger import T0, small_ledger

E = "eeee" + "0" * 60
REPO = Path(__file__).resolve().parents[1]


def with_outage(ledger: Ledger) -> Ledger:
    """toy@v0005 answers every task it could run (trial 0: 1.0) and lost trial 1 of every task to
    infrastructure failures (llm_error twice, sandbox twice): half of its rollouts."""
    ledger.add_version(VersionRow(hash=E, agent="toy", version=5, proposer="llm", created=T0))
    rows = []
    for i, task in enumerate(("t1", "t2", "t3", "t4")):
        for trial, error in ((0, None), (1, "llm_error" if i < 2 else "sandbox")):
            rows.append(
                Rollout(
                    run_id="eval-outage",
                    version_hash=E,
                    suite="toy",
                    split="val",
                    task_id=task,
                    trial=trial,
                    model="m",
                    score=1.0 if error is None else 0.0,
                    passed=error is None,
                    error=error,
                    trace_ref=f"toy/e.jsonl#{task}-{trial}",
                    created=T0 + timedelta(minutes=2),
                )
            )
    ledger.add_rollouts(rows)
    return ledger


def test_the_leaderboard_counts_infrastructure_failures_apart_and_ranks_a_degraded_version_last() -> None:
    from harness_opt.report.leaderboard import board

    ledger = with_outage(small_ledger())
    rows = {r.label: r for r in board(ledger, "toy", "val").rows}
    e = rows["toy@v0005"]
    assert e.score == 1.0 and e.n_rollouts == 4 and e.n_infra == 4 and e.degraded
    assert e.rank == len(rows) and not e.pareto and not e.incumbent  # best score, trusted least
    assert all(not r.degraded and r.n_infra == 0 for label, r in rows.items() if label != "toy@v0005")
    assert rows["toy@v0002"].n_infra == 0  # its later llm_error attempt of t1 loses nothing: t1 was scored
    lenient = {r.label: r for r in board(ledger, "toy", "val", max_infra_failures=0.6).rows}
    assert not lenient["toy@v0005"].degraded and lenient["toy@v0005"].rank == 1


def test_the_leaderboard_command_shows_the_infra_column_and_the_mark() -> None:
    import typer

    from harness_opt.cli import leaderboard_cmd

    with_outage(small_ledger())
    app = typer.Typer()
    leaderboard_cmd.register(app)
    app.command("noop")(lambda: None)
    out = CliRunner().invoke(app, ["leaderboard", "--suite", "toy"], env={"COLUMNS": "250"}).output
    line = next(ln for ln in out.splitlines() if "toy@v0005" in ln)
    assert "⚠" in line and " 4 " in line
    assert "infra: rollouts lost to infrastructure failures" in out


def test_diff_and_report_say_what_was_lost(tmp_path: Path) -> None:
    from harness_opt.report.compare import diff
    from harness_opt.report.page import report

    ledger = with_outage(small_ledger())
    from tests.support.ledger import A

    d = diff(A, E, suite="toy", split="val", ledger=ledger)
    assert d.results is not None
    assert d.results.infra_a == 0 and d.results.infra_b == 4
    assert d.results.degraded and "toy@v0005: 4 of 8 rollouts" in d.results.degraded[0]
    page = report(suite="toy", split="val", out=tmp_path / "r.html", ledger=ledger).read_text()
    assert "degraded</span>" in page and "lost to infrastructure failures" in page


@pytest.mark.parametrize("folder", ["harnesses/acme/seed", "examples/my-seed", "examples/acme"])
def test_candidates_land_in_agent_vnnnn_folders_whatever_the_seed_is_called(
    tmp_path: Path, folder: str
) -> None:
    from harness_opt.harness.lineage import VERSION_DIR, create_version, lineage
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.search.candidates import find_version

    seed_dir = tmp_path / folder
    seed_dir.parent.mkdir(parents=True)
    shutil.copytree(REPO / "harnesses" / "banking77" / "v0001", seed_dir)
    manifest = (seed_dir / "harness.toml").read_text().replace('name = "banking77"', 'name = "acme"')
    (seed_dir / "harness.toml").write_text(manifest)
    seed = HarnessVersion.load(seed_dir)
    prompt = (seed_dir / "prompts" / "system.j2").read_text()

    def child(parent: HarnessVersion, text: str) -> HarnessVersion:
        edits = {"prompts/system.j2": prompt + text}
        return create_version(parent, edits, proposer="t", hypothesis="h", changes=[])

    first = child(seed, "\nOne.")
    second = child(first, "\nTwo.")
    for child in (first, second):
        assert VERSION_DIR.match(child.path.name) and child.path.parent.name == "acme"
        assert not child.path.is_relative_to(seed_dir)  # never inside the seed
    assert len({seed.label, first.label, second.label}) == 3  # the seed's label is never reused
    assert [v.hash for v in lineage(second)] == [seed.hash, first.hash, second.hash]
    assert find_version(seed, second.hash) == second  # a resumed run finds its incumbent
    assert seed.hash == HarnessVersion.load(seed_dir).hash  # the seed is untouched
