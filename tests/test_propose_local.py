"""The embedded model as the meta-model, through the command line: the run reaches its iteration
limit, and every meta-call fits the model's 8,192-token context (the finding: one 37,470-token prompt
failed and the run ended at once)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness_opt.cli.app import app
from harness_opt.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.nightly  # 4-5 minutes of the embedded model on 2 cores: `python3 -m pytest -m nightly`
@pytest.mark.timeout(1200)
def test_local_meta_model_reaches_the_iteration_limit_inside_its_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools mode, the default (about 4 minutes here). Single mode plans its one prompt with the same
    budget (tests/test_propose_llm_tools.py); on this model one of its proposals takes several minutes
    of generation, measured in docs/proposers.md."""
    monkeypatch.delenv("HARNESS_OPT_LOCAL_CTX", raising=False)
    seed = tmp_path / "harnesses" / "banking77" / "v0001"
    shutil.copytree(REPO / "harnesses" / "banking77" / "v0001", seed)
    args = [
        "optimize",
        str(seed),
        "--suite",
        str(REPO / "tasks" / "banking77"),
        "--proposer",
        "llm",
        "--meta-model",
        "local/smollm2",
        "--proposer-mode",
        "tools",
        "--iterations",
        "2",
        "--val-limit",
        "4",
        "--train-sample",
        "3",
        "--history-train",
        "1",
        "--meta-steps",
        "2",
        "--skip-test",
        "--force",
        "--budget",
        "30m",
    ]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    run = Ledger().query("SELECT run_id, summary FROM runs WHERE kind = 'optimize'")[0]
    result = json.loads(run["summary"])["result"]
    assert result["stop"] == "iterations", result["stop_reason"]  # not "no further proposals"
    rows = Ledger().query("SELECT detail FROM decisions WHERE run_id = ? ORDER BY iteration", [run["run_id"]])
    details = [json.loads(r["detail"]) for r in rows]
    proposals = [d for d in details if d["outcome"] != "baseline"]
    assert {d["iteration"] for d in proposals} == {1, 2}
    spends = [d["spend"] for d in proposals]
    assert all(s["calls"] >= 1 and s["context_tokens"] == 8192 for s in spends), spends
    assert all(s["largest_call_tokens"] <= 8192 and s["overflows"] == 0 for s in spends), spends
    assert "meta-agent local/smollm2" in out.output and "of 8,192 tokens" in out.output
