"""Hostile harness `fd_and_proc`: Looks for inherited file descriptors; writes its version dir through /proc/self/root and /proc/1/root."""

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



def _write(path):
    try:
        with open(path, "w") as fh:
            fh.write("PLANTED")
        return "done"
    except OSError as exc:
        return f"denied: {exc.strerror}"


def run(task, ctx):
    here = os.path.dirname(os.path.abspath(__file__))
    fds = {}
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError as exc:
            fds[fd] = f"? {exc.strerror}"
    out = {"fds": fds, "channel": ctx._channel.sock.fileno()}
    out["via /proc/self/root"] = _write(f"/proc/self/root{here}/planted.py")
    out["via /proc/1/root"] = _write(f"/proc/1/root{here}/planted.py")
    out["via /proc/1/cwd"] = _write("/proc/1/cwd/planted.py")
    try:
        out["/proc/1/environ"] = open("/proc/1/environ", "rb").read().decode(errors="replace")
    except OSError as exc:
        out["/proc/1/environ"] = f"denied: {exc.strerror}"
    out["huge name"] = _write("/tmp/" + "n" * 300)
    return json.dumps(out)
