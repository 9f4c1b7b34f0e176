"""`export --format skypilot`: one task YAML + workdir per experiment of a wave, one GPU each."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from harness_opt.cli.app import app
from harness_opt.domains.experiments import experiment_rows
from harness_opt.ledger import Ledger
from harness_opt.ledger.rows import ExperimentRow
from tests.support.nanogpt import CORPUS, training_copy


def test_skypilot_wave_has_a_single_gpu_task_per_experiment(tmp_path: Path) -> None:
    suite_dir, seed_dir = training_copy(tmp_path)
    out = tmp_path / "sky"
    res = CliRunner().invoke(
        app,
        [
            "export",
            str(seed_dir.parent),
            "--suite",
            str(suite_dir),
            "--format",
            "skypilot",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    work = out / "wave-1" / "nanogpt-v0001"
    task = yaml.safe_load((work / "task.yaml").read_text())
    assert task["resources"]["accelerators"] == "H100:1" and task["workdir"] == "."
    assert task["envs"]["NANOGPT_TIME_BUDGET"] == "300.0"
    envs = task["envs"]
    assert envs["NANOGPT_TRAIN_DATA"] == "train.txt" and envs["NANOGPT_MODEL_OUT"] == "model.pt"
    run = task["run"]
    assert "python train.py" in run and "python prepare.py evaluate model.pt --val val.txt" in run
    # the figures are grepped from the evaluation's log, never from what train.py printed
    assert "grep -E '^(val_bpb|eval_tokens|causal_max_delta):' eval.log" in run and "train.log ||" not in run
    assert (work / "train.py").read_text() == (seed_dir / "train.py").read_text()
    assert (work / "prepare.py").read_text() == (suite_dir / "prepare.py").read_text()
    corpus = CORPUS.read_bytes()
    assert (work / "train.txt").read_bytes() + (work / "val.txt").read_bytes() == corpus
    assert len((work / "val.txt").read_bytes()) == int(len(corpus) * 0.1)
    assert not (work / "harness.toml").exists()
    launch = (out / "wave-1" / "launch.sh").read_text()
    assert "sky launch -y -d -c hopt-w1-nanogpt-v0001 task.yaml" in launch


def test_leaderboard_shows_training_experiments(tmp_path: Path) -> None:
    suite_dir, _seed = training_copy(tmp_path)
    ledger = Ledger()
    for value, status in ((3.1, "keep"), (None, "crash"), (2.9, "keep"), (3.3, "discard")):
        ledger.add_experiment(
            ExperimentRow(
                run_id="opt-x",
                version_hash="h" * 64,
                metric="val_bpb",
                value=value,
                memory_gb=1.5,
                status=status,
                description=f"try {value}",
            )  # type: ignore[arg-type]
        )
    rows = experiment_rows(ledger)
    assert [r.value for r in rows] == [2.9, 3.1, 3.3, None]  # best first, crashes last
    res = CliRunner().invoke(app, ["leaderboard", "--suite", str(suite_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "experiments of opt-x" in res.output and "2.9000" in res.output and "crash" in res.output
