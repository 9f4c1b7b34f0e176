#!/usr/bin/env bash
# GPU check of the training-loop domain, for a session that has an NVIDIA GPU machine.
# Everything here runs train.py the way optimize does: in its bubblewrap box with the GPU device nodes
# and driver libraries bound (harness_opt/domains/training_box.py), then prepare.py's evaluation in
# two model-server boxes (GPU) and the scorer's box (CPU). Steps, each printed with its verdict:
#   1. the machine: nvidia-smi, torch with CUDA, bubblewrap;
#   2. the train box alone: does CUDA work inside it (device nodes, libcuda, /sys)?  If not, it prints
#      what the box was given: that is what to fix in training_box.gpu_access();
#   3. the nanogpt seed for BUDGET seconds of training on GPU 0 (torch.compile, bf16) and its result
#      (val_bpb from the scorer, causal_max_delta, peak_vram_mb, isolation);
#   4. the hostile train.py suite on this machine (GPU binds active): tests/test_hostile_training.py.
# Usage (repo root):  bash bench/gpu_check.sh [budget_s]   # default 120 (fits a 15-minute device
# window: ~4 min for step 3, ~2 for step 4); 300 is the suite's full GPU budget (~7 min for step 3).
# Copy the figures into docs/benchmarks.md ("Training-loop domain on a GPU").
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET="${1:-120}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
fail=0
step() { echo; echo "=== $*"; }

step "1. machine"
nvidia-smi -L || { echo "FAIL: nvidia-smi does not run: no NVIDIA GPU or driver here"; exit 2; }
"$PY" - <<'PY' || { echo "FAIL: torch with CUDA is not importable here (this machine may have no network to install it)"; exit 2; }
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no GPU outside the sandbox"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
PY
"$PY" -m harness_opt.runtime.sandbox || { echo "FAIL: bubblewrap cannot run here"; exit 2; }

step "2. CUDA inside the train box"
if "$PY" -m harness_opt.domains.training_box; then echo "PASS: CUDA works inside the sandbox"; else
  echo "FAIL: CUDA does not work inside the train box (see above: device nodes, driver library dirs)"; fail=1; fi

step "3. the nanogpt seed on GPU 0 for ${BUDGET}s of training"
"$PY" - "$BUDGET" <<'PY' || fail=1
import json, sys
from pathlib import Path

from harness_opt.domains.training_loop import experiment_spec, load_training_suite, run_experiment
from harness_opt.harness.version import HarnessVersion

budget = float(sys.argv[1])
suite = load_training_suite(Path("tasks/nanogpt"))
spec = experiment_spec(HarnessVersion.load(suite.seed_path), suite, seed=0, gpu=True)
spec = spec.model_copy(update={"budget_s": budget, "gpu": "0"})
result = run_experiment(spec)
print(json.dumps({"status": result.status, "reason": result.reason, "isolation": result.isolation,
                  "wall_s": round(result.wall_s, 1), **result.values}, indent=2))
print(result.log_tail[-3000:])
ok = result.ok and result.values.get("causal_max_delta", 1.0) <= 1e-3 and result.values.get("peak_vram_mb", 0) > 0
print("PASS: trained on the GPU in the sandbox, scored by the evaluation" if ok else "FAIL: see above")
sys.exit(0 if ok else 1)
PY

step "4. hostile train.py suite with the GPU bound"
"$PY" -m pytest -q -p no:cacheprovider tests/test_hostile_training.py || fail=1

echo
[ "$fail" = 0 ] && echo "gpu_check: ALL PASS" || echo "gpu_check: FAILURES above"
exit "$fail"
