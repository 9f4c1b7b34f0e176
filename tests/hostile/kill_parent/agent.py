"""Hostile harness `kill_parent`: Kills its parent (the fork server) and every process it can signal."""

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

import signal


def run(task, ctx):
    ppid = os.getppid()
    os.kill(ppid, signal.SIGKILL)
    return f"killed {ppid}"
