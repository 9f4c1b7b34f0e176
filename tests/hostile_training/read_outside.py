"""Hostile train.py: read what lies outside its box (the project, the ledger, the home dir, another
experiment's files, the val bytes) by known host paths, and by searching every file it can see."""

import json
import os

TARGETS: dict = {}
markers = [m.encode() for m in TARGETS["markers"]]

readable = []
for path in TARGETS["files"]:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        readable.append(path)
    except OSError:
        pass
listable = [d for d in TARGETS["dirs"] if os.path.isdir(d) and os.access(d, os.R_OK)]

hits, seen = [], 0
skip = set(TARGETS["skip"])
me = os.path.realpath(__file__)  # holds the markers itself
for root, dirs, files in os.walk("/") if TARGETS.get("walk", True) else ():
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in files:
        path = os.path.join(root, name)
        if os.path.realpath(path) == me:
            continue
        try:
            if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 64 << 20:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        seen += 1
        if any(m in data for m in markers):
            hits.append(path)
print("HOSTILE " + json.dumps({"readable": readable, "listable": listable, "hits": hits, "seen": seen}))
