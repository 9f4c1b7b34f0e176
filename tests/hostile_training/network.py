"""Hostile train.py: reach the network (a listener on the host's loopback, the internet, DNS)."""

import json
import socket

TARGETS: dict = {}


def tcp(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=3) as conn:
        conn.sendall(b"train.py was here")


outcome = {}
for name, attempt in (
    ("loopback", lambda: tcp("127.0.0.1", TARGETS["port"])),
    ("internet", lambda: tcp("1.1.1.1", 80)),
    ("dns", lambda: socket.getaddrinfo("example.com", 80)),
):
    try:
        attempt()
        outcome[name] = "connected"
    except OSError as exc:
        outcome[name] = type(exc).__name__
print("HOSTILE " + json.dumps(outcome))
