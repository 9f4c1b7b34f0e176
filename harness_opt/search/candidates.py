"""Turning a proposal into a candidate version: the checks every domain's loop makes first.

A proposal becomes a version directory only if it edits something, stays inside the domain's
editable files, loads, and leaves `[runtime]` (limits, entrypoint) alone. A candidate whose content
already exists as another version *is* that version (same hash), so its results are reused.
"""

from __future__ import annotations

import shutil

from harness_opt.errors import UserError
from harness_opt.harness.lineage import create_version, version_dirs
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger, VersionRow
from harness_opt.propose.base import HistoryEntry, Proposal
from harness_opt.search.records import CandidateRecord


def find_version(near: HarnessVersion, wanted_hash: str) -> HarnessVersion | None:
    """The sibling version (same agent folder) with this content hash, if any."""
    for path in version_dirs(near.path.parent).values():
        try:
            version = HarnessVersion.load(path)
        except UserError:
            continue
        if version.hash == wanted_hash:
            return version
    return None


def materialize(
    proposal: Proposal,
    incumbent: HarnessVersion,
    iteration: int,
    *,
    outside: list[str],
    editable: tuple[str, ...],
    ledger: Ledger,
) -> tuple[HarnessVersion | None, CandidateRecord]:
    """Write the candidate (or find its twin) and record it in the ledger's `versions`; None with the
    reason recorded when it is invalid."""
    record = CandidateRecord(
        iteration=iteration,
        label="-",
        proposer=proposal.proposer,
        mechanism=proposal.mechanism,
        hypothesis=proposal.hypothesis,
        outcome="invalid",
    )
    if outside:
        allowed = ", ".join(editable)
        record.reason = f"edits outside the editable files ({allowed}): {', '.join(sorted(outside))}"
        return None, record
    if not proposal.edits:
        record.reason = "the proposal changes nothing"
        return None, record
    try:
        candidate = create_version(
            incumbent,
            proposal.edits,
            proposer=proposal.proposer,
            hypothesis=proposal.hypothesis,
            changes=proposal.changes,
        )
    except UserError as exc:
        record.reason = f"does not load: {exc.message}"
        return None, record
    if candidate.manifest.runtime != incumbent.manifest.runtime:
        shutil.rmtree(candidate.path, ignore_errors=True)
        record.reason = "changes [runtime] (limits, entrypoint), which the search keeps frozen"
        return None, record
    twin = find_version(incumbent, candidate.hash)
    if twin is not None and twin.path != candidate.path:
        shutil.rmtree(candidate.path, ignore_errors=True)  # same content as an existing version: reuse it
        candidate = twin
    record.label, record.hash = candidate.label, candidate.hash
    if candidate.hash == incumbent.hash:
        record.reason = "identical to the incumbent"
        return None, record
    ledger.add_version(VersionRow.from_version(candidate))
    return candidate, record


def history_of(records: list[CandidateRecord]) -> list[HistoryEntry]:
    """What was tried and what became of it, as the proposer reads it (the baseline is not a try)."""
    return [
        HistoryEntry(
            iteration=r.iteration,
            candidate=r.label,
            proposer=r.proposer,
            mechanism=r.mechanism,
            hypothesis=r.hypothesis,
            outcome=r.outcome,
            delta=r.delta,
            p_value=r.p_value,
            reason=r.reason,
        )
        for r in records
        if r.outcome != "baseline"
    ]
