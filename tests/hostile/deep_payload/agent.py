"""Hostile harness `deep_payload`: Returns, logs and passes to a tool a value nested 300 levels deep."""

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



def _deep(n):
    value = "bottom"
    for _ in range(n):
        value = [value]
    return value


def run(task, ctx):
    ctx.log("deep log", data=_deep(300))
    ctx.call_tool("lookup", {"query": _deep(300)})
    return {"label": _deep(300)}
