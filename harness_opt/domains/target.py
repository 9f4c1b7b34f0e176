"""The Domain seam: what a candidate is, how it is run and judged. The loop asks a suite's domain.

A suite folder names its domain in suite.toml (`domain = "training"`; absent = "agent-harness"), and
`domain_for_suite` returns the matching Domain. `search/` calls `domain.optimizer(...)` and never
checks which one it holds.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Protocol

from harness_opt.errors import UserError

SUITE_FILE = "suite.toml"


class Domain(Protocol):
    name: str
    editable: tuple[str, ...]
    """Globs a proposer may change; everything else is frozen (a proposal outside them is rejected)."""
    score_direction: Literal["max", "min"]
    """Which way the metric improves: agent scores go up, val_bpb goes down."""

    def load_suite(self, path: Path) -> Any: ...

    def outside_editable(self, edits: dict[str, str | None]) -> list[str]:
        """Edited paths outside `editable`; non-empty = the candidate is refused before it runs."""
        ...

    def optimizer(self, config: Any, **kwargs: Any) -> Any:
        """The optimize run of this domain: an object with `async run() -> OptimizeResult`."""
        ...


def suite_domain_name(suite: Path) -> str:
    """`domain` of a suite folder's suite.toml ('agent-harness' when absent or unreadable: the suite
    loader then reports the real problem)."""
    folder = suite.parent if suite.name == SUITE_FILE else suite
    try:
        raw = tomllib.loads((folder / SUITE_FILE).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return "agent-harness"
    return str(raw.get("domain", "agent-harness"))


def domain_for_suite(suite: Path, **options: Any) -> Domain:
    name = suite_domain_name(Path(suite))
    if name == "agent-harness":
        from harness_opt.domains.agent_harness import AgentHarnessDomain

        return AgentHarnessDomain()
    if name == "training":
        from harness_opt.domains.training_loop import TrainingDomain

        return TrainingDomain(**options)
    raise UserError(
        f"unknown domain {name!r}",
        where=str(Path(suite) / SUITE_FILE),
        fix='use domain = "agent-harness" (default) or "training"',
    )


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
