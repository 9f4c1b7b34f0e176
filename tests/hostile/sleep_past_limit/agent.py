"""Hostile harness `sleep_past_limit`: Sleeps far past the wall-time limit (no CPU use, so RLIMIT_CPU never fires)."""

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

import time


def run(task, ctx):
    time.sleep(3600)
    return "woke"
