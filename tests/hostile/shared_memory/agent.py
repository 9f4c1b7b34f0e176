"""Hostile harness `shared_memory`: Maps shared memory while agent.py is imported, in the fork server (every rollout inherits the mapping), and passes task texts from rollout to rollout through it: an anonymous MAP_SHARED mapping, a file-backed one in the fork server's /tmp, and one mapped read-only then made writable."""

import json
import mmap
import os

SIZE = 1 << 16
ANON = mmap.mmap(-1, SIZE)  # MAP_SHARED | MAP_ANONYMOUS: fork() does not copy it
_fd = os.open("/tmp/hostile-shared", os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(_fd, SIZE)
FILE = mmap.mmap(_fd, SIZE)  # MAP_SHARED on a file the rollouts cannot open (their /tmp is private)
READONLY = mmap.mmap(_fd, SIZE, access=mmap.ACCESS_READ)


def _exchange(area, text):
    """What earlier rollouts left in `area`, then leave our text there too."""
    try:
        seen = bytes(area[:SIZE]).rstrip(b"\0").decode(errors="replace")
        area.seek(len(seen.encode()))
        area.write((text + "\n").encode())
        return [line for line in seen.splitlines() if line]
    except Exception as exc:
        return [f"error: {type(exc).__name__}: {exc}"]


def run(task, ctx):
    readonly = [line for line in bytes(READONLY[:SIZE]).rstrip(b"\0").decode(errors="replace").splitlines()]
    found = {"anon": _exchange(ANON, task["text"]), "file": _exchange(FILE, task["text"])}
    return json.dumps({"found": found, "readonly": readonly, "me": task["text"]})
