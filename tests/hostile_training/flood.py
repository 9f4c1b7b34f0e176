"""Hostile train.py: flood the parent: 64 MB on stdout and stderr; /tmp, /dev/shm and the sandbox's
own root and /dev (bubblewrap makes them memory-backed) filled until the kernel says no; and a "model"
far larger than any allowed."""

import contextlib
import json
import os
import sys

chunk = b"x" * (1 << 20)
for _ in range(32):
    sys.stdout.buffer.write(chunk)
    sys.stderr.buffer.write(chunk)
written = {}
for path in ("/tmp/fill", "/tmp/work/fill", "/dev/shm/fill", "/fill", "/dev/fill", "/opt/frozen/fill"):
    n = 0
    try:
        with open(path, "wb") as fh:
            while n < (4 << 30):
                fh.write(chunk)
                fh.flush()
                n += len(chunk)
    except OSError:
        pass
    written[path] = n
    with contextlib.suppress(OSError):
        os.unlink(path)
sys.stdout.flush()
print("\nHOSTILE " + json.dumps({"written": written}), flush=True)
fd = int(os.environ["NANOGPT_MODEL_FD"])
sent = 0
try:
    while sent < (64 << 20):
        sent += os.write(fd, chunk)
except OSError:
    pass
