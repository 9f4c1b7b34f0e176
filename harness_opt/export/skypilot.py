"""SkyPilot task YAMLs for one wave of training experiments: one GPU per cluster, one workdir each.

The pattern SkyPilot used to scale autoresearch out: each experiment is its own small cluster with
one GPU, its own workdir (train.py + the frozen prepare.py + the corpus path), and its result lines in
the job log, where `sky logs` or a grep picks up `val_bpb:` and `peak_vram_mb:`. A wave is a folder:
`<out>/wave-<name>/<label>/` (workdir + task.yaml per experiment) and `launch.sh` starting them all.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from harness_opt.domains.training_loop import PREPARE_FILE, TrainingSuite
from harness_opt.harness.version import HarnessVersion


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def task_yaml(label: str, suite: TrainingSuite, *, accelerator: str, seed: int, torch_spec: str) -> str:
    s = suite.settings
    budget = s.gpu_time_budget_s
    run = (
        f"timeout {int(2 * budget + 120)} python train.py > run.log 2>&1; code=$?; "
        "cat run.log | tail -n 40; grep -E '^(val_bpb|peak_vram_mb|training_seconds|num_steps):' run.log "
        "|| echo FAIL; exit $code"
    )
    envs = {
        "NANOGPT_TIME_BUDGET": str(budget),
        "NANOGPT_SEED": str(seed),
        "NANOGPT_EVAL_TOKENS": str(s.gpu_eval_tokens),
        "NANOGPT_DATA": "corpus.txt",
        "NANOGPT_DATA_URL": s.data_url,
        "NANOGPT_DATA_SHA256": s.data_sha256,
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
        f"run: {_yaml_str(run)}",
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
        (work / "task.yaml").write_text(
            task_yaml(version.label, suite, accelerator=accelerator, seed=seed, torch_spec=torch_spec)
        )
        cluster = f"hopt-w{wave}-{label}".lower().replace("_", "-").replace(".", "-")
        launch.append(f"(cd {shlex.quote(label)} && sky launch -y -d -c {cluster} task.yaml)")
    (folder / "launch.sh").write_text("\n".join(launch) + "\n")
    (folder / "launch.sh").chmod(0o755)
    return folder
