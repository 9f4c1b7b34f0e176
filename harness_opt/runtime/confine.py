"""Per-rollout confinement inside the sandbox: a private /tmp, no capabilities, rlimits and a seccomp filter.

Runs *inside* the sandbox next to zygote.py and, like it, imports only the standard library. Each rollout
child of the fork server calls `Confinement.enter` (its own user and mount namespaces with a fresh,
size-capped tmpfs over /tmp, so rollouts never share files) and then `Confinement.lock`, after which
the process has no capability, cannot gain one, cannot create processes, cannot signal, trace or read
the memory of any other process (the fork server and sibling rollouts included), cannot open sockets
(rollouts share one network namespace: loopback and abstract unix sockets would be a channel between
them) and cannot reach the kernel interfaces that are not bounded by its rlimits (memfd, System V IPC,
keyrings, io_uring). The fork server installs a weaker filter on itself before it imports agent.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import struct
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_THREAD = 0x00010000
SANDBOX_UID = 1000
"""uid and gid of harness code inside a rollout's user namespace (never 0: no root-owned surprises)."""
TMP_INODES = 16384
"""Inodes of a rollout's tmpfs: each costs kernel memory that the size cap does not count."""
MAX_PROCS = 1024
"""RLIMIT_NPROC of a rollout: processes and threads of its user (processes are refused anyway)."""
FILE_SIZE_LIMIT = 64 * 1024 * 1024

_PR_SET_PDEATHSIG, _PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 1, 3, 4
_PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS, _PR_SET_PTRACER = 22, 38, 0x59616D61
_MS_NOSUID, _MS_NODEV = 0x2, 0x4
_CAP_VERSION_3 = 0x20080522

# Syscall numbers per architecture (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h).
_X86_64 = {
    "clone": 56,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "kill": 62,
    "ptrace": 101,
    "tkill": 200,
    "tgkill": 234,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "prctl": 157,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "socket": 41,
    "shmget": 29,
    "shmat": 30,
    "msgget": 68,
    "semget": 64,
    "mq_open": 240,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "execveat": 322,
    "memfd_create": 319,
    "userfaultfd": 323,
    "perf_event_open": 298,
    "bpf": 321,
    "open_by_handle_at": 304,
    "name_to_handle_at": 303,
    "capset": 126,
}
_AARCH64 = {
    "clone": 220,
    "execve": 221,
    "kill": 129,
    "ptrace": 117,
    "tkill": 130,
    "tgkill": 131,
    "rt_sigqueueinfo": 138,
    "rt_tgsigqueueinfo": 240,
    "prctl": 167,
    "mount": 40,
    "umount2": 39,
    "pivot_root": 41,
    "chroot": 51,
    "unshare": 97,
    "setns": 268,
    "socket": 198,
    "shmget": 194,
    "shmat": 196,
    "msgget": 186,
    "semget": 190,
    "mq_open": 180,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "execveat": 281,
    "memfd_create": 279,
    "userfaultfd": 282,
    "perf_event_open": 241,
    "bpf": 280,
    "open_by_handle_at": 265,
    "name_to_handle_at": 264,
    "capset": 91,
}
_COMMON = {  # the same number on both (the unified table from 4.x on)
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_open": 434,
    "clone3": 435,
    "pidfd_send_signal": 424,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "memfd_secret": 447,
}
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}

# Refused everywhere in the sandbox (fork server included): other processes' memory, sockets, kernel
# objects that outlive a process or escape its rlimits, new mounts and namespaces outside our own setup.
_DENY_ALWAYS = (
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "process_madvise",
    "tkill",
    "socket",
    "memfd_create",
    "memfd_secret",
    "shmget",
    "shmat",
    "msgget",
    "semget",
    "mq_open",
    "add_key",
    "request_key",
    "keyctl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "bpf",
    "setns",
    "pivot_root",
    "chroot",
    "open_by_handle_at",
    "name_to_handle_at",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
)
# Refused to a rollout once it is set up (the fork server needs them to set rollouts up).
_DENY_ROLLOUT = ("mount", "umount2", "unshare", "capset")
_SIGNAL_CALLS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

_BPF_LD, _BPF_JEQ, _BPF_JGE, _BPF_JSET, _BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_PID_SLOT = 0xDEAD_BEEF
"""Placeholder for the rollout's pid in the compiled filter; patched per child (no recompiling)."""

_libc = ctypes.CDLL(None, use_errno=True)


class ConfinementError(Exception):
    """A step of the per-rollout setup failed; the text names the step and the errno."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ConfinementError(f"{what}: {os.strerror(err)} (errno {err})")


def prctl(option: int, arg: int = 0) -> int:
    return int(_libc.prctl(option, arg, 0, 0, 0))


def set_pdeathsig() -> None:
    """Die with our parent, so no process of a rollout outlives the fork server (nor it the broker)."""
    with contextlib.suppress(Exception):
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def set_dumpable(flag: bool) -> None:
    """Non-dumpable: /proc/<pid>/mem, environ, fd/, root/ and ptrace need CAP_SYS_PTRACE, which no one
    in the sandbox has; so neither siblings nor the fork server can be read, written or traced."""
    prctl(_PR_SET_DUMPABLE, 1 if flag else 0)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _compile(prog: list[Any]) -> bytes:
    """Assemble (op, k, label?) tuples and "label" strings into classic BPF."""
    labels: dict[str, int] = {}
    code: list[tuple[Any, ...]] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    jumps = {"jeq": _BPF_JEQ, "jne": _BPF_JEQ, "jge": _BPF_JGE, "jset": _BPF_JSET}
    raw = bytearray()
    for i, (op, k, *target) in enumerate(code):
        if op in ("ld", "ret"):
            raw += struct.pack("HBBI", _BPF_LD if op == "ld" else _BPF_RET, 0, 0, k)
            continue
        off = labels[target[0]] - i - 1
        if not 0 <= off < 256:
            raise ValueError("seccomp program too long for a short jump")
        jt, jf = (0, off) if op == "jne" else (off, 0)
        raw += struct.pack("HBBI", jumps[op], jt, jf, k)
    return bytes(raw)


def seccomp_program(rollout: bool, sockets: bool = False) -> bytes | None:
    """The filter for a rollout (`rollout=True`: pid placeholder inside) or for the fork server;
    `sockets=True` leaves socket() alone (isolation 'none', which promises no network isolation).

    Foreign-ABI calls (32-bit `int 0x80`, x32) are refused outright: their numbers differ, so a filter
    that only knows the native table would otherwise be bypassed. None on an unknown architecture.
    """
    spec = _ARCHES.get(os.uname().machine)
    if spec is None:
        return None
    arch, table = spec
    nr = {**table, **_COMMON}
    prog: list[Any] = [("ld", 4), ("jne", arch, "deny"), ("ld", 0), ("jge", 0x40000000, "deny")]
    deny = [name for name in _DENY_ALWAYS if not (sockets and name == "socket")]
    if rollout:
        deny += _DENY_ROLLOUT
        prog += [("jeq", nr["clone3"], "nosys"), ("jeq", nr["clone"], "clone")]
        prog += [("jeq", nr[name], "again") for name in ("fork", "vfork") if name in nr]
        prog += [("jeq", nr[name], "signal") for name in _SIGNAL_CALLS]
        prog += [("jeq", nr["prctl"], "prctl")]
    prog += [("jeq", nr[name], "deny") for name in deny if name in nr]
    prog += [("ret", _RET_ALLOW)]
    if rollout:
        prog += [
            "clone",
            ("ld", 16),
            ("jset", CLONE_THREAD, "allow"),
            "again",
            ("ret", _RET_ERRNO | errno.EAGAIN),
            # kill(pid), kill(0) = own process group (just itself), kill(-pid); never -1 (everyone).
            "signal",
            ("ld", 16),
            ("jeq", _PID_SLOT, "allow"),
            ("jeq", 0, "allow"),
            ("jeq", (-_PID_SLOT) & 0xFFFFFFFF, "allow"),
            ("ret", _RET_ERRNO | errno.EPERM),
            "prctl",
            ("ld", 16),
            ("jeq", _PR_SET_DUMPABLE, "deny"),
            ("jeq", _PR_SET_PTRACER, "deny"),
            ("ret", _RET_ALLOW),
            "nosys",
            ("ret", _RET_ERRNO | errno.ENOSYS),
        ]
    prog += ["deny", ("ret", _RET_ERRNO | errno.EPERM), "allow", ("ret", _RET_ALLOW)]
    return _compile(prog)


def install_seccomp(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program)

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(prctl(_PR_SET_NO_NEW_PRIVS, 1), "PR_SET_NO_NEW_PRIVS")
    _check(int(_libc.prctl(_PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0)), "seccomp")


def _patched(program: bytes, pid: int) -> bytes:
    """The rollout filter with the placeholder pid (and its negation) replaced by `pid`."""
    out = bytearray(program)
    slots = {_PID_SLOT: pid & 0xFFFFFFFF, (-_PID_SLOT) & 0xFFFFFFFF: (-pid) & 0xFFFFFFFF}
    for i in range(0, len(out), 8):
        code, jt, jf, k = struct.unpack_from("HBBI", out, i)
        if code == _BPF_JEQ and k in slots:
            struct.pack_into("HBBI", out, i, code, jt, jf, slots[k])
    return bytes(out)


_PROT = {"r": 0x1, "w": 0x2, "x": 0x4}
_MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = 0x02, 0x10, 0x20
_MAP_FAILED = ctypes.c_void_p(-1).value
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def shared_mappings(maps: str) -> list[tuple[int, int, int]]:
    """(start, end, protection) of every shared mapping in a /proc/<pid>/maps text."""
    out = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) < 2 or not fields[1].endswith("s"):
            continue
        start, _, end = fields[0].partition("-")
        prot = sum(bit for flag, bit in _PROT.items() if flag in fields[1])
        out.append((int(start, 16), int(end, 16), prot))
    return out


def _map(addr: int | None, length: int, flags: int) -> int | None:
    got = _libc.mmap(addr, length, _PROT["r"] | _PROT["w"], _MAP_PRIVATE | _MAP_ANONYMOUS | flags, -1, 0)
    return None if got in (None, _MAP_FAILED) else int(got)


def privatize_shared_memory() -> int:
    """Turn every shared mapping of this process into a private copy; returns how many.

    The fork server calls it once agent.py is imported: a MAP_SHARED mapping made at import time (one
    line: `mmap.mmap(-1, n)`) is not copied by fork, so every rollout would read and write the same
    pages, a channel between rollouts and trials. Each becomes private, anonymous memory at the same
    address with the same contents, which fork then copies like every other page. Once, not per
    rollout: reading /proc/self/maps in each child cost ~2 ms of CPU per rollout.
    """
    with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
        found = shared_mappings(fh.read())
    for start, end, prot in found:
        length = end - start
        copy = _map(None, length, 0)
        if copy is not None and _libc.mprotect(start, length, _PROT["r"]) == 0:
            ctypes.memmove(copy, start, length)
        if _map(start, length, _MAP_FIXED) != start:
            raise ConfinementError(f"could not make the shared mapping at {start:#x} private")
        if copy is not None:
            ctypes.memmove(start, copy, length)
            _libc.munmap(copy, length)
        _libc.mprotect(start, length, prot)
    return len(found)


def drop_capabilities() -> None:
    """Empty effective, permitted and inheritable sets; with no_new_privs nothing can bring them back."""
    spec = _ARCHES.get(os.uname().machine)
    if spec is None:
        raise ConfinementError("capset: unknown architecture")
    header = struct.pack("Ii", _CAP_VERSION_3, 0)
    _check(int(_libc.syscall(spec[1]["capset"], header, bytes(24))), "capset")


def apply_rlimits(limits: dict[str, Any]) -> None:
    mem = int(limits["memory_mb"]) * 1024 * 1024
    cpu = int(float(limits["wall_time_s"])) + 1
    for res, soft, hard in (
        (resource.RLIMIT_AS, mem, mem),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT, FILE_SIZE_LIMIT),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, MAX_PROCS, MAX_PROCS),
        (resource.RLIMIT_MEMLOCK, 0, 0),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(res, (soft, hard))


class Confinement:
    """What a rollout child does to itself between fork and harness code; built once in the fork server."""

    def __init__(self, private_dirs: list[str], tmp_bytes: int, sockets: bool = False) -> None:
        self.private_dirs = private_dirs
        self.tmp_options = f"size={int(tmp_bytes)},nr_inodes={TMP_INODES},mode=0700".encode()
        self.sockets = sockets
        self.program = seccomp_program(rollout=True, sockets=sockets)
        self.private = True
        """False once `probe` found that this kernel refuses nested user namespaces here."""
        self.why_shared = ""

    def probe(self) -> None:
        """Try the namespace setup once in a throwaway child; remember whether rollouts get private dirs."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._namespaces()
                code = 0
            except ConfinementError as exc:
                with contextlib.suppress(OSError):
                    os.write(2, str(exc).encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            self.private = False
            self.why_shared = "this kernel or its security policy refuses nested user namespaces here"

    def _namespaces(self) -> None:
        uid, gid = os.geteuid(), os.getegid()
        set_dumpable(True)  # our /proc/self/*_map must be ours to write (non-dumpable: owned by root)
        _check(int(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS)), "unshare(user, mount namespaces)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{SANDBOX_UID} {uid} 1")
        _write("/proc/self/gid_map", f"{SANDBOX_UID} {gid} 1")
        for path in self.private_dirs:
            _check(
                int(_libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, self.tmp_options)),
                f"mount tmpfs on {path}",
            )

    def enter(self, workdir: str) -> None:
        """Private, size-capped dirs when the probe said they work; else a fresh dir in the shared scratch."""
        if self.private:
            self._namespaces()
        else:
            os.makedirs(workdir, exist_ok=True)

    def lock(self, limits: dict[str, Any]) -> None:
        """The point of no return before harness code: no capabilities, rlimits, seccomp, not dumpable."""
        with contextlib.suppress(ConfinementError):
            drop_capabilities()  # none to drop outside a fresh user namespace (cap-drop ALL in bwrap)
        set_dumpable(False)
        set_pdeathsig()  # a credential change clears it
        apply_rlimits(limits)
        if self.program is not None:
            install_seccomp(_patched(self.program, os.getpid()))


def confine_fork_server(sockets: bool = False) -> None:
    """The fork server's own filter, installed before agent.py is imported (its import-time code runs
    here): no exec, sockets, ptrace or the other always-refused calls; forks and mounts stay allowed
    because the fork server needs them to set rollouts up."""
    set_dumpable(False)
    program = seccomp_program(rollout=False, sockets=sockets)
    if program is not None:
        install_seccomp(program)
