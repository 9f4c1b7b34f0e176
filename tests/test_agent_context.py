"""`AgentContext` is the contract harness code is written against, and the sandbox's context is it:
the same members with the same signatures, nothing more (mypy checks the types, this the surface)."""

from __future__ import annotations

import inspect

from harness_opt.runtime.context import AgentContext
from harness_opt.runtime.zygote import SandboxContext


def public(cls: type) -> dict[str, object]:
    return {n: m for n, m in vars(cls).items() if not n.startswith("_")}


def test_the_sandbox_context_has_exactly_the_documented_members() -> None:
    documented = set(public(AgentContext)) | set(AgentContext.__annotations__)
    assert set(public(SandboxContext)) | {"task_id"} == documented
    assert "task_id" in AgentContext.__annotations__  # an attribute, set per rollout


def test_each_method_has_the_documented_signature() -> None:
    for name, member in public(AgentContext).items():
        real = getattr(SandboxContext, name)
        if isinstance(member, property):
            assert isinstance(real, property), name
            continue
        assert inspect.signature(real) == inspect.signature(member), name  # type: ignore[arg-type]
