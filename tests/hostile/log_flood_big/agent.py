"""Hostile harness `log_flood_big`: Logs 40 MB through ctx.log and returns a 5 MB output."""

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
    blob = "L" * (4 * 1024 * 1024)
    for i in range(10):  # 40 MB of log payload
        ctx.log(f"flood {i}", blob=blob)
    return "O" * (5 * 1024 * 1024)  # and a 5 MB output
