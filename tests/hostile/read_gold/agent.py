"""Hostile harness `read_gold`: Reads the suite's gold answers: test.csv, suite.toml, the ledger, the traces dir."""

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
    out = {}
    for path in _target().get("secret_files", []) + ["/etc/shadow", "/root/.bash_history"]:
        try:
            with open(path, "rb") as fh:
                out[path] = f"read {len(fh.read())} bytes"
        except OSError as exc:
            out[path] = f"denied: {exc.strerror}"
    for folder in _target().get("secret_dirs", []):
        try:
            out[folder] = f"listed {len(os.listdir(folder))} entries"
        except OSError as exc:
            out[folder] = f"denied: {exc.strerror}"
    return json.dumps(out)
