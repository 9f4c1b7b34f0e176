"""Where training experiments run: here (one per local GPU, or CPU) or on a Ray cluster.

An executor takes a wave of self-contained `ExperimentSpec`s and returns their results in order. The
local executor gives each concurrent run its own GPU through CUDA_VISIBLE_DEVICES (the SkyPilot
pattern on one box: one experiment per GPU); the Ray executor asks Ray for one GPU per run when the
cluster has GPUs, so a wave spreads over the cluster's nodes. Either way `run_experiment` sandboxes the
run on the node that makes it, and a node where bubblewrap cannot run refuses its runs (the spec
carries the isolation mode the user's rule chose, never a weaker one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

from harness_opt.domains.training_loop import ExperimentResult, ExperimentSpec, run_experiment
from harness_opt.errors import UserError

OnDone = Callable[[int, ExperimentResult], None]


class Executor(Protocol):
    name: str
    slots: int
    """Experiments that can run at once."""
    has_gpu: bool

    def run(
        self, specs: list[ExperimentSpec], metric: str, on_done: OnDone | None = None
    ) -> list[ExperimentResult]:
        """Results in the order of `specs`; `on_done(index, result)` as each run ends."""
        ...


def local_gpus() -> list[str]:
    """Indices of the local NVIDIA GPUs (empty without nvidia-smi)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class LocalExecutor:
    """`parallel` runs at once; with GPUs, never more than one per GPU."""

    name = "local"

    def __init__(self, parallel: int = 1, gpus: list[str] | None = None) -> None:
        self.gpus = local_gpus() if gpus is None else gpus
        self.has_gpu = bool(self.gpus)
        self.slots = max(1, min(parallel, len(self.gpus)) if self.gpus else parallel)

    def run(
        self, specs: list[ExperimentSpec], metric: str, on_done: OnDone | None = None
    ) -> list[ExperimentResult]:
        results: dict[int, ExperimentResult] = {}
        for start in range(0, len(specs), self.slots):
            chunk = specs[start : start + self.slots]
            if self.gpus:
                chunk = [s.model_copy(update={"gpu": self.gpus[i]}) for i, s in enumerate(chunk)]
            elif len(chunk) > 1:  # parallel CPU runs share the cores instead of oversubscribing them
                threads = max(1, (os.cpu_count() or 1) // len(chunk))
                chunk = [s.model_copy(update={"threads": threads}) for s in chunk]
            with ThreadPoolExecutor(max_workers=len(chunk)) as pool:
                running = {pool.submit(run_experiment, s, metric): start + i for i, s in enumerate(chunk)}
                for future in as_completed(running):
                    index = running[future]
                    results[index] = future.result()
                    if on_done is not None:
                        on_done(index, results[index])
        return [results[i] for i in range(len(specs))]


def _ray_run(spec_json: dict[str, Any], metric: str) -> dict[str, Any]:
    """The remote side: rebuild the spec, run it on this node; plain dicts cross the wire."""
    return run_experiment(ExperimentSpec.model_validate(spec_json), metric).model_dump()


class RayExecutor:
    """Runs a wave as Ray tasks. An already initialised Ray is used as it is (tests); otherwise
    `address` (default "auto": the cluster this node belongs to; or host:port) is joined."""

    name = "ray"

    def __init__(self, address: str | None = None, parallel: int = 1) -> None:
        from harness_opt.evaluate.ray_rollouts import connect

        # one error line for a cluster that cannot be reached (or no ray package), as for eval
        self.ray = ray = connect(address or "auto")
        resources = ray.cluster_resources()
        n_gpu = int(resources.get("GPU", 0))
        self.has_gpu = n_gpu > 0
        self.slots = max(1, min(parallel, n_gpu) if n_gpu else parallel)
        self.remote = ray.remote(num_gpus=1 if self.has_gpu else 0, num_cpus=1, max_retries=0)(_ray_run)

    def run(
        self, specs: list[ExperimentSpec], metric: str, on_done: OnDone | None = None
    ) -> list[ExperimentResult]:
        # Ray queues what does not fit and sets CUDA_VISIBLE_DEVICES for each GPU task itself.
        refs = [self.remote.remote(s.model_dump(), metric) for s in specs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, ExperimentResult] = {}
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ExperimentResult.model_validate(self.ray.get(ref))
                if on_done is not None:
                    on_done(index[ref], results[index[ref]])
        return [results[i] for i in range(len(specs))]


def make_executor(kind: str, *, parallel: int = 1, address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(parallel)
    if kind == "ray":
        return RayExecutor(address, parallel)
    raise UserError(f"unknown executor {kind!r}", where="--executor", fix="use local or ray")
