"""Start examples/acme-support/server.py on a free 127.0.0.1 port in a thread, for tests."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-support"


def _module():
    spec = importlib.util.spec_from_file_location("acme_server_example", EXAMPLE / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def acme_server() -> Iterator[str]:
    """Yields the base URL; the server is shut down on exit."""
    server = _module().serve(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
