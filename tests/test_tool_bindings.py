"""Tools of your own: Python callables and HTTP endpoints, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness_opt.suites.base import ToolError
from harness_opt.suites.tool_bindings import BoundTools, HttpTool, PythonTool
from tests.support.acme import acme_server


class _Flaky(BaseHTTPRequestHandler):
    """/slow sleeps past the client's timeout; /boom answers 500 with a body; /echo echoes headers."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/slow":
            time.sleep(1.5)
        status, payload = (
            (500, b"database exploded: connection reset") if self.path == "/boom" else (200, b"")
        )
        if self.path == "/echo":
            payload = json.dumps(
                {
                    "args": json.loads(body),
                    "auth": self.headers.get("Authorization"),
                    "task": self.headers.get("X-Harness-Opt-Task"),
                }
            ).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_tool_posts_json_and_returns_the_answer(monkeypatch):
    monkeypatch.setenv("ACME_API_TOKEN", "Bearer t0k")  # the server demands it (same process here)
    monkeypatch.setenv("CLIENT_AUTH", "Bearer t0k")
    with acme_server() as base:
        monkeypatch.setenv("ACME_API_BASE", base)
        tools = BoundTools(
            Path("."),
            {
                "check_refund_policy": HttpTool(
                    kind="http",
                    url="/check_refund_policy",
                    base_url_env="ACME_API_BASE",
                    auth_header_env="CLIENT_AUTH",
                )
            },
        )
        env = tools.environment("T001")
        result = env.call_tool("check_refund_policy", {"order_id": "a1010", "reason": "defective"})
        assert result["action"] == "deny" and "30-day" in result["why"]
        assert env.calls[0].name == "check_refund_policy" and env.calls[0].result == result
        # a 404 from the backend is a tool error the agent reads, with status and body
        with pytest.raises(ToolError, match=r"HTTP 404 .*no order A9999"):
            env.call_tool("check_refund_policy", {"order_id": "A9999", "reason": "damaged"})
        assert env.calls[-1].error is not None
        # the wrong token: 401, also a tool error
        monkeypatch.setenv("CLIENT_AUTH", "Bearer wrong")
        with pytest.raises(ToolError, match="HTTP 401"):
            env.call_tool("check_refund_policy", {"order_id": "A1001", "reason": "damaged"})


def test_http_timeout_5xx_headers_and_missing_env(flaky, monkeypatch):
    monkeypatch.setenv("MY_AUTH", "Token abc")
    tools = BoundTools(
        Path("."),
        {
            "slow": HttpTool(kind="http", url=f"{flaky}/slow", timeout_s=0.3),
            "boom": HttpTool(kind="http", url=f"{flaky}/boom"),
            "echo": HttpTool(kind="http", url=f"{flaky}/echo", auth_header_env="MY_AUTH"),
            "rel": HttpTool(kind="http", url="/x", base_url_env="UNSET_BASE_FOR_TEST"),
        },
        default_timeout_s=5,
    )
    env = tools.environment("task-7")
    t0 = time.perf_counter()
    with pytest.raises(ToolError, match="timeout"):
        env.call_tool("slow", {})
    assert time.perf_counter() - t0 < 1.2  # the per-call timeout, not the server's 1.5 s
    with pytest.raises(ToolError, match=r"HTTP 500 .*database exploded"):
        env.call_tool("boom", {"a": 1})
    echoed = env.call_tool("echo", {"q": [1, 2]})
    assert echoed == {"args": {"q": [1, 2]}, "auth": "Token abc", "task": "task-7"}
    with pytest.raises(ToolError, match="UNSET_BASE_FOR_TEST"):
        env.call_tool("rel", {})
    with pytest.raises(ToolError, match="unknown tool 'nope'"):
        env.call_tool("nope", {})


def test_python_tools_state_and_errors(tmp_path):
    (tmp_path / "tools.py").write_text(
        "from harness_opt.suites.base import ToolError\n"
        "def add(a, b, state):\n"
        "    state['total'] += a + b\n"
        "    return state['total']\n"
        "def picky(x):\n"
        "    if x < 0:\n"
        "        raise ToolError('x must be >= 0')\n"
        "    return x\n"
        "def crash():\n"
        "    return 1 / 0\n"
    )
    tools = BoundTools(
        tmp_path,
        {name: PythonTool(kind="python", function=f"tools.py:{name}") for name in ("add", "picky", "crash")},
    )
    env = tools.environment("t", state={"total": 0})
    assert env.call_tool("add", {"a": 2, "b": 3}) == 5
    assert env.call_tool("add", {"a": 1, "b": 1}) == 7
    assert tools.environment("t2", state={"total": 0}).call_tool("add", {"a": 1, "b": 0}) == 1  # fresh state
    with pytest.raises(ToolError, match="x must be >= 0"):
        env.call_tool("picky", {"x": -1})
    with pytest.raises(ToolError, match="bad arguments for 'picky'"):
        env.call_tool("picky", {"y": 1})
    with pytest.raises(ToolError, match="ZeroDivisionError"):
        env.call_tool("crash", {})
