"""Hostile harness `tmp_fill`: Fills /tmp, /dev/shm and its home (memory-backed) as far as they go."""

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



def _fill(folder, cap):
    """Write 32 MiB files until the file system refuses (or `cap`, so a broken sandbox can't eat the host)."""
    written = 0
    chunk = b"x" * (32 * 1024 * 1024)
    try:
        while written < cap:
            with open(os.path.join(folder, f"fill-{written}"), "wb") as fh:
                fh.write(chunk)
            written += len(chunk)
    except OSError:
        pass
    return written


def run(task, ctx):
    return json.dumps({"/tmp": _fill("/tmp", 1024**3), "/dev/shm": _fill("/dev/shm", 1024**3),
                       "home": _fill(os.path.expanduser("~"), 1024**3)})
