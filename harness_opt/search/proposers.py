"""The proposer an optimize run asks, by name: the domain's offline operators, a meta-model, or an agent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness_opt.errors import UserError
from harness_opt.llm.catalog import validate_model
from harness_opt.propose.base import Proposer
from harness_opt.search.config import OptimizeConfig

if TYPE_CHECKING:
    from harness_opt.search.domain import Domain


def make_proposer(config: OptimizeConfig, domain: Domain) -> Proposer:
    if config.proposer == "operators":
        return domain.operators()
    if config.proposer == "llm":
        if not config.meta_model:
            raise UserError(
                "the llm proposer needs a meta-model",
                fix="pass --meta-model, e.g. --meta-model openai/gpt-4.1 or local/smollm2",
            )
        validate_model(config.meta_model)
        from harness_opt.propose.llm import LLMProposer  # dspy loads only when a meta-model is used

        return LLMProposer(
            config.meta_model,
            mode=config.proposer_mode,
            context_tokens=config.meta_context,
            max_steps=config.meta_steps,
            max_checks=config.max_checks,
        )
    if config.agent_cmd and config.agent_preset:
        raise UserError(
            "both --agent-cmd and --agent-preset are given",
            fix="keep one: a preset runs a known coding-agent CLI, --agent-cmd any command",
        )
    if not config.agent_cmd and not config.agent_preset:
        raise UserError(
            "the agent proposer needs a coding agent",
            fix="pass --agent-preset claude|codex|gemini|aider|opencode, or --agent-cmd 'your-agent ...'",
        )
    from harness_opt.propose.agent_cli import AgentCLIProposer

    if config.agent_preset:
        return AgentCLIProposer.from_preset(
            config.agent_preset, timeout_s=config.agent_timeout, max_checks=config.max_checks
        )
    assert config.agent_cmd is not None
    return AgentCLIProposer(config.agent_cmd, timeout_s=config.agent_timeout, max_checks=config.max_checks)
