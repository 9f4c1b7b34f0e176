"""Hostile harness `abstract_socket`: Meets the sibling rollout on an abstract unix socket and on loopback TCP inside the sandbox."""

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
import time


def _meet(family, address):
    """Rendezvous with the sibling rollout: the first binds and listens, the second connects."""
    try:
        server = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return f"denied: {exc.strerror}"
    try:
        server.bind(address)
        server.listen(1)
        server.settimeout(1.5)
        conn, _ = server.accept()
        return "received: " + conn.recv(1000).decode()
    except OSError:
        pass
    finally:
        server.close()
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(1.5)
    try:
        client.connect(address)
        client.sendall(b"hello from a sibling rollout")
        return "connected"
    except OSError as exc:
        return f"refused: {exc.strerror}"
    finally:
        client.close()


def run(task, ctx):
    out = {"abstract unix": _meet(socket.AF_UNIX, "\0hostile-rendezvous"),
           "loopback tcp": _meet(socket.AF_INET, ("127.0.0.1", 45454))}
    time.sleep(0.2)
    return json.dumps(out)
