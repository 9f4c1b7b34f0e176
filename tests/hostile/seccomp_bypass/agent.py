"""Hostile harness `seccomp_bypass`: Goes around the syscall filter: 32-bit int 0x80, x32, ptrace, pidfd, fork, posix_spawn, execve."""

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
import mmap
import platform
import threading

_libc = ctypes.CDLL(None, use_errno=True)


def _result(value):
    return "done" if value >= 0 else f"denied: {os.strerror(-value if value < -1 else ctypes.get_errno())}"


def _int80_getpid():
    """A 32-bit system call (i386 getpid = 20) from 64-bit code: `mov eax, 20; int 0x80; ret`."""
    if platform.machine() != "x86_64":
        return "n/a"
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(b"\xb8\x14\x00\x00\x00\xcd\x80\xc3")
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    value = ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
    return "done" if value > 0 else f"denied: errno {-value}"


def run(task, ctx):
    out = {"int 0x80": _int80_getpid()}
    out["x32 getpid"] = _result(_libc.syscall(0x40000000 | 39))
    out["ptrace attach 1"] = _result(_libc.ptrace(16, 1, None, None))
    out["process_vm_readv 1"] = _result(_libc.process_vm_readv(1, None, 0, None, 0, 0))
    out["pidfd_open 1"] = _result(_libc.syscall(434, 1, 0))
    for name, call in (("fork", os.fork), ("posix_spawn", lambda: os.posix_spawn("/bin/true", ["true"], {}))):
        try:
            pid = call()
            if pid == 0:
                os._exit(0)
            out[name] = f"done: {pid}"
        except OSError as exc:
            out[name] = f"denied: {exc.strerror}"
    out["thread"] = "done" if threading.Thread(target=lambda: None).start() is None else "?"
    try:
        os.execv("/bin/true", ["true"])  # replaces this process: a result would never be sent
    except OSError as exc:
        out["execve"] = f"denied: {exc.strerror}"
    return json.dumps(out)
