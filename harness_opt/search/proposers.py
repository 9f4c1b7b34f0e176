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
        from harness_opt.propose.llm import LLMProposer

        return LLMProposer(config.meta_model)
    if not config.agent_cmd:
        raise UserError("the agent proposer needs a command", fix="pass --agent-cmd 'your-coding-agent ...'")
    from harness_opt.propose.agent_cli import AgentCLIProposer

    return AgentCLIProposer(config.agent_cmd)
