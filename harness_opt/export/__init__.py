"""Leaderboard bundles: τ²-bench (taubench.com) submissions from a harness version's rollouts."""

from harness_opt.export.tau2 import ExportConfig, ExportResult, Submitter, export_tau2, load_submitter
from harness_opt.export.tau2_format import ExportError, Submission, Tau2Results, validate_bundle

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
