"""The isolation a run used is shown where the README says (`runs`, `report`, `doctor`), not only stored.

`leaderboard`'s column has its own test (test_leaderboard_sandbox.py); these cover the other three
places issue 11's first deliverable names, each with a run made in bubblewrap beside one made with
`--isolation none`, so a view that drops or hard-codes the mode fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from harness_opt.ledger import Ledger
from harness_opt.trust.doctor import _check_sandbox
from harness_opt.trust.report import CheckReport
from tests.support.ledger import D, _r, small_ledger
from tests.support.optimize import SEED


def two_sandboxes() -> Ledger:
    """small_ledger's rollouts ran in bubblewrap; one more rollout of toy@v0004 ran with none."""
    ledger = small_ledger()
    ledger.start_run("eval-toy", "eval", {})
    ledger.record_isolation("eval-toy", "bwrap")
    ledger.start_run("eval-weak", "eval", {})
    ledger.record_isolation("eval-weak", "none")
    ledger.add_rollouts([_r(D, "t1", 5, 1.0, cost=0.05, tok=600, lat=3.0, run_id="eval-weak")])
    return ledger


def test_runs_shows_the_sandbox_of_each_run() -> None:
    from harness_opt.cli import runs_cmd

    two_sandboxes()
    app = typer.Typer()
    runs_cmd.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["runs"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "run" in line and "status" in line)
    assert header.split()[-2] == "sandbox", header
    row = {
        run: next(ln for ln in result.output.splitlines() if run in ln) for run in ("eval-toy", "eval-weak")
    }
    assert row["eval-toy"].split()[-2] == "bwrap", row
    assert row["eval-weak"].split()[-2] == "none", row


def test_report_shows_the_sandbox_of_each_version(tmp_path: Path) -> None:
    from harness_opt.report.page import report

    ledger = two_sandboxes()
    page = report(suite="toy", split="val", out=tmp_path / "r.html", ledger=ledger).read_text()
    cells = re.findall(r'<td class="(warn)?" title="the sandbox its rollouts ran in">([^<]*)</td>', page)
    shown = sorted(text for _, text in cells)
    assert shown.count("bwrap") == 3, cells  # toy@v0001..v0003
    (mixed,) = [(cls, text) for cls, text in cells if text != "bwrap"]
    assert mixed[1] in ("bwrap; none", "none; bwrap") and mixed[0] == "warn", cells


def test_doctor_names_the_isolation_a_run_will_record() -> None:
    strong = CheckReport(title="doctor")
    _check_sandbox(strong, "auto", SEED)  # starts the seed's fork server once, as a run would
    (line,) = [ln for ln in strong.lines if ln.check == "sandbox"]
    assert line.status == "PASS" and line.detail.startswith("isolation used: bwrap"), line
    weak = CheckReport(title="doctor")
    _check_sandbox(weak, "none", None)
    (line,) = [ln for ln in weak.lines if ln.check == "sandbox"]
    assert line.status == "WARN" and line.detail.startswith("isolation used: none"), line
