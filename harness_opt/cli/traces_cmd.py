"""`harness-opt traces`: read what happened in a rollout, message by message."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from harness_opt.records import (
    ErrorEvent,
    LLMCallEvent,
    LogEvent,
    OutputEvent,
    ToolCallEvent,
    Trace,
    UserTurnEvent,
)

app = typer.Typer(help="Inspect rollout traces recorded by eval and optimize.", no_args_is_help=True)


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""What a terminal acts on (C0 but tab and newline, DEL, C1 with the 8-bit CSI, bidi overrides); rich
passes it through, and trace text is model- and harness-written."""


def _spelled(text: str) -> str:
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def _scrubbed(value: Any) -> Any:
    """`value` (a trace as JSON data) with every control character in its strings spelled out."""
    if isinstance(value, str):
        return _spelled(value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit or limit <= 0 else text[:limit] + f" … [{len(text) - limit} more chars]"


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # multi-part content
        content = " ".join(str(part.get("text", part)) for part in content)
    text = str(content or "")
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {})
        text += f"\n→ tool call {fn.get('name')}({fn.get('arguments')})"
    return text


def render_trace(trace: Trace, console: Console, width: int = 2000) -> None:
    """Show a trace as a conversation: each model call with the messages it added, then tools and output."""
    trace = Trace.model_validate(_scrubbed(trace.model_dump(mode="json")))
    k = trace.key
    verdict = "[green]PASS[/]" if trace.passed else "[red]FAIL[/]"
    header = (
        f"{verdict} score {trace.score:.3f}   task [bold]{escape(k.task_id)}[/] trial {k.trial}   "
        + escape(
            f"version {k.version_hash[:12]}   {k.suite}/{k.split}   model {k.model}\n"
            f"run {trace.run_id}   input: {_clip(json.dumps(trace.task_input), 300)}"
        )
    )
    console.print(Panel(header, title="rollout", expand=True))
    if trace.feedback:
        console.print(f"[bold]feedback:[/] {escape(trace.feedback)}")
    if trace.error:
        console.print(f"[bold red]error {escape(trace.error)}:[/] {escape(trace.error_detail or '')}")
    seen = 0
    for n, event in enumerate(trace.events, 1):
        if isinstance(event, LLMCallEvent):
            new = event.messages[seen:] if len(event.messages) >= seen else event.messages
            seen = len(event.messages) + 1
            console.print(_llm_panel(n, event, new, width))
        elif isinstance(event, ToolCallEvent):
            console.print(_tool_panel(n, event, width))
        elif isinstance(event, UserTurnEvent):
            console.print(_user_panel(n, event, width))
        elif isinstance(event, LogEvent):
            data = json.dumps(event.data) if event.data else ""
            console.print(f"[dim]log:[/] {escape(event.message)} {escape(data)}")
        elif isinstance(event, OutputEvent):
            console.print(f"[bold]output:[/] {escape(_clip(json.dumps(event.output, default=str), width))}")
        elif isinstance(event, ErrorEvent):
            console.print(f"[bold red]{escape(event.kind)}:[/] {escape(event.reason)}")


def _llm_panel(n: int, event: LLMCallEvent, new: list[dict[str, Any]], width: int) -> Panel:
    """One model call: the messages it added to the conversation, and its reply."""
    parts: list[Any] = [
        Text(f"[{m.get('role')}] ", style="bold") + Text(_clip(_content(m), width)) for m in new
    ]
    reply = event.response or {}
    parts.append(Text("[assistant] ", style="bold cyan") + Text(_clip(_content(reply), width)))
    meta = (
        f"llm #{n} · {event.model} · in {event.tokens_in} / out {event.tokens_out} tokens · "
        f"${event.cost_usd:.5f} · {event.latency_s:.2f}s" + (" · cached" if event.cached else "")
    )
    if event.error:
        parts.append(Text(f"error: {event.error}", style="red"))
    return Panel(Group(*parts), title=escape(meta), title_align="left")


def _tool_panel(n: int, event: ToolCallEvent, width: int) -> Panel:
    body = Text(f"args: {json.dumps(event.args)}\n")
    body += (
        Text(f"error: {event.error}", style="red")
        if event.error
        else Text(f"result: {_clip(json.dumps(event.result, default=str), width)}")
    )
    title = f"tool #{n} · {event.name} · {event.latency_s:.3f}s"
    return Panel(body, title=escape(title), title_align="left", border_style="magenta")


def _user_panel(n: int, event: UserTurnEvent, width: int) -> Panel:
    """A turn with the simulated user: what the agent said, what the user answered."""
    body = Text("[agent → user] ", style="bold") + Text(_clip(event.agent_message, width))
    reply = "(the user has left)" if event.reply is None else _clip(event.reply, width)
    body += Text("\n[user] ", style="bold green") + Text(reply)
    if event.done:
        body += Text(f"\n(conversation ended: {event.stop_reason})", style="dim")
    meta = (
        f"user #{n} · simulator {event.model} · in {event.tokens_in} / out {event.tokens_out} "
        f"tokens · ${getattr(event, 'cost_usd', 0.0):.5f}"
    )
    return Panel(body, title=escape(meta), title_align="left", border_style="green")


@app.command("show")
def show(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix), as printed by eval.")],
    task: Annotated[str, typer.Argument(help="Task id.")],
    trial: Annotated[int, typer.Option(help="Trial number.")] = 0,
    width: Annotated[int, typer.Option(help="Clip long messages to this many characters (0: never).")] = 2000,
) -> None:
    """Print one rollout's trace: messages, model calls with tokens/cost/latency, tool calls, output."""
    from harness_opt.evaluate.tracestore import read_trace
    from harness_opt.ledger.lookup import find_run_rollout

    rollout = find_run_rollout(run, task, trial)
    if rollout.trace_ref is None:
        raise typer.BadParameter("this rollout has no trace")
    render_trace(read_trace(rollout.trace_ref), Console(), width)


@app.command("list")
def list_traces(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    failed: Annotated[bool, typer.Option("--failed", help="Only rollouts that did not pass.")] = False,
) -> None:
    """List the rollouts of a run: task, trial, score, error, so you can pick one to show."""
    from rich.table import Table

    from harness_opt.ledger.lookup import run_rollouts

    table = Table()
    for col in ("task", "trial", "score", "error", "feedback"):
        table.add_column(col)
    for r in run_rollouts(run):
        if failed and r.passed:
            continue
        cells = (r.task_id, str(r.trial), f"{r.score:.2f}", r.error or "", _clip(r.feedback, 80))
        table.add_row(*(Text(_spelled(c)) for c in cells))
    Console().print(table)
