"""One optimize process, for the kill -9 / resume tests: `python -m tests.support.optimize_run DOMAIN
RUN_ID DIR [resume]`, DOMAIN `agent` (DIR: a copy of the banking77 seed, a scripted task model and
proposer) or `training` (DIR: a copy of tasks/nanogpt, its operators proposer). It prints one JSON line
at the end: the best version and the status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.search.records import OptimizeResult
from tests.support.optimize import (
    SUITE,
    ScriptedProposer,
    gold_by_text,
    marker_rounds,
    prompt_sensitive_responder,
)


def agent_run(run_id: str, seed: Path, resume: bool) -> OptimizeResult:
    from harness_opt.testing import ScriptedModel, register_scripted

    model = ScriptedModel("killable", prompt_sensitive_responder(gold_by_text()), delay_s=0.02)
    register_scripted(model)
    config = OptimizeConfig(
        harness=seed,
        suite=SUITE,
        model=model.model,
        val_limit=40,
        test_limit=40,
        train_sample=10,
        budget=Budget(iterations=4),
        concurrency=4,
    )
    proposer = ScriptedProposer(marker_rounds())
    return optimize(config, proposer=proposer, run_id=run_id, resume=run_id if resume else None)


def training_run(run_id: str, suite: Path, resume: bool) -> OptimizeResult:
    seed = suite.parent.parent / "harnesses" / "nanogpt" / "v0001"
    config = OptimizeConfig(harness=seed, suite=suite, budget=Budget(iterations=2), parallel=2)
    return optimize(config, run_id=run_id, resume=run_id if resume else None)


def main() -> None:
    domain, run_id, where = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    resume = len(sys.argv) > 4
    result = (agent_run if domain == "agent" else training_run)(run_id, where, resume)
    print(json.dumps({"best": result.best_label, "status": result.status}), flush=True)


if __name__ == "__main__":
    main()
