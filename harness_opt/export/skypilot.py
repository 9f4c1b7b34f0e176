"""SkyPilot task YAMLs for one wave of training experiments: one GPU per cluster, one workdir each.

The pattern SkyPilot used to scale autoresearch out: each experiment is its own small cluster with
one GPU and its own workdir: train.py, the frozen prepare.py, and the corpus cut into train.txt and
val.txt here (the node needs no network for data). The job runs train.py, which saves its model, then
prepare.py's evaluation (`prepare.py evaluate`: two model servers and the scorer, the same code the
local runner sandboxes), and greps the result lines of the evaluation's own log, never train.py's.
A wave is a folder: `<out>/wave-<name>/<label>/` (workdir + task.yaml per experiment) and
`launch.sh` starting them all.

What a SkyPilot node does not have is harness-opt's sandbox: the cloud VM is the only boundary, and a
hostile train.py on it can read val.txt or tamper with the evaluation that follows it. Treat a wave's
figures as the node's word, and re-run the version you keep locally, where each step is sandboxed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from harness_opt.domains.training_data import corpus_path, split_corpus
from harness_opt.domains.training_loop import PREPARE_FILE, TrainingSuite
from harness_opt.harness.version import HarnessVersion

RESULT_KEYS = ("val_bpb", "eval_tokens", "causal_max_delta")


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def run_command(budget_s: float) -> str:
    """Train, then evaluate the saved model; print train.py's tail and the evaluation's block."""
    keys = "|".join(RESULT_KEYS)
    return (
        f"timeout {int(2 * budget_s + 120)} python train.py > train.log 2>&1; code=$?; tail -n 40 train.log; "
        f"if [ $code -eq 0 ]; then timeout {int(max(120, budget_s))} python prepare.py evaluate model.pt "
        "--val val.txt --code . > eval.log 2>&1; code=$?; cat eval.log; fi; "
        f"grep -E '^({keys}):' eval.log 2>/dev/null || echo FAIL; exit $code"
    )


def task_yaml(label: str, suite: TrainingSuite, *, accelerator: str, seed: int, torch_spec: str) -> str:
    s = suite.settings
    budget = s.gpu_time_budget_s
    envs = {
        "NANOGPT_TIME_BUDGET": str(budget),
        "NANOGPT_SEED": str(seed),
        "NANOGPT_EVAL_TOKENS": str(s.gpu_eval_tokens),
        "NANOGPT_TRAIN_DATA": "train.txt",
        "NANOGPT_MODEL_OUT": "model.pt",
        "PYTHONPATH": ".",
    }
    lines = [
        f"name: {_yaml_str('hopt-' + label.replace('@', '-'))}",
        "resources:",
        f"  accelerators: {_yaml_str(accelerator)}",
        "workdir: .",
        "envs:",
        *(f"  {k}: {_yaml_str(v)}" for k, v in envs.items()),
        f"setup: {_yaml_str(f'pip install {shlex.quote(torch_spec)}')}",
        f"run: {_yaml_str(run_command(budget))}",
    ]
    return "\n".join(lines) + "\n"


def export_skypilot(
    versions: list[HarnessVersion],
    suite: TrainingSuite,
    out_dir: Path,
    *,
    wave: str = "1",
    accelerator: str = "H100:1",
    seed: int = 0,
    torch_spec: str = "torch>=2.4",
) -> Path:
    """Write the wave folder and return it; `bash <wave>/launch.sh` starts one cluster per experiment."""
    s = suite.settings
    corpus = corpus_path(suite.data_path(), s.data_url, s.data_sha256)
    folder = out_dir / f"wave-{wave}"
    folder.mkdir(parents=True, exist_ok=True)
    launch = [
        "#!/usr/bin/env bash",
        "# One single-GPU cluster per experiment; results: sky logs <cluster>.",
        "set -e",
    ]
    for version in versions:
        label = version.label.replace("@", "-")
        work = folder / label
        work.mkdir(exist_ok=True)
        for rel, data in version.files().items():
            if rel in ("harness.toml", PREPARE_FILE):
                continue
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        (work / PREPARE_FILE).write_text(suite.prepare_path.read_text(encoding="utf-8"), encoding="utf-8")
        for name in ("train.txt", "val.txt"):
            (work / name).unlink(missing_ok=True)  # a re-export replaces them (they are read-only)
        split_corpus(corpus, s.val_fraction, work / "train.txt", work / "val.txt")
        (work / "task.yaml").write_text(
            task_yaml(version.label, suite, accelerator=accelerator, seed=seed, torch_spec=torch_spec)
        )
        cluster = f"hopt-w{wave}-{label}".lower().replace("_", "-").replace(".", "-")
        launch.append(f"(cd {shlex.quote(label)} && sky launch -y -d -c {cluster} task.yaml)")
    (folder / "launch.sh").write_text("\n".join(launch) + "\n")
    (folder / "launch.sh").chmod(0o755)
    return folder
