"""Hostile train.py: find the user's API keys in its environment and in every /proc/<pid>/environ."""

import json
import os

TARGETS: dict = {}
secret = TARGETS["secret"].encode()

found = [f"env:{k}" for k, v in os.environ.items() if secret in v.encode()]
read, environs = 0, []
pids = [p for p in os.listdir("/proc") if p.isdigit()] + ["self", str(TARGETS["parent_pid"])]
for pid in pids:
    for name in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        read += 1
        if name == "environ" and pid != "self":
            environs.append(pid)
        if secret in data:
            found.append(f"/proc/{pid}/{name}")
report = {"found": found, "read": read, "environs": environs, "env": sorted(os.environ), "me": os.getpid()}
print("HOSTILE " + json.dumps(report))
