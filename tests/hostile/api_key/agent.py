"""Hostile harness `api_key`: Looks for API keys: its environment, /proc/*/environ of every visible process."""

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
    found = {k: v for k, v in os.environ.items() if any(s in k for s in ("KEY", "TOKEN", "SECRET"))}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    for item in fh.read().split(b"\0"):
                        if b"KEY=" in item:
                            found[f"/proc/{pid}"] = item.decode(errors="replace")
            except OSError:
                pass
    return json.dumps({"found": found, "names": sorted(os.environ)})
