"""The text of every file `harness-opt init` writes; each says in comments what to fill in."""

from __future__ import annotations

HARNESS_TOML = """# Version 1 of the {name} agent. Immutable once evaluated: `optimize` writes v0002, ...
[harness]
name = "{name}"
version = 1
proposer = "seed"
hypothesis = "baseline: your own system prompt and tools, a plain tool-calling loop"
changes = []

# The model ctx.llm calls by default (any litellm string, e.g. "openai/gpt-4o-mini"; `harness-opt
# models` lists the local ones). `eval --model` overrides it.
[model]
name = "{model}"
params = {{ temperature = 0, max_tokens = 256 }}

[runtime]
entrypoint = "agent.py:run"

# Per-rollout limits: a rollout that hits one scores 0 with the reason recorded.
[runtime.limits]
max_steps = 24
wall_time_s = 120
"""

AGENT_PY = '''"""{name}: a plain tool-calling loop, the default `harness-opt init` writes.

run(task, ctx) gets the task input (the suite's `input` columns) and returns the final answer, which
the suite's scorer compares with the expected outcome. Edit freely: the optimizer's proposers will.
ctx is the whole world: ctx.llm, ctx.call_tool, ctx.render, ctx.log and ctx.tools (tools.json).

While this line stays, the offline `operators` proposer may replace this loop by its configurable
task agent (the same loop plus switches): harness-opt init tool loop v1. Delete the line once you
make the loop your own, and the operators will leave agent.py alone.
"""

import json

MAX_MODEL_CALLS = 8
"""A guard under the step limit in harness.toml: each turn is one model call plus its tool calls."""


def _arguments(call):
    raw = call.get("function", {{}}).get("arguments") or "{{}}"
    if isinstance(raw, dict):
        return raw, None
    try:
        args = json.loads(raw)
    except ValueError as exc:
        return None, f"Error: arguments are not valid JSON ({{exc}})"
    return (args, None) if isinstance(args, dict) else (None, "Error: arguments must be a JSON object")


def run(task, ctx):
    messages = [
        {{"role": "system", "content": ctx.render("system.j2", task=task)}},
        {{"role": "user", "content": ctx.render("user.j2", task=task)}},
    ]
    tools = ctx.tools or None
    for _ in range(MAX_MODEL_CALLS):
        reply = ctx.llm(messages, tools=tools) if tools else ctx.llm(messages)
        calls = reply.get("tool_calls") or []
        if not calls:
            return (reply.get("content") or "").strip()
        messages.append({{"role": "assistant", "content": reply.get("content"), "tool_calls": calls}})
        for n, call in enumerate(calls):
            call_id = call.get("id") or f"call_{{n}}"
            name = call.get("function", {{}}).get("name", "")
            args, error = _arguments(call)
            result = error if error is not None else ctx.call_tool(name, args)
            content = result if isinstance(result, str) else json.dumps(result)
            messages.append({{"role": "tool", "tool_call_id": call_id, "name": name, "content": content}})
    ctx.log("stopped: model call guard reached", max_model_calls=MAX_MODEL_CALLS)
    return ""
'''

SYSTEM_J2_HEADER = """{# The system prompt (jinja2). Variables: task (the task input: task.<column>), tools.
   Fill in what your agent must do and the exact shape of its final answer. -#}
"""

DEFAULT_SYSTEM = """You are a helpful support agent. Use the tools to look things up before answering.
Answer with the final result only.
"""

USER_J2 = """{# The first user message (jinja2): render the task input columns your suite declares. -#}
{% for key, value in task.items() %}{{ value }}
{% endfor %}"""

SUITE_TOML = """# The {name} suite: your tasks, scorer and tools. Schema: harness_opt/suites/data_schema.py.
[suite]
name = "{name}"
description = "FILL IN: what a task is and what counts as success."

# Tasks: one row per task. source is a .jsonl / .csv / .parquet file in this folder, or
# "hf:<dataset id or local folder>" (a local path never touches the network).
# The agent's input text is these columns' values, one per line (what prompts/user.j2 renders and
# what the offline operators retrieve on). A classification suite needs nothing more: its label set
# is the distinct `expected` values of the train rows; a JSON `expected` makes it an extraction suite.
[data]
source = "tasks.jsonl"
id = "id"                 # column with a stable task id
input = ["message"]       # columns the agent sees (rendered by prompts/user.j2)
expected = "expected"     # column with the expected outcome (never shown to the agent)

# Splits: given by a column in the data ...
[splits]
column = "split"
# ... or generated with a seed instead (delete `column` above):
# seed = 0
# train = 0.6
# val = 0.2
# test = 0.2

# Scorer: exact | json_field (fields = ["status", "order.id"]) | predicate (function =
# "checks.py:name", gets task, output, env) | judge (rubric = "...", model = "...": non-deterministic).
[scorer]
kind = "exact"

[environment]
timeout_s = 10            # per tool call

# Tools: bind each tool in tools.json to a Python function in tools.py or an HTTP endpoint:
#   [tools.NAME]  kind = "http", url = "/path", base_url_env = "MY_API_BASE", auth_header_env = "MY_API_AUTH"
{tools}"""

TOOL_BINDING = """[tools.{tool}]
kind = "python"
function = "tools.py:{tool}"
"""

TOOLS_PY_HEADER = '''"""Tools of the {name} suite, run by the broker (parent side) when the agent calls them.

Each function gets the tool call's arguments as keyword arguments (add a `state` parameter to get the
per-rollout state from [environment].state). Return JSON-able data; raise
harness_opt.suites.base.ToolError("...") for a bad call: its text goes back to the agent.
"""

from harness_opt.suites.base import ToolError
'''

TOOL_FUNCTION = '''

def {tool}({params}):
    """FILL IN: {description}"""
    raise ToolError("{tool} is not implemented yet: edit tasks/{name}/tools.py")
'''

TASKS_JSONL = (
    '{"id": "example-1", "message": "FILL IN: what a user asks", "expected": "FILL IN", "split": "train"}\n'
    '{"id": "example-2", "message": "FILL IN", "expected": "FILL IN", "split": "val"}\n'
    '{"id": "example-3", "message": "FILL IN", "expected": "FILL IN", "split": "test"}\n'
)
