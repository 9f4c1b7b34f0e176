"""Reading an optimize target: a seed version and its suite, or a training suite folder alone."""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness_opt.errors import UserError
from harness_opt.search.domain import SUITE_FILE, suite_domain_name


def resolve_target(target: Path, suite: Path | None) -> tuple[Path, Path]:
    """(version dir, suite dir) from the optimize arguments. A suite folder alone is accepted when its
    domain names a seed version (training suites: `[training] seed_version`)."""
    if suite is not None:
        return target, suite
    if (target / SUITE_FILE).is_file():
        if suite_domain_name(target) == "training":
            raw = tomllib.loads((target / SUITE_FILE).read_text(encoding="utf-8"))
            seed = (raw.get("training") or {}).get("seed_version")
            if seed:
                return (target / seed).resolve(), target
        raise UserError(
            f"{target} is a suite folder; optimize needs a seed version too",
            fix=f"harness-opt optimize harnesses/<agent>/v0001 --suite {target}",
        )
    raise UserError("no suite given", where="--suite", fix="pass --suite tasks/<suite>")
