"""Seed banking77 agent: one zero-shot call with every label in the system prompt.

The system prompt is identical for every task and the task text comes last, so a local model can
reuse its KV cache for the shared prefix.
"""


def run(task, ctx):
    messages = [
        {"role": "system", "content": ctx.render("system.j2")},
        {"role": "user", "content": ctx.render("user.j2", task=task)},
    ]
    reply = ctx.llm(messages)
    return (reply.get("content") or "").strip()
