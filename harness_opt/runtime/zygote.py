"""The sandboxed fork server: imports agent.py once, then forks one child per rollout.

This file runs *inside* the sandbox as a plain script (`python -I zygote.py <init.json>`), so it imports
only the standard library: no pydantic, litellm or jinja2, and nothing from the harness_opt package
(whose `__init__` may grow heavy imports). The parent imports it only for the framing helpers and the
shared constants below, which keeps one definition of the wire format.

Wire format
-----------
* Control channel (parent <-> zygote): a SOCK_SEQPACKET socket; one JSON object per datagram, so
  message boundaries and the file descriptors sent with `fork` stay together.
  parent -> zygote: `{"op": "fork", "id": n}` + one fd (the child's end of a fresh socketpair);
  `{"op": "kill", "id": n}`. zygote -> parent: `{"op": "ready"}` or `{"op": "ready", "error": tb}`;
  `{"op": "exit", "id": n, "status": <raw wait status>}`.
* Rollout channel (broker <-> rollout child): a SOCK_STREAM socketpair, frames of a 4-byte big-endian
  length then UTF-8 JSON. broker -> child first sends `{"task_id", "input"}`; then the child sends
  requests (`llm`, `tool`, `say`, `render` get a reply `{"ok": bool, "value"|"error", "fatal"}`; `log`
  gets none)
  and finally one of `result`, `invalid_output`, `crash`, `memory`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
"""Largest frame either side accepts; a bigger one is a protocol violation (the rollout crashes)."""
CONTROL_MAX = 64 * 1024
EXIT_MEMORY = 86
"""Exit code of a rollout child that hit MemoryError and could not even report it."""
EXIT_PROTOCOL = 87
CAPTURE_LIMIT = 16 * 1024
"""Characters of harness stdout/stderr kept per rollout (the rest is dropped, with a note)."""
_PR_SET_PDEATHSIG = 1
MAX_PROCS = 1024
"""RLIMIT_NPROC of a rollout child: processes + threads of the sandbox's user, so a fork bomb stops here."""


def encode(msg: Any) -> bytes:
    body = json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def _set_pdeathsig() -> None:
    """Die with our parent, so no orphan outlives the broker (bwrap's --die-with-parent does the same)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _BoundedText:
    """Stands in for sys.stdout/sys.stderr of harness code: keeps the first CAPTURE_LIMIT characters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> int:
        text = str(text)
        room = CAPTURE_LIMIT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[... {self.dropped} more characters dropped]"
        return out


class RenderError(Exception):
    """A request failed in the parent and the harness may carry on: `ctx.render` (missing template,
    undefined variable), bad `ctx.llm` arguments, `ctx.say` in a suite without a user."""


class RolloutAborted(BaseException):
    """The broker ended the rollout (a limit was hit); a BaseException so `except Exception` can't eat it."""


class _Channel:
    """Blocking framed JSON over the rollout socket (the child has nothing else to do while waiting)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, msg: Any) -> None:
        self.sock.sendall(encode(msg))

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise RolloutAborted("the broker closed the channel")
            got += k
        return bytes(buf)

    def recv(self) -> Any:
        (n,) = HEADER.unpack(self._exact(HEADER.size))
        if n > MAX_FRAME:
            raise RolloutAborted("frame too large")
        return json.loads(self._exact(n))


class SandboxContext:
    """The AgentContext harness code gets in the sandbox: every call is a request to the parent broker."""

    def __init__(self, channel: _Channel, task_id: str, tools: list[dict[str, Any]]) -> None:
        self._channel = channel
        self.task_id = task_id
        self._tools = tools
        self._lock = threading.Lock()  # harness threads must not interleave request and reply

    def _request(self, msg: dict[str, Any]) -> Any:
        with self._lock:
            self._channel.send(msg)
            reply = self._channel.recv()
        if reply.get("ok"):
            return reply.get("value")
        if reply.get("fatal"):
            raise RolloutAborted(reply.get("error", "rollout ended by the broker"))
        raise RenderError(reply.get("error", "request failed"))

    def llm(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        return self._request({"op": "llm", "messages": messages, "tools": tools, "params": params})

    def call_tool(self, name: str, args: dict[str, Any]) -> Any:
        return self._request({"op": "tool", "name": name, "args": args})

    def say(self, message: str) -> str | None:
        reply = self._request({"op": "say", "message": str(message)})
        return None if reply is None else str(reply)

    def render(self, template: str, **variables: Any) -> str:
        return str(self._request({"op": "render", "template": template, "variables": variables}))

    def log(self, message: str, **data: Any) -> None:
        msg = {"op": "log", "message": str(message)[:10_000], "data": data}
        try:
            frame = encode(msg)
        except (TypeError, ValueError, RecursionError):  # a log must never crash the harness
            frame = encode({**msg, "data": {"repr": repr(data)[:10_000]}})
        with self._lock:
            self._channel.sock.sendall(frame)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._tools


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _apply_limits(limits: dict[str, Any]) -> None:
    mem = int(limits["memory_mb"]) * 1024 * 1024
    cpu = int(float(limits["wall_time_s"])) + 1
    for res, soft, hard in (
        (resource.RLIMIT_AS, mem, mem),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, 64 * 1024 * 1024, 64 * 1024 * 1024),
        (resource.RLIMIT_NOFILE, 256, 256),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, MAX_PROCS, MAX_PROCS),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(res, (soft, hard))
    if _host_root():
        _forbid_processes()


def _host_root() -> bool:
    """Whether we run as root of the host, for which the kernel ignores RLIMIT_NPROC.

    bwrap started by root maps the sandbox's uid 0 onto host uid 0, so the fork-bomb cap above would
    not bind; `/proc/self/uid_map` says which host uid we really are.
    """
    euid = os.geteuid()
    try:
        with open("/proc/self/uid_map", encoding="ascii") as fh:
            for line in fh:
                inside, outside, count = (int(x) for x in line.split())
                if inside <= euid < inside + count:
                    return outside + (euid - inside) == 0
    except (OSError, ValueError):
        pass
    return euid == 0


_SECCOMP_SYSCALLS = {
    "x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435}),
    "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435}),
}
_BPF_LD, _BPF_JEQ, _BPF_JGE, _BPF_JSET, _BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_CLONE_THREAD = 0x00010000


def _forbid_processes() -> bool:
    """Seccomp filter: threads may be created, processes may not (fork, vfork, posix_spawn fail EAGAIN).

    The fork-bomb guard for host root, where RLIMIT_NPROC does not apply. clone3 answers ENOSYS so
    glibc falls back to clone, whose flags the filter can read; foreign-ABI syscalls are refused.
    Returns False (no filter) on an architecture without a syscall table here.
    """
    spec = _SECCOMP_SYSCALLS.get(os.uname().machine)
    if spec is None:
        return False
    arch, nr = spec
    prog: list[Any] = [("ld", 4), ("jne", arch, "deny"), ("ld", 0), ("jge", 0x40000000, "deny"),
                       ("jeq", nr["clone3"], "nosys"), ("jeq", nr["clone"], "clone")]
    prog += [("jeq", nr[name], "again") for name in ("fork", "vfork") if name in nr]
    prog += [("ret", _RET_ALLOW), "clone", ("ld", 16), ("jset", _CLONE_THREAD, "allow"),
             "again", ("ret", _RET_ERRNO | 11), "nosys", ("ret", _RET_ERRNO | 38),
             "deny", ("ret", _RET_ERRNO | 1), "allow", ("ret", _RET_ALLOW)]
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
        jt, jf = (0, off) if op == "jne" else (off, 0)
        raw += struct.pack("HBBI", jumps[op], jt, jf, k)
    program = ctypes.create_string_buffer(bytes(raw))

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = _SockFprog(len(code), ctypes.addressof(program))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required for an unprivileged filter
        return False
    return bool(libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0)  # PR_SET_SECCOMP, MODE_FILTER


def _rollout_child(fd: int, workdir: str, init: dict[str, Any], run: Any) -> int:
    """Body of one forked rollout child; returns the exit code."""
    os.setpgid(0, 0)
    _set_pdeathsig()
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):  # fds 1/2 are not the protocol, but C code and subprocesses write there
        os.dup2(null, target)
    os.close(null)
    captured = _BoundedText()
    sys.stdout = sys.stderr = captured
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    os.environ["HOME"] = workdir
    os.environ["TMPDIR"] = workdir
    _apply_limits(init["limits"])
    channel = _Channel(socket.socket(fileno=fd))
    try:
        task = channel.recv()
        ctx = SandboxContext(channel, task["task_id"], init["tools"])
        try:
            output = run(task["input"], ctx)
        except RolloutAborted:
            return 0
        except MemoryError:
            channel.send({"op": "memory", "detail": "MemoryError", "stdout": captured.text()})
            return 0
        except BaseException as exc:  # harness code may raise anything, SystemExit included
            tb = _tail("".join(traceback.format_exception(exc)))
            channel.send({"op": "crash", "detail": tb, "stdout": captured.text()})
            return 0
        try:
            encoded = encode({"op": "result", "output": output, "stdout": captured.text()})
        except (TypeError, ValueError, RecursionError) as exc:
            detail = f"run() returned a {type(output).__name__} that is not JSON-serialisable: {exc}"
            channel.send({"op": "invalid_output", "detail": detail, "stdout": captured.text()})
            return 0
        channel.sock.sendall(encoded)
        return 0
    except MemoryError:
        return EXIT_MEMORY
    except (RolloutAborted, OSError):
        return EXIT_PROTOCOL


class Zygote:
    """The fork server loop: fork on request, kill on request, report every child's exit status."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.init = init
        self.control = socket.socket(fileno=int(init["control_fd"]))
        self.control.setblocking(True)
        self.children: dict[int, tuple[int, str]] = {}  # pid -> (rollout id, workdir)
        self.by_id: dict[int, int] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.run: Any = None

    def load_agent(self) -> None:
        file_name, _, func = self.init["entrypoint"].partition(":")
        version_dir = self.init["version_dir"]
        sys.path.insert(0, version_dir)
        path = os.path.join(version_dir, file_name)
        spec = importlib.util.spec_from_file_location("agent", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["agent"] = module
        spec.loader.exec_module(module)
        run = getattr(module, func or "run", None)
        if not callable(run):
            raise AttributeError(f"{file_name} defines no callable '{func or 'run'}'")
        self.run = run

    def send(self, msg: dict[str, Any]) -> None:
        self.control.send(json.dumps(msg).encode())

    def fork(self, rollout_id: int, fd: int) -> None:
        workdir = os.path.join(self.init["scratch"], f"r{rollout_id}")
        pid = os.fork()
        if pid == 0:
            code = EXIT_PROTOCOL
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = _rollout_child(fd, workdir, self.init, self.run)
            finally:
                os._exit(code)
        os.close(fd)
        self.children[pid] = (rollout_id, workdir)
        self.by_id[rollout_id] = pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # whatever the harness spawned goes with it
            if entry is None:
                continue  # an orphan re-parented to us (we may be pid 1 of the namespace)
            rollout_id, workdir = entry
            self.by_id.pop(rollout_id, None)
            shutil.rmtree(workdir, ignore_errors=True)
            self.send({"op": "exit", "id": rollout_id, "status": status})

    def kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def on_control(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, CONTROL_MAX, 4)
        except OSError:
            return False
        if not data:
            return False
        msg = json.loads(data)
        if msg["op"] == "fork" and fds:
            self.fork(int(msg["id"]), fds[0])
            for extra in fds[1:]:
                os.close(extra)
        elif msg["op"] == "kill":
            pid = self.by_id.get(int(msg["id"]))
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        else:
            for extra in fds:
                os.close(extra)
        return True

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        gc.freeze()  # keep the imported agent's objects out of the children's copy-on-write faults
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        alive = True
        while alive:
            for key, _ in selector.select():
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                elif not self.on_control():
                    alive = False
            self.reap()
        self.kill_all()


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        init = json.load(fh)
    _set_pdeathsig()
    os.chdir(init["scratch"])
    zygote = Zygote(init)
    # Import-time output of agent.py must not reach our stderr (the broker's log file): bound it.
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _BoundedText()
    try:
        zygote.load_agent()
    except BaseException as exc:
        zygote.send({"op": "ready", "error": _tail("".join(traceback.format_exception(exc)))})
        return 1
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    zygote.send({"op": "ready", "pid": os.getpid()})
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
