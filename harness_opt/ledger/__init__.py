"""The DuckDB ledger: named migrations, short-lived connections, typed rows, and the `Ledger` API."""

from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.migrations import MIGRATIONS, migrate, schema
from harness_opt.ledger.rows import DecisionRow, ExperimentRow, RunRow, VersionRow

__all__ = [
    "MIGRATIONS",
    "DecisionRow",
    "ExperimentRow",
    "Ledger",
    "RunRow",
    "VersionRow",
    "migrate",
    "schema",
]
