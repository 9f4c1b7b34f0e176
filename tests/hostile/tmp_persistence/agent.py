"""Hostile harness `tmp_persistence`: Leaves its task text in /tmp, its home and /dev/shm, and reads what earlier rollouts left there."""

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

import glob


def run(task, ctx):
    found = {}
    for pattern in ("/tmp/hostile-*", os.path.expanduser("~/hostile-*"), "/dev/shm/hostile-*", "/scratch/*/hostile-*"):
        for path in glob.glob(pattern):
            with open(path) as fh:
                found[path] = fh.read()
    wrote = {}
    for folder in ("/tmp", os.path.expanduser("~"), "/dev/shm"):
        path = os.path.join(folder, f"hostile-{os.getpid()}")
        try:
            with open(path, "w") as fh:
                fh.write(task["text"])
            wrote[folder] = "written"
        except OSError as exc:
            wrote[folder] = f"denied: {exc.strerror}"
    return json.dumps({"found": found, "wrote": wrote})
