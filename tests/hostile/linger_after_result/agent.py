"""Hostile harness `linger_after_result`: Sends its result itself, starts a new session, then holds 150 MB and sleeps past the rollout."""

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
    # Report a result straight onto the channel, then stay: hold memory and sleep past the rollout.
    ctx._channel.send({"op": "result", "output": "card_arrival", "stdout": ""})
    os.setsid()  # a new session and process group: out of the one the fork server would kill
    hoard = bytearray(150 * 1024 * 1024)
    for i in range(0, len(hoard), 4096):
        hoard[i] = 1
    time.sleep(30)
    return "never reached"
