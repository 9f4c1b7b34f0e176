"""Acme's (fictional) order API: two JSON endpoints the acme-support agent's tools call over HTTP.

    python examples/acme-support/server.py --port 8765        # serves http://127.0.0.1:8765

POST /lookup_order         {"order_id": "A1003"}                      -> the order, or 404
POST /check_refund_policy  {"order_id": "A1003", "reason": "damaged"} -> {"action": ..., "why": ...}

When ACME_API_TOKEN is set, every request must carry `Authorization: <that value>` (401 otherwise),
which is how suite.toml's `auth_header_env` is exercised. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ORDERS: dict[str, dict[str, Any]] = {
    "A1001": {"item": "espresso machine", "amount": 249.0, "status": "delivered", "days_since_delivery": 3},
    "A1002": {"item": "phone case", "amount": 19.0, "status": "delivered", "days_since_delivery": 45},
    "A1003": {"item": "desk lamp", "amount": 39.0, "status": "delivered", "days_since_delivery": 10},
    "A1004": {"item": "running shoes", "amount": 120.0, "status": "in_transit", "days_since_delivery": None},
    "A1005": {"item": "television", "amount": 899.0, "status": "delivered", "days_since_delivery": 5},
    "A1006": {"item": "backpack", "amount": 65.0, "status": "lost", "days_since_delivery": None},
    "A1007": {"item": "headphones", "amount": 150.0, "status": "delivered", "days_since_delivery": 20},
    "A1008": {"item": "coffee beans", "amount": 14.0, "status": "delivered", "days_since_delivery": 2},
    "A1009": {"item": "office chair", "amount": 310.0, "status": "lost", "days_since_delivery": None},
    "A1010": {"item": "blender", "amount": 89.0, "status": "delivered", "days_since_delivery": 31},
    "A1011": {"item": "laptop", "amount": 1299.0, "status": "delivered", "days_since_delivery": 7},
    "A1012": {"item": "yoga mat", "amount": 25.0, "status": "in_transit", "days_since_delivery": None},
}
REFUNDABLE = {"damaged", "wrong_item", "defective"}


def refund_policy(order_id: str, reason: str) -> dict[str, str]:
    """Acme's policy: what to do for a complaint about an order."""
    order = ORDERS[order_id]
    if order["status"] == "lost":
        return {"action": "replace", "why": "the carrier lost the parcel: send a replacement"}
    if order["status"] == "in_transit":
        return {"action": "deny", "why": "the order is still in transit: ask the customer to wait"}
    if order["amount"] > 500:
        return {"action": "escalate", "why": "orders over $500 need a human agent"}
    if order["days_since_delivery"] > 30:
        return {"action": "deny", "why": "the 30-day return window has passed"}
    if reason in REFUNDABLE:
        return {"action": "refund", "why": f"{reason} within 30 days: refund in full"}
    return {"action": "deny", "why": f"'{reason}' is not a refundable reason"}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        token = os.environ.get("ACME_API_TOKEN")
        if token and self.headers.get("Authorization") != token:
            return self._send(401, {"error": "missing or wrong Authorization header"})
        try:
            args = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            return self._send(400, {"error": "body is not JSON"})
        order_id = str(args.get("order_id", "")).strip().upper()
        if self.path not in ("/lookup_order", "/check_refund_policy"):
            return self._send(404, {"error": f"no endpoint {self.path}"})
        if order_id not in ORDERS:
            return self._send(404, {"error": f"no order {order_id or '(empty)'}; ids look like A1001"})
        if self.path == "/lookup_order":
            return self._send(200, {"order_id": order_id, **ORDERS[order_id]})
        return self._send(200, {"order_id": order_id, **refund_policy(order_id, str(args.get("reason", "")))})

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


def serve(port: int = 8765, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one); call serve_forever() on it."""
    return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    server = serve(parser.parse_args().port)
    print(f"serving on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
