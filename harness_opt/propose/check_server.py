"""`./check` for a coding agent in its sandbox: a request over a unix socket, answered out here.

The agent edits `harness/` in a bubblewrap sandbox that holds no key and no val/test data, so a check
cannot run in there: the candidate's one train task needs the broker (which holds the keys) and the
suite. The work dir therefore gets a small stdlib-only client, `./check [TRAIN_TASK_ID]`, that sends
one line over a socket in the work dir (the only path both sides see) and prints the answer. This
side hands the directory to the domain's checker, which reads it without following links, loads it
and runs one **train** task through the real evaluator (a task id that is not a train task is
refused). What comes back is the load result and that train rollout: nothing the agent could not
already read in its traces, and no path, key or sealed text.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from harness_opt.propose.base import CheckResult
from harness_opt.propose.workspace import HARNESS_DIR

log = logging.getLogger(__name__)

SOCKET_NAME = ".check.sock"
SCRIPT_NAME = "check"
MAX_REQUEST_BYTES = 4096
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin

CLIENT = '''#!{python} -I
"""Check the candidate in harness/ the way the optimize loop validates one: it must load (templates
parse, agent.py compiles, tools.json is valid), then one train task runs through the real evaluator
and its score and raw trace are printed. Usage: ./check [TRAIN_TASK_ID]"""
import json, os, socket, sys

here = os.path.dirname(os.path.abspath(__file__))
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(os.path.join(here, "{socket}"))
task = sys.argv[1] if len(sys.argv) > 1 else None
conn.sendall((json.dumps({{"task": task}}) + "\\n").encode())
data = b""
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
text = data.decode("utf-8", "replace")
print(text)
sys.exit(0 if text.startswith("OK") else 1)
'''


class CheckServer:
    """Answers `./check` from one work dir, at most `limit` times, while the agent runs (a context
    manager: the socket exists only inside the `with`)."""

    def __init__(self, workdir: Path, checker: Callable[[Path, str | None], CheckResult], limit: int) -> None:
        self.workdir = workdir
        self.checker = checker
        self.limit = limit
        self.used = 0
        self.results: list[CheckResult] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def path(self) -> Path:
        return self.workdir / SOCKET_NAME

    def available(self) -> bool:
        """False where the socket path would be too long for AF_UNIX (a very deep TMPDIR)."""
        return len(str(self.path).encode()) <= _SOCKET_PATH_MAX

    def write_client(self) -> Path:
        script = self.workdir / SCRIPT_NAME
        script.write_text(CLIENT.format(python=sys.executable, socket=SOCKET_NAME), encoding="utf-8")
        script.chmod(0o755)
        return script

    def __enter__(self) -> CheckServer:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        sock.listen(4)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="agent-check", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._answer(conn)
                except OSError as exc:  # the agent hung up: nothing to answer
                    log.info("check: connection closed early: %s", exc)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        request = b""
        while b"\n" not in request and len(request) < MAX_REQUEST_BYTES:
            chunk = conn.recv(MAX_REQUEST_BYTES)
            if not chunk:
                break
            request += chunk
        conn.settimeout(None)
        conn.sendall(self.handle(request[:MAX_REQUEST_BYTES]).encode("utf-8", "replace"))

    def handle(self, request: bytes) -> str:
        """The answer to one request line (`{"task": id or null}`): 'OK ...' or 'FAIL ...'."""
        try:
            task = json.loads(request.decode("utf-8", "replace").strip() or "{}").get("task")
        except (ValueError, AttributeError):
            return 'FAIL: a request is one JSON line {"task": ID or null}'
        if task is not None and not isinstance(task, str):
            return "FAIL: the task must be a train task id"
        if self.used >= self.limit:
            return f"FAIL: the check limit ({self.limit} per candidate) is used up; hand the candidate back"
        self.used += 1
        try:  # the checker reads the directory without following links (`workspace.read_tree`)
            result = self.checker(self.workdir / HARNESS_DIR, task)
        except Exception as exc:  # the checker must answer; a bug there is a failed check
            result = CheckResult(ok=False, report=f"the check itself failed: {type(exc).__name__}: {exc}")
        self.results.append(result)
        head = "OK" if result.ok else "FAIL"
        return f"{head} (check {self.used} of {self.limit})\n{result.report}\n"
