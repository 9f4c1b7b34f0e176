#!/usr/bin/env bash
# GPU check of the training-loop domain (issue 6), for a session that has an H100-class GPU machine.
# Runs the nanogpt seed once for the full GPU budget (300 s of training; with start-up and eval ~6 min)
# and prints its result block; then a short optimize wave if time allows. Copy the figures into
# docs/benchmarks.md ("Training-loop domain on a GPU").
# Usage (repo root):  bash bench/gpu_check.sh [budget_s]      # default 300; 60 for a quick look
set -euo pipefail
BUDGET="${1:-300}"
python -c "import torch" 2>/dev/null || pip install -q torch
nvidia-smi -L
python - "$BUDGET" <<'PY'
import json, sys
from pathlib import Path
from harness_opt.domains.training_loop import TrainingDomain, run_experiment
from harness_opt.harness.version import HarnessVersion

budget = float(sys.argv[1])
domain = TrainingDomain(gpu=True)
suite = domain.load_suite(Path("tasks/nanogpt"))
spec = domain.spec(HarnessVersion.load(suite.seed_path), suite, seed=0)
spec = spec.model_copy(update={"budget_s": budget, "gpu": "0"})
result = run_experiment(spec)
print(json.dumps({"status": result.status, "reason": result.reason, "wall_s": round(result.wall_s, 1),
                  **result.values}, indent=2))
if not result.ok:
    print(result.log_tail)
    sys.exit(1)
PY
