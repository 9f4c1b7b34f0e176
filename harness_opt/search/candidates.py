"""Turning a proposal into a candidate version: the checks every domain's candidates pass first.

A proposal becomes a version directory only if it edits something, stays inside the domain's
editable files, loads, and leaves `[runtime]` (limits, entrypoint) alone. A candidate whose content
already exists as another version *is* that version (same hash), so its results are reused. A
proposal that breaks the loader in any way (a `UserError`, or a RecursionError from a deeply nested
tools.json) is an invalid candidate, never the end of the run.
"""

from __future__ import annotations

import shutil
from fnmatch import fnmatch

from harness_opt.errors import UserError
from harness_opt.harness.lineage import agent_dir, create_version, version_dirs
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger import Ledger, VersionRow
from harness_opt.propose.base import Proposal
from harness_opt.search.records import CandidateRecord


def find_version(near: HarnessVersion, wanted_hash: str) -> HarnessVersion | None:
    """The version with this content hash among `near`'s agent folder (where its children go,
    `lineage.agent_dir`) and its own siblings, if any."""
    folders = dict.fromkeys([agent_dir(near), near.path.parent])
    for path in [p for folder in folders for p in version_dirs(folder).values()]:
        try:
            version = HarnessVersion.load(path)
        except Exception:  # a sibling that does not load is not the one wanted
            continue
        if version.hash == wanted_hash:
            return version
    return None


def outside_editable(edits: dict[str, str | None], editable: tuple[str, ...]) -> list[str]:
    """Edited paths no glob of `editable` matches; non-empty = the candidate is refused before it runs."""
    return sorted(p for p in edits if not any(fnmatch(p, g) for g in editable))


def describe_failure(exc: BaseException) -> str:
    """One line for a candidate that broke something: the user-facing message, or the exception."""
    if isinstance(exc, UserError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def materialize(
    proposal: Proposal,
    incumbent: HarnessVersion,
    iteration: int,
    *,
    editable: tuple[str, ...],
    ledger: Ledger,
) -> tuple[HarnessVersion | None, CandidateRecord]:
    """Write the candidate (or find its twin) and record it in the ledger's `versions`; None with the
    reason recorded when it is invalid."""
    record = CandidateRecord(
        iteration=iteration,
        candidate="-",
        proposer=proposal.proposer,
        mechanism=proposal.mechanism,
        hypothesis=proposal.hypothesis,
        outcome="invalid",
    )
    outside = outside_editable(proposal.edits, editable)
    if outside:
        allowed = ", ".join(editable)
        record.reason = f"edits outside the editable files ({allowed}): {', '.join(outside)}"
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
    except Exception as exc:  # create_version removes its directory; the run goes on
        record.reason = f"does not load: {describe_failure(exc)}"
        return None, record
    if candidate.manifest.runtime != incumbent.manifest.runtime:
        shutil.rmtree(candidate.path, ignore_errors=True)
        record.reason = "changes [runtime] (limits, entrypoint), which the search keeps frozen"
        return None, record
    twin = find_version(incumbent, candidate.hash)
    if twin is not None and twin.path != candidate.path:
        shutil.rmtree(candidate.path, ignore_errors=True)  # same content as an existing version: reuse it
        candidate = twin
    record.candidate, record.hash = candidate.label, candidate.hash
    if candidate.hash == incumbent.hash:
        record.reason = "identical to the incumbent"
        return None, record
    ledger.add_version(VersionRow.from_version(candidate))
    return candidate, record
