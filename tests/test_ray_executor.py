"""The Ray executor on a local Ray instance: a wave of real, sandboxed runs comes back in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from harness_opt.domains.executors import RayExecutor
from harness_opt.domains.training_loop import ExperimentResult, experiment_spec, load_training_suite
from harness_opt.harness.version import HarnessVersion
from tests.support.nanogpt import training_copy


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_executor_runs_a_wave_on_a_local_instance(tmp_path: Path, local_ray: None) -> None:
    suite_dir, seed_dir = training_copy(tmp_path, budget_s=2.0)
    good = experiment_spec(HarnessVersion.load(seed_dir), load_training_suite(suite_dir), seed=0)
    bad = good.model_copy(update={"files": {"train.py": "raise SystemExit(3)\n"}, "seed": 1})
    executor = RayExecutor(parallel=2)
    assert executor.slots == 2 and not executor.has_gpu
    seen: list[tuple[int, ExperimentResult]] = []
    first, second = executor.run([good, bad], "val_bpb", on_done=lambda i, r: seen.append((i, r)))
    # a value from the evaluation (a run that trained little on a loaded machine can be above 8 bits)
    assert first.status == "ok" and first.seed == 0 and 0.5 < first.values["val_bpb"] < 20, first.log_tail
    assert first.isolation == "bwrap"  # the worker sandboxed it
    assert second.status == "crash" and "exit code 3" in second.reason
    # each result is handed over as it ends (the loop stores it at once), with its place in the wave
    assert sorted((i, r.seed) for i, r in seen) == [(0, 0), (1, 1)]
