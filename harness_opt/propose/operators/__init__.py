"""The offline `operators` proposer: deterministic edits drawn from train evidence, no LLM needed.

One module per operator family: `output` (constrained output, snapping, sampling), `demos`
(retrieved demos, candidate labels, failed-case few-shot, label glossary), `voting`
(self-consistency) and `tool_docs` (tool descriptions). Label operators install one configurable
orchestration, `assets/classifier_agent.py`, then change only its config and data, so they compose.
"""

from harness_opt.propose.operators.operator import Operator
from harness_opt.propose.operators.proposer import DEFAULT_OPERATORS, OperatorsProposer

__all__ = ["DEFAULT_OPERATORS", "Operator", "OperatorsProposer"]
