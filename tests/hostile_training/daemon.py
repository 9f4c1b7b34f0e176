"""Hostile train.py: leave a process behind (double fork, new session, exec'd into a long sleep whose
argument is the test's marker), then end as if all went well."""

import json
import os
import time

TARGETS: dict = {}

child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", TARGETS["marker"]])
    os._exit(0)
os.waitpid(child, 0)
time.sleep(0.5)
print("HOSTILE " + json.dumps({"forked": True, "sleep_forever": TARGETS.get("sleep_forever", False)}))
if TARGETS.get("sleep_forever"):
    time.sleep(3600)
