"""Seed τ²-retail agent: a plain tool-calling loop, one tool call or one message per turn.

The policy asks for exactly that rhythm ("one tool call at a time; do not message the user and call
a tool in the same turn"), so each model reply is either one tool call, run and fed back, or one
message to the customer, whose answer is appended. The conversation ends when the customer does.
"""

import json

GREETING = "Hi! How can I help you today?"
"""τ²'s fixed first agent message; the simulated customer answers it."""
MAX_MODEL_CALLS = 60
"""A guard well under the harness step limit: each turn costs one model call plus one tool or say."""


def _arguments(call):
    """The tool call's arguments as a dict, or an error text the model can read and correct."""
    raw = call.get("function", {}).get("arguments") or "{}"
    if isinstance(raw, dict):
        return raw, None
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return None, f"Error: arguments are not valid JSON ({exc})"
    if not isinstance(args, dict):
        return None, "Error: arguments must be a JSON object"
    return args, None


def _as_text(result):
    if isinstance(result, dict) and set(result) == {"error"}:
        return str(result["error"])
    if isinstance(result, str):
        return result
    return json.dumps(result)


def run(task, ctx):
    messages = [
        {"role": "system", "content": ctx.render("system.j2", task=task)},
        {"role": "assistant", "content": GREETING},
    ]
    user = ctx.say(GREETING)
    if user is None:
        return {"ended_by": "user", "model_calls": 0}
    messages.append({"role": "user", "content": user})
    for calls in range(1, MAX_MODEL_CALLS + 1):
        reply = ctx.llm(messages, tools=ctx.tools, tool_choice="auto")
        tool_calls = reply.get("tool_calls") or []
        if tool_calls:
            call = tool_calls[0]  # one tool call per turn, as the policy says
            call_id = call.get("id") or f"call_{calls}"
            messages.append({
                "role": "assistant",
                "content": reply.get("content"),
                "tool_calls": [{**call, "id": call_id}],
            })
            args, error = _arguments(call)
            name = call.get("function", {}).get("name", "")
            content = error if error is not None else _as_text(ctx.call_tool(name, args))
            messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": content})
            continue
        content = reply.get("content") or ""
        messages.append({"role": "assistant", "content": content})
        user = ctx.say(content)
        if user is None:
            return {"ended_by": "user", "model_calls": calls}
        messages.append({"role": "user", "content": user})
    ctx.log("stopped: model call guard reached", max_model_calls=MAX_MODEL_CALLS)
    return {"ended_by": "max_model_calls", "model_calls": MAX_MODEL_CALLS}
