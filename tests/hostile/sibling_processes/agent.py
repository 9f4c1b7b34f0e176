"""Hostile harness `sibling_processes`: Reads, writes and signals every other process it can see: the fork server and the sibling rollout."""

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


def _try(fn):
    try:
        return f"done: {fn()}"
    except OSError as exc:
        return f"denied: {exc.strerror}"


def _peek(pid):
    with open(f"/proc/{pid}/mem", "rb") as fh:
        fh.seek(0x400000)
        return len(fh.read(16))


def _poke(pid):
    with open(f"/proc/{pid}/mem", "r+b") as fh:
        fh.seek(0x400000)
        return fh.write(b"\xcc")


def run(task, ctx):
    time.sleep(0.3)  # let the sibling rollout start
    me = os.getpid()
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me)
    out = {"pids": pids}
    for pid in pids:
        out[f"{pid} mem read"] = _try(lambda pid=pid: _peek(pid))
        out[f"{pid} mem write"] = _try(lambda pid=pid: _poke(pid))
        out[f"{pid} environ"] = _try(lambda pid=pid: open(f"/proc/{pid}/environ", "rb").read())
        out[f"{pid} root"] = _try(lambda pid=pid: os.listdir(f"/proc/{pid}/root/tmp"))
        out[f"{pid} SIGSTOP"] = _try(lambda pid=pid: os.kill(pid, signal.SIGSTOP))
        out[f"{pid} SIGKILL"] = _try(lambda pid=pid: os.kill(pid, signal.SIGKILL))
    out["kill -1"] = _try(lambda: os.kill(-1, signal.SIGKILL))
    time.sleep(0.6)  # still alive? (a sibling could have killed us)
    out["survived"] = True
    return json.dumps(out)
