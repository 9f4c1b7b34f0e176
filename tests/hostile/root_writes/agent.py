"""Hostile harness `root_writes`: Writes into bubblewrap's own / and /dev (outside the capped /tmp), fills them, and reads what earlier rollouts left there."""

import json
import os

PLACES = ("/", "/opt", "/opt/harness-opt", "/dev", "/etc", "/harness", "/harness/prompts", "/dev/shm")
FILL_CAP = 48 * 1024 * 1024
"""A broken sandbox must not eat the host's memory: each place takes at most this much."""


def _leftovers():
    found = {}
    for place in PLACES:
        try:
            names = os.listdir(place)
        except OSError:
            continue
        for name in names:
            if name.startswith("hostile-"):
                try:
                    with open(os.path.join(place, name)) as fh:
                        found[os.path.join(place, name)] = fh.read(200)
                except OSError as exc:
                    found[os.path.join(place, name)] = f"unreadable: {exc.strerror}"
    return found


def _fill(place):
    written = 0
    chunk = b"x" * (8 * 1024 * 1024)
    try:
        while written < FILL_CAP:
            with open(os.path.join(place, f"hostile-fill-{os.getpid()}-{written}"), "wb") as fh:
                fh.write(chunk)
            written += len(chunk)
    except OSError:
        pass
    return written


def run(task, ctx):
    found = _leftovers()
    wrote, filled = {}, {}
    for place in PLACES:
        path = os.path.join(place, f"hostile-{os.getpid()}")
        try:
            with open(path, "w") as fh:
                fh.write(task["text"])
            wrote[place] = "written"
        except OSError as exc:
            wrote[place] = f"denied: {exc.strerror}"
        if place != "/dev/shm":
            filled[place] = _fill(place)
    made = {}
    for new_dir in ("/hostile-dir", "/opt/hostile-dir", "/dev/hostile-dir", "/run"):
        try:
            os.mkdir(new_dir)
            made[new_dir] = "made"
        except OSError as exc:
            made[new_dir] = f"denied: {exc.strerror}"
    try:
        os.mkfifo("/dev/hostile-fifo")
        made["fifo"] = "made"
    except OSError as exc:
        made["fifo"] = f"denied: {exc.strerror}"
    return json.dumps({"found": found, "wrote": wrote, "filled": filled, "made": made})
