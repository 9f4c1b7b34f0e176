"""Making new versions from old ones, walking a version's ancestry, and resolving `agent@vN` specs.

A version is never edited in place: a child is a copy of its parent plus edits, written to the next
free `<agent>/vNNNN` folder, with the parent's hash recorded so the lineage can be verified later.
Whatever the seed's folder is called, children are `vNNNN` folders of its agent (`agent_dir`), and
their numbers come after every version there and after the seed's own, so no two versions share a
label.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from harness_opt.errors import HarnessError
from harness_opt.harness.manifest import MANIFEST_FILE, dumps_manifest, load_manifest
from harness_opt.harness.version import HarnessVersion, is_ignored

VERSION_DIR = re.compile(r"^v(\d{4,})$")
_SPEC = re.compile(r"^(?P<agent>[A-Za-z0-9_.-]+)@(?:v?(?P<number>\d+)|(?P<latest>latest))$")


def version_dirs(agent_dir: Path) -> dict[int, Path]:
    """The `vNNNN` directories of one agent, by number."""
    if not agent_dir.is_dir():
        return {}
    out = {}
    for child in agent_dir.iterdir():
        match = VERSION_DIR.match(child.name)
        if match and child.is_dir():
            out[int(match[1])] = child
    return dict(sorted(out.items()))


def _check_edit_path(rel: str) -> str:
    pure = PurePosixPath(rel)
    if (
        not rel
        or pure.is_absolute()
        or "\\" in rel
        or any(part in ("..", ".", "") for part in rel.split("/"))
        or is_ignored(pure)
    ):
        raise HarnessError(
            f"edit path {rel!r} is not a plain relative file path inside the version",
            where="create_version(edits)",
            fix="use paths like 'prompts/system.j2' or 'agent.py'",
        )
    return str(pure)


def agent_dir(version: HarnessVersion) -> Path:
    """The folder a version's children go in: `<agent>/` holding `vNNNN` folders.

    A version in a `vNNNN` folder has it as its parent folder; so has a seed in a folder named
    otherwise beside its agent's versions (`harnesses/acme/seed`). Any other seed gets an `<agent>`
    folder beside it (`examples/my-seed` -> `examples/acme/`), or, when that folder is the seed
    itself or another version, `<agent>-versions/<agent>/` beside it (never inside a version)."""
    folder = version.path.parent
    if VERSION_DIR.match(version.path.name) or folder.name == version.name:
        return folder
    beside = folder / version.name
    if beside != version.path and not (beside / MANIFEST_FILE).exists():  # not a version itself
        return beside
    return folder / f"{version.name}-versions" / version.name


def _claim_next_dir(agent_dir: Path, after: int = 0) -> tuple[int, Path]:
    """Create the next free vNNNN directory; mkdir is atomic, so concurrent proposers never collide."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    number = max([*version_dirs(agent_dir), after], default=0) + 1
    while True:
        target = agent_dir / f"v{number:04d}"
        try:
            target.mkdir()
            return number, target
        except FileExistsError:
            number += 1


def create_version(
    parent: HarnessVersion,
    edits: dict[str, str | None],
    *,
    proposer: str,
    hypothesis: str,
    changes: list[str],
) -> HarnessVersion:
    """Copy `parent` to the next `vNNNN` sibling, apply `edits` (None deletes), record provenance, validate.

    An edit of harness.toml may change behaviour ([model], [runtime], [prompts]); its [harness] table is
    always rewritten with this version's provenance. If the result does not load, the new directory is
    removed and the HarnessError re-raised, so a failed proposal leaves nothing behind.
    """
    checked = {_check_edit_path(rel): text for rel, text in edits.items()}
    if checked.get(MANIFEST_FILE, "") is None:
        raise HarnessError(
            f"cannot delete {MANIFEST_FILE}", where="create_version(edits)", fix="edit it instead"
        )
    files = parent.files()
    for rel, text in checked.items():
        if text is None and rel not in files:
            raise HarnessError(
                f"cannot delete {rel!r}: the parent has no such file",
                where="create_version(edits)",
                fix=f"existing files: {sorted(files)}",
            )

    number, target = _claim_next_dir(agent_dir(parent), after=parent.number)
    try:
        for rel, data in files.items():
            if checked.get(rel, "") is None:
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel in checked:
                dest.write_text(checked[rel] or "", encoding="utf-8")
            else:
                dest.write_bytes(data)
        for rel, text in checked.items():
            if text is not None and rel not in files:
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text, encoding="utf-8")

        base = load_manifest(target / MANIFEST_FILE)
        info = base.harness.model_copy(
            update={
                "name": parent.name,
                "version": number,
                "parent": parent.hash,
                # relative to the child's folder: a sibling's name, or a path to a seed elsewhere
                "parent_dir": Path(os.path.relpath(parent.path, target.parent)).as_posix(),
                "created": datetime.now(UTC).replace(microsecond=0),
                "proposer": proposer,
                "hypothesis": hypothesis,
                "changes": list(changes),
            }
        )
        manifest = base.model_copy(update={"harness": info})
        (target / MANIFEST_FILE).write_text(dumps_manifest(manifest), encoding="utf-8")
        return HarnessVersion.load(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def lineage(version: HarnessVersion) -> list[HarnessVersion]:
    """The chain of ancestors, root first, ending with `version`; verifies each recorded parent hash."""
    chain = [version]
    seen = {version.path.resolve()}
    current = version
    while current.manifest.harness.parent_dir:
        parent_path = (current.path.parent / current.manifest.harness.parent_dir).resolve()
        where = f"{current.path / MANIFEST_FILE}: [harness].parent_dir"
        if parent_path in seen:
            raise HarnessError("lineage has a cycle", where=where, fix="point parent_dir at an older version")
        if not parent_path.is_dir():
            raise HarnessError(
                f"parent directory {parent_path} does not exist",
                where=where,
                fix="restore the parent version or remove parent_dir",
            )
        parent = HarnessVersion.load(parent_path)
        recorded = current.manifest.harness.parent
        if recorded and recorded != parent.hash:
            raise HarnessError(
                f"records parent hash {recorded[:12]} but {parent.label} now hashes to {parent.short_hash}: "
                "the parent was edited after this version was made",
                where=where,
                fix="versions are immutable: restore the parent's files, or make a new version instead",
            )
        chain.append(parent)
        seen.add(parent_path)
        current = parent
    return chain[::-1]


def resolve_version(spec: str | Path, root: Path | str = "harnesses") -> Path:
    """A version directory from a path, or from `agent@vN` / `agent@v0003` / `agent@latest` under `root`."""
    as_path = Path(spec).expanduser()
    if as_path.is_dir():
        return as_path
    match = _SPEC.match(str(spec))
    if not match:
        raise HarnessError(
            f"{str(spec)!r} is neither a version directory nor a spec like 'agent@v3'",
            where="version spec",
            fix="pass an existing directory (harnesses/<agent>/v0001) or '<agent>@v<N>'",
        )
    agent_dir = Path(root) / match["agent"]
    versions = version_dirs(agent_dir)
    if not versions:
        raise HarnessError(
            f"no versions of agent {match['agent']!r} under {Path(root)}",
            where="version spec",
            fix="check the agent name, or run from the project root that holds harnesses/",
        )
    if match["latest"]:
        return versions[max(versions)]
    number = int(match["number"])
    if number not in versions:
        shown = ", ".join(f"v{n}" for n in versions)
        raise HarnessError(
            f"{match['agent']} has no version {number}",
            where="version spec",
            fix=f"available: {shown}",
        )
    return versions[number]
