"""Hostile harness `capabilities`: Uses the capabilities of root in the sandbox: remounts its version dir read-write and writes to it."""

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

import ctypes

_libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096


def _errno(result):
    return "done" if result == 0 else f"denied: {os.strerror(ctypes.get_errno())}"


def run(task, ctx):
    here = os.path.dirname(os.path.abspath(__file__))
    out = {"status": [line.strip() for line in open("/proc/self/status") if line.startswith("Cap")]}
    out["remount version dir rw"] = _errno(_libc.mount(None, here.encode(), None, MS_REMOUNT | MS_BIND, None))
    try:
        with open(os.path.join(here, "planted.py"), "w") as fh:
            fh.write("PLANTED = True\n")
        out["write version dir"] = "done"
    except OSError as exc:
        out["write version dir"] = f"denied: {exc.strerror}"
    out["mount tmpfs over it"] = _errno(_libc.mount(b"tmpfs", here.encode(), b"tmpfs", 0, None))
    out["umount /tmp"] = _errno(_libc.umount2(b"/tmp", 2))
    out["unshare user ns"] = _errno(_libc.unshare(0x10000000))
    out["chroot"] = _errno(_libc.chroot(b"/tmp"))
    out["setns"] = _errno(_libc.setns(0, 0))
    return json.dumps(out)
