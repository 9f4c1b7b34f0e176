"""The sandboxed fork server: imports agent.py once, then forks one confined child per rollout.

This file runs *inside* the sandbox as a plain script (`python -I zygote.py <init.json>`), so it imports
only the standard library, its sibling `confine.py`, and jinja2 (bound read-only into the sandbox, for
`ctx.render`): no pydantic or litellm, and nothing from the harness_opt package (whose `__init__` may
grow heavy imports). The parent imports it only for the framing helpers and the shared constants below,
which keeps one definition of the wire format.

Wire format
-----------
* Control channel (parent <-> fork server): a SOCK_SEQPACKET socket; one JSON object per datagram, so
  message boundaries and the file descriptors sent with `fork` stay together.
  parent -> server: `{"op": "fork", "id": n}` + one fd (the child's end of a fresh socketpair);
  `{"op": "kill", "id": n}`. server -> parent: `{"op": "importing"}`, then `{"op": "ready", ...}` or
  `{"op": "ready", "error": tb}`; `{"op": "forked", "id": n}` as soon as a child exists (a server that
  stops answering is detected by the missing acknowledgement); `{"op": "exit", "id": n, "status": s,
  "cpu": seconds}` (the child's CPU time, setup and teardown included).
* Rollout channel (broker <-> rollout child): a SOCK_STREAM socketpair, frames of a 4-byte big-endian
  length then UTF-8 JSON. broker -> child first sends `{"task_id", "input"}`; the child's first frame
  is `confined` (or `sandbox`, when its confinement failed: the only time it may say so); then it sends
  requests (`llm`, `tool`, `say` get a reply `{"ok": bool, "value"|"error", "fatal"}`; `log` gets
  none) and finally one of `result`, `invalid_output`, `crash`, `memory`. Templates render
  in the child itself (`ctx.render`): under its own time, memory and output limits, never in the parent.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

if __package__:  # imported by the parent for the wire format
    from harness_opt.runtime import confine
else:  # run as a script inside the sandbox (-I: the script's directory is not on sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import confine  # type: ignore[no-redef]

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
"""Largest frame the child accepts from the broker (task inputs, tool results)."""
MAX_REQUEST = 8 * 1024 * 1024
"""Largest frame the broker accepts from a child: a request or a final message (the parent holds it)."""
CONTROL_MAX = 64 * 1024
EXIT_MEMORY = 86
"""Exit code of a rollout child that hit MemoryError and could not even report it."""
EXIT_PROTOCOL = 87
CAPTURE_LIMIT = 16 * 1024
"""Characters of harness stdout/stderr kept per rollout (the rest is dropped, with a note)."""
RENDER_MAX_CHARS = 1_000_000
"""Longest text `ctx.render` may produce; a template that renders more is an error the harness sees."""
LOG_MESSAGE_CHARS = 10_000
MAX_PROCS = confine.MAX_PROCS


def encode(msg: Any) -> bytes:
    body = json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


CONFINED = encode({"op": "confined"})
"""A rollout child's first frame once it is confined, before harness code runs: only a child that has not
sent it may report a sandbox failure (harness code could otherwise decline a task as "infrastructure")."""


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
    """A request failed and the harness may carry on: `ctx.render` (missing template, undefined
    variable, too much output), bad `ctx.llm` arguments, `ctx.say` in a suite without a user."""


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


class Templates:
    """The version's prompts/*.j2, compiled once in the fork server and rendered by each rollout child.

    Same semantics as the parent's load-time checks (`harness_opt.harness.checks.template_environment`):
    a jinja2 ImmutableSandboxedEnvironment with StrictUndefined and no autoescaping.
    """

    def __init__(self, version_dir: str, tools: list[dict[str, Any]]) -> None:
        self.tools = tools
        self.sources: dict[str, str] = {}
        root = os.path.join(version_dir, "prompts")
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".j2"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as fh:
                        self.sources[os.path.relpath(path, root).replace(os.sep, "/")] = fh.read()
        self.error: str | None = None
        self.env: Any = None
        try:
            from jinja2 import DictLoader, StrictUndefined
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:
            self.error = f"jinja2 is not importable in the sandbox ({exc})"
            return
        self.env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, loader=DictLoader(self.sources)
        )
        for name in self.sources:  # compile once here: every rollout child shares the result
            with contextlib.suppress(Exception):
                self.env.get_template(name)

    def render(self, template: str, variables: dict[str, Any]) -> str:
        if self.env is None:
            raise RenderError(f"ctx.render is unavailable: {self.error}")
        from jinja2 import TemplateError, TemplateNotFound, UndefinedError

        name = str(template).removeprefix("prompts/")
        variables.setdefault("tools", self.tools)
        try:
            compiled = self.env.get_template(name)
        except TemplateNotFound:
            raise RenderError(f"no template {name!r} — fix: use one of {sorted(self.sources)}") from None
        parts: list[str] = []
        size = 0
        try:
            for chunk in compiled.generate(**variables):
                size += len(chunk)
                if size > RENDER_MAX_CHARS:
                    raise RenderError(
                        f"rendering {name!r} produced more than {RENDER_MAX_CHARS} characters "
                        "— fix: bound the loops and the text the template repeats"
                    )
                parts.append(chunk)
        except UndefinedError as exc:
            raise RenderError(
                f"rendering failed: {exc.message} — fix: pass the variable to render(), "
                f"e.g. ctx.render({name!r}, task=task)"
            ) from None
        except TemplateError as exc:
            raise RenderError(
                f"rendering failed: {type(exc).__name__}: {exc} — fix: fix the template "
                "(prompts render in a jinja2 sandbox: no private attributes)"
            ) from None
        except MemoryError:
            raise RenderError(f"rendering {name!r} ran out of memory") from None
        return "".join(parts)


class SandboxContext:
    """The AgentContext harness code gets in the sandbox: every call but `render` is a request to the
    parent broker; `render` runs here, under this rollout's limits."""

    def __init__(
        self, channel: _Channel, task_id: str, tools: list[dict[str, Any]], templates: Templates
    ) -> None:
        self._channel = channel
        self.task_id = task_id
        self._tools = tools
        self._templates = templates
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
        return self._templates.render(template, variables)

    def log(self, message: str, **data: Any) -> None:
        msg = {"op": "log", "message": str(message)[:LOG_MESSAGE_CHARS], "data": data}
        try:
            frame = encode(msg)
        except (TypeError, ValueError, RecursionError):  # a log must never crash the harness
            frame = encode({**msg, "data": {"repr": repr(data)[:LOG_MESSAGE_CHARS]}})
        if len(frame) > MAX_REQUEST:
            frame = encode({**msg, "data": {"truncated": f"[log data of {len(frame)} bytes dropped]"}})
        with self._lock:
            self._channel.sock.sendall(frame)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._tools


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _rollout_child(fd: int, workdir: str, init: dict[str, Any], run: Any, jail: Any, templates: Any) -> int:
    """Body of one forked rollout child; returns the exit code."""
    os.setpgid(0, 0)
    confine.set_pdeathsig()
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):  # fds 1/2 are not the protocol, but C code writes there
        os.dup2(null, target)
    os.close(null)
    channel = _Channel(socket.socket(fileno=fd))
    try:
        jail.enter(workdir)
        os.chdir(workdir)
        jail.lock(init["limits"])
    except Exception as exc:  # never run harness code less confined than promised
        with contextlib.suppress(Exception):
            channel.send({"op": "sandbox", "detail": f"per-rollout confinement failed: {exc}"})
        return 0
    channel.sock.sendall(CONFINED)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    captured = _BoundedText()
    sys.stdout = sys.stderr = captured
    try:
        task = channel.recv()
        ctx = SandboxContext(channel, task["task_id"], init["tools"], templates)
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
        if len(encoded) > MAX_REQUEST:
            detail = f"run() returned {len(encoded)} bytes of JSON (limit {MAX_REQUEST})"
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
        self.jail = confine.Confinement(
            list(init["private_dirs"]), int(init["tmp_bytes"]), sockets=bool(init.get("sockets", False))
        )
        self.templates: Templates | None = None

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
        workdir = (
            self.jail.private_dirs[0]
            if self.jail.private
            else os.path.join(self.init["scratch"], f"r{rollout_id}")
        )
        pid = os.fork()
        if pid == 0:
            code = EXIT_PROTOCOL
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = _rollout_child(fd, workdir, self.init, self.run, self.jail, self.templates)
            finally:
                os._exit(code)
        os.close(fd)
        self.children[pid] = (rollout_id, workdir)
        self.by_id[rollout_id] = pid
        self.send({"op": "forked", "id": rollout_id})

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue  # an orphan re-parented to us (we are pid 1 of the sandbox)
            rollout_id, workdir = entry
            self.by_id.pop(rollout_id, None)
            if not self.jail.private:
                shutil.rmtree(workdir, ignore_errors=True)
            cpu = round(usage.ru_utime + usage.ru_stime, 6)
            self.send({"op": "exit", "id": rollout_id, "status": status, "cpu": cpu})

    def kill(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)

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
                self.kill(pid)
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
        for pid in list(self.children):
            self.kill(pid)


def _sweep_import_leftovers() -> None:
    """As pid 1 of the sandbox, kill every other process: whatever agent.py's import-time code spawned
    must not live on beside the rollouts (kill(-1) from pid 1 reaches the whole namespace but itself)."""
    if os.getpid() != 1:
        return
    for _ in range(3):
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        while True:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == 0:
                break


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        init = json.load(fh)
    confine.set_pdeathsig()
    os.chdir(init["scratch"])
    for path in reversed(init.get("pythonpath", [])):
        sys.path.insert(0, path)
    zygote = Zygote(init)
    confine.confine_fork_server(sockets=zygote.jail.sockets)
    zygote.jail.probe()
    zygote.templates = Templates(init["version_dir"], init["tools"])
    confine.apply_rlimits({**init["limits"], "wall_time_s": 1e9})  # memory etc.; no CPU cap on a server
    zygote.send({"op": "importing"})
    # Import-time output of agent.py must not reach our stderr (the broker's log file): bound it.
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _BoundedText()
    try:
        zygote.load_agent()
    except BaseException as exc:
        zygote.send(
            {
                "op": "ready",
                "error": _tail("".join(traceback.format_exception(exc))),
                "private_tmp": zygote.jail.private,
                "why_shared": zygote.jail.why_shared,
            }
        )
        return 1
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    _sweep_import_leftovers()
    confine.privatize_shared_memory()  # memory agent.py mapped shared must not be shared by rollouts
    zygote.send(
        {
            "op": "ready",
            "pid": os.getpid(),
            "private_tmp": zygote.jail.private,
            "why_shared": zygote.jail.why_shared,
        }
    )
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
