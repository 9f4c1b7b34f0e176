"""Hostile harness `kernel_objects`: Takes memory and channels the rlimits do not count: memfd, System V IPC, keyrings, io_uring, mqueues."""

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
import platform

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name, *args):
    result = getattr(_libc, name)(*args)
    return "done" if result >= 0 else f"denied: {os.strerror(ctypes.get_errno())}"


def _memfd():
    fd = os.memfd_create("hostile")
    try:  # memory outside the address-space limit, as long as the fd lives
        for _ in range(8):
            os.write(fd, b"x" * (16 * 1024 * 1024))
        return "done: 128 MiB"
    finally:
        os.close(fd)


_NR = {"x86_64": {"add_key": 248, "io_uring_setup": 425, "mq_open": 240},
       "aarch64": {"add_key": 217, "io_uring_setup": 425, "mq_open": 180}}.get(platform.machine(), {})


def run(task, ctx):
    out = {}
    try:
        out["memfd_create"] = _memfd()
    except OSError as exc:
        out["memfd_create"] = f"denied: {exc.strerror}"
    out["shmget"] = _call("shmget", 0x4855, 64 * 1024 * 1024, 0o1666)  # IPC_CREAT, outlives the process
    out["msgget"] = _call("msgget", 0x4856, 0o1666)
    out["semget"] = _call("semget", 0x4857, 1, 0o1666)
    out["add_key"] = _call("syscall", _NR.get("add_key", -1), b"user", b"hostile", b"secret", 6, -4)
    out["io_uring_setup"] = _call("syscall", _NR.get("io_uring_setup", -1), 8, ctypes.create_string_buffer(120))
    out["mq_open"] = _call("syscall", _NR.get("mq_open", -1), b"hostile", 0o100 | 0o2, 0o666, None)
    return json.dumps(out)
