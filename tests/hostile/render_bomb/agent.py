"""Hostile harness `render_bomb`: Renders templates that grow a gigabyte string, print a hundred million characters and spin."""

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



def run(task, ctx):
    out = {}
    for template in ("loops.j2", "grow.j2", "spin.j2"):
        try:
            out[template] = f"rendered {len(ctx.render(template))} characters"
        except Exception as exc:
            out[template] = f"refused: {str(exc)[:200]}"
    return json.dumps(out)
