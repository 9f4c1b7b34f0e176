"""harness-opt: improve an AI agent's harness overnight, keeping only changes that are really better.

The library API mirrors the CLI: `evaluate(...)` is `harness-opt eval`, `optimize(...)` is
`harness-opt optimize` (the plot the command draws: `plot_progress(result)`). Imports are lazy so
that `import harness_opt` stays fast; litellm is only loaded when a model is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import harness_opt.llm.litellm_setup  # noqa: F401  (sets litellm's environment before anyone imports it)

__version__ = "0.1.0"

_LAZY = {
    "evaluate": "harness_opt.evaluate.evaluator",
    "evaluate_async": "harness_opt.evaluate.evaluator",
    "EvalConfig": "harness_opt.evaluate.config",
    "EvalResult": "harness_opt.evaluate.evaluator",
    "HarnessVersion": "harness_opt.harness.version",
    "load_suite": "harness_opt.suites.loader",
    "Ledger": "harness_opt.ledger",
    "LLMClient": "harness_opt.llm.client",
    "LLMConfig": "harness_opt.llm.client",
    "optimize": "harness_opt.search.loop",
    "optimize_async": "harness_opt.search.loop",
    "OptimizeConfig": "harness_opt.search.config",
    "OptimizeResult": "harness_opt.search.records",
    "Budget": "harness_opt.search.budget",
    "plot_progress": "harness_opt.report.progress_plot",
}

__all__ = [
    "Budget",
    "EvalConfig",
    "EvalResult",
    "HarnessVersion",
    "LLMClient",
    "LLMConfig",
    "Ledger",
    "OptimizeConfig",
    "OptimizeResult",
    "__version__",
    "evaluate",
    "evaluate_async",
    "load_suite",
    "optimize",
    "optimize_async",
    "plot_progress",
]

if TYPE_CHECKING:
    from harness_opt.evaluate.evaluator import EvalConfig, EvalResult, evaluate, evaluate_async
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.ledger import Ledger
    from harness_opt.llm.client import LLMClient, LLMConfig
    from harness_opt.report.progress_plot import plot_progress
    from harness_opt.search.budget import Budget
    from harness_opt.search.config import OptimizeConfig
    from harness_opt.search.loop import optimize, optimize_async
    from harness_opt.search.records import OptimizeResult
    from harness_opt.suites.loader import load_suite


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness_opt' has no attribute {name!r}")
