"""User-facing errors: each says what was wrong, where, and what to do, and the CLI prints it as one line.

Anything raised as a `UserError` is the user's input at fault (a bad path, a malformed harness, an
unknown model string); the CLI shows its message and exits non-zero without a traceback. Every other
exception is a bug in harness-opt and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. `where` is a file (and line or field) and `fix` the action to take."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return " — ".join(parts)


class HarnessError(UserError):
    """A harness version directory that does not load (bad TOML, schema, template, agent.py)."""


class SuiteError(UserError):
    """A suite that does not load, or an unknown split."""


class ModelError(UserError):
    """A model string litellm cannot route, or a local model file that is missing."""


class LedgerError(UserError):
    """The ledger file is unusable (locked too long, newer schema than this tool knows)."""
