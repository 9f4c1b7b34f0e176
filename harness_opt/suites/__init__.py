"""Suites: the protocol, the suite.toml loader, table-backed suites, splits and scorers."""

from harness_opt.suites.base import Environment, NoTools, Suite, ToolError
from harness_opt.suites.loader import load_suite
from harness_opt.suites.scorers import exact_match, exact_match_scorer
from harness_opt.suites.table import TableSuite

__all__ = [
    "Environment",
    "NoTools",
    "Suite",
    "TableSuite",
    "ToolError",
    "exact_match",
    "exact_match_scorer",
    "load_suite",
]
