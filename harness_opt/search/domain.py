"""The Domain seam: what a candidate is, how it is measured and judged. The one loop asks its domain.

The loop (`search/loop.py`) is the same for every domain: baseline, then rounds of evidence →
proposals → candidates → measurements → decisions, then the end. A domain supplies only what differs:

| member | agent harness (`domains/agent_harness.py`) | training (`domains/training_loop.py`) |
|---|---|---|
| `editable` | agent.py, prompts/*, tools.json, ... | train.py |
| `acceptance`, `direction` | "paired", higher score is better | "scalar", lower val_bpb is better |
| `baseline` | seed on val twice (rerun = noise) | seed trained with `baseline_runs` seeds |
| `evaluate` | scan, one train task, then val | one run per candidate, a wave at once |
| `evidence` | failing/passing train traces | train.py, prepare.py to read |
| `finish` | the sealed test split, once | nothing |

A suite folder names its domain in suite.toml (`domain = "training"`; absent: "agent-harness"), and
the installed package maps names to classes through the `harness_opt.domains` entry-point group, so
`search/` never imports a domain and a plug-in package can add one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal, Protocol

from harness_opt.errors import UserError
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger
from harness_opt.propose.base import HistoryEntry, MetaSpend, ProposalInput, Proposer
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.measurement import Measurement
from harness_opt.search.records import CandidateRecord, OptimizeDisplay, SealedTest
from harness_opt.search.state import RunState

SUITE_FILE = "suite.toml"
DEFAULT_DOMAIN = "agent-harness"
ENTRY_POINT_GROUP = "harness_opt.domains"


@dataclass
class RunContext:
    """What a domain may use of the run it serves: its settings, where to write, and the spend meter."""

    config: OptimizeConfig
    run_id: str
    ledger: Ledger
    display: OptimizeDisplay
    state: RunState
    records: list[CandidateRecord] = field(default_factory=list)
    resumed: bool = False
    iteration: int = 0
    """The iteration under way (0 while measuring the baseline)."""
    history_dir: Path | None = None
    """Where the domain builds the history filesystem its proposer reads (`propose/history_fs.py`),
    or None when the proposer reads none (the offline operators)."""

    def charge(self, cost_usd: float = 0.0, executed: int = 0) -> None:
        """Count spend that this run caused now (reused results are free)."""
        self.state.cost_usd += cost_usd
        self.state.rollouts += executed

    def charge_meta(self, spend: MetaSpend) -> None:
        """Count what the meta-agent spent on a proposal (made or failed): in the run's cost too."""
        self.state.meta = self.state.meta.add(spend)
        self.state.cost_usd += spend.cost_usd

    def history(self) -> list[HistoryEntry]:
        """What was tried before this iteration and what became of it (the baseline is not a try).

        Earlier iterations only, so a resumed run that redoes an iteration shows its proposer exactly
        what the interrupted one saw, and gets the same proposals back."""
        return [
            r.as_history() for r in self.records if r.outcome != "baseline" and r.iteration < self.iteration
        ]


class Domain(Protocol):
    """What differs between kinds of candidates. Methods never raise for one candidate's failure:
    they return a `Measurement` with `invalid` or `failure` set. A `UserError` means the run cannot go on."""

    name: str
    editable: tuple[str, ...]
    """Globs a proposer may change; everything else is frozen (a proposal outside them is invalid)."""
    acceptance: str
    """The default acceptance rule (see `search/acceptance.py`); `OptimizeConfig.acceptance` overrides."""
    direction: Literal["max", "min"]
    """Which way the metric improves: agent scores go up, val_bpb goes down."""
    metric: str
    """What the measured figure is called in displays and plots."""

    def start(self, seed: HarnessVersion, config: OptimizeConfig) -> str:
        """Load the suite and check the set-up before anything is written; returns the model the run
        records. Raises `UserError` when the run cannot start."""
        ...

    def operators(self) -> Proposer:
        """The offline proposer of this domain (`--proposer operators`)."""
        ...

    async def baseline(self, seed: HarnessVersion, run: RunContext) -> list[Measurement]:
        """The seed measured repeatedly: the acceptance rule takes its reference and noise from these.
        A fresh run (not `run.resumed`) may refuse here, with a `UserError`, after its pre-flight."""
        ...

    async def evaluate(
        self,
        candidates: list[HarnessVersion],
        incumbent: HarnessVersion,
        run: RunContext,
        *,
        attempt: int = 0,
        units: int | None = None,
    ) -> list[Measurement]:
        """One measurement per candidate, in order. `attempt` > 0 asks for an independent repeat
        (another seed) when the acceptance rule could not decide; `units` for more units than the
        run's usual number (a re-test the proposer asked for; a domain may ignore it). A version this
        run already accepted, or its seed, is measured without being checked again."""
        ...

    async def evidence(
        self, incumbent: HarnessVersion, measurement: Measurement, run: RunContext
    ) -> ProposalInput:
        """What the proposer reads this iteration (never val or test data)."""
        ...

    def reserve_s(self, seed: HarnessVersion, incumbent: HarnessVersion, run: RunContext) -> float:
        """Seconds the loop keeps for the end: no new iteration starts inside them."""
        ...

    async def finish(self, seed: HarnessVersion, best: HarnessVersion, run: RunContext) -> SealedTest | None:
        """What runs once at the end (the sealed test split), or None."""
        ...

    def decided(self, record: CandidateRecord, measurement: Measurement | None, run: RunContext) -> None:
        """A decision is about to be written (once per candidate, also when resumed): keep the domain's
        own rows (the training domain's `experiments`). Must be idempotent."""
        ...


def suite_domain_name(suite: Path) -> str:
    """`domain` of a suite folder's suite.toml ('agent-harness' when absent or unreadable: the suite
    loader then reports the real problem)."""
    folder = suite.parent if suite.name == SUITE_FILE else suite
    try:
        raw = tomllib.loads((folder / SUITE_FILE).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return DEFAULT_DOMAIN
    return str(raw.get("domain", DEFAULT_DOMAIN))


def domain_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def domain_for_suite(suite: Path) -> Domain:
    """A fresh domain object for the suite's named domain (one per run: it holds the run's suite)."""
    name = suite_domain_name(Path(suite))
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = domain_names()
        if not known:
            raise UserError(
                "no domains are registered: the package's metadata is out of date",
                fix="reinstall it: pip install -e .",
            )
        raise UserError(
            f"unknown domain {name!r}",
            where=str(Path(suite) / SUITE_FILE),
            fix=f"use one of: {', '.join(known)} (absent means {DEFAULT_DOMAIN})",
        )
    domain: Domain = found[0].load()()
    return domain
