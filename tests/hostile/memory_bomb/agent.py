"""Hostile harness `memory_bomb`: Allocates memory until something stops it."""

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
    blocks = []
    while True:
        blocks.append(bytearray(64 * 1024 * 1024))
