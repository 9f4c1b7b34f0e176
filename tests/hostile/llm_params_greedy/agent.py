"""Hostile harness `llm_params_greedy`: Asks ctx.llm for a million output tokens and for 64 completions per call."""

import json
import os


def _target():
    """Host paths and ports the test under attack wrote into data/target.json (a copy of this dir)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "data", "target.json")) as fh:
            return json.load(fh)
    except OSError:
        return {}



def run(task, ctx):
    messages = [{"role": "user", "content": task["text"]}]
    first = ctx.llm(messages, max_tokens=10**6)  # a million tokens of output on the user's bill
    ctx.llm(messages, n=64)  # 64 completions for the price of one call
    return first.get("content")
