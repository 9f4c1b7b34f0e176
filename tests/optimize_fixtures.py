"""Moved to `tests/support/optimize.py`; kept only for test_hostile_optimize.py, which another change
owns. Import from `tests.support.optimize` in new code."""

from tests.support.optimize import (  # noqa: F401
    MARKER,
    SEED,
    SUITE,
    ScriptedProposer,
    gold_by_text,
    marker_rounds,
    prompt_sensitive_responder,
)
