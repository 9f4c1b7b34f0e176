"""Hostile harness `kill_parent`: SIGKILLs its parent (the fork server) and pid 1 of the sandbox."""

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
    out = {}
    for pid in sorted({os.getppid(), 1}):
        try:
            os.kill(pid, signal.SIGKILL)
            out[str(pid)] = "killed"
        except OSError as exc:
            out[str(pid)] = f"denied: {exc.strerror}"
    return json.dumps(out)
