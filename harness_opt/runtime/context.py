"""`AgentContext`: the one boundary harness code (agent.py) is written against.

Harness code sees nothing but this object and the task input: no scorer, no gold answer, no other
task, no API key, no ledger. In the sandbox each method is a request over a pipe to the parent broker,
which makes the model call or runs the tool, records it in the trace and enforces the limits.

The object harness code really gets is `runtime.zygote.SandboxContext` (the zygote is stdlib-only, so
it cannot import this protocol); mypy checks that it implements the protocol (below), and
tests/test_agent_context.py that it has no member the protocol does not document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol


class AgentContext(Protocol):
    task_id: str
    """Id of the task being run (for logs; the task input is passed to `run` directly)."""

    def llm(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """Call the model. Returns the assistant message as an OpenAI-format dict:
        `{"role": "assistant", "content": str | None, "tool_calls": [...] | None}`.
        `params` (temperature, max_tokens, response_format, ...) override the harness.toml defaults."""
        ...

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run a tool in the suite's environment. A bad call returns `{"error": "..."}`, never raises."""
        ...

    def say(self, message: str) -> str | None:
        """Send a message to the (simulated) user of a conversational suite; returns the user's reply,
        or None once the user has ended the conversation (a stop token or the turn limit). In a suite
        without a user it raises an error the harness may catch. Each call counts as one step."""
        ...

    def render(self, template: str, **variables: Any) -> str:
        """Render `prompts/<template>` (jinja2, StrictUndefined) with `tools` and `variables`."""
        ...

    def log(self, message: str, **data: Any) -> None:
        """Add a note to the trace (what a proposer will read later)."""
        ...

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The harness's tool schemas (tools.json), OpenAI function-calling format."""
        ...


if TYPE_CHECKING:
    from harness_opt.runtime.zygote import SandboxContext

    def _sandbox_context_is_an_agent_context(ctx: SandboxContext) -> AgentContext:
        return ctx  # mypy: SandboxContext must satisfy every member above, with the same types
