"""Leaderboard bundles: τ²-bench (taubench.com) submissions from a harness version's rollouts.

τ²'s record models and reward rules live with the suites (`suites/tau2_models.py`,
`suites/tau2_reward.py`: the retail scorer uses them); this package adds the submission format, the
metrics, the validator and the exporter, and imports its heavy parts (the exporter runs the
evaluator) only when they are asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness_opt.export.tau2 import ExportConfig, ExportResult, Submitter, export_tau2, load_submitter
    from harness_opt.export.tau2_format import ExportError, Submission
    from harness_opt.export.tau2_validate import validate_bundle
    from harness_opt.suites.tau2_models import Results as Tau2Results

_WHERE = {
    "ExportConfig": ("tau2", "ExportConfig"),
    "ExportResult": ("tau2", "ExportResult"),
    "Submitter": ("tau2", "Submitter"),
    "export_tau2": ("tau2", "export_tau2"),
    "load_submitter": ("tau2", "load_submitter"),
    "ExportError": ("tau2_format", "ExportError"),
    "Submission": ("tau2_format", "Submission"),
    "Tau2Results": ("harness_opt.suites.tau2_models", "Results"),
    "validate_bundle": ("tau2_validate", "validate_bundle"),
}

__all__ = [
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "Submission",
    "Submitter",
    "Tau2Results",
    "export_tau2",
    "load_submitter",
    "validate_bundle",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _WHERE[name]
    return getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), attr)
