"""Turn what a user typed (a suite path or name, a version dir, `agent@vN` or a hash prefix) into ledger keys.

`diff`, `leaderboard` and `report` read the ledger, which knows suites by name and versions by content
hash; users type paths and specs. Resolving here keeps the three commands consistent.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness_opt.errors import HarnessError, UserError
from harness_opt.harness.version import HarnessVersion
from harness_opt.ledger.ledger import Ledger
from harness_opt.ledger.queries import VersionInfo, version_infos


def suite_name(suite: str | Path) -> str:
    """The ledger's name of a suite: read from `<dir>/suite.toml` when `suite` is a folder, else as given."""
    path = Path(suite).expanduser()
    if path.is_dir():
        from harness_opt.suites.loader import read_suite_config

        return read_suite_config(path)[0].suite.name
    return str(suite)


class ResolvedVersion(BaseModel):
    """A version as the report commands need it: its hash and label, and its files when on disk."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    hash: str
    label: str
    path: str | None = None
    version: HarnessVersion | None = None
    info: VersionInfo | None = None


def resolve(
    spec: str | Path,
    ledger: Ledger,
    root: Path | str = "harnesses",
    infos: dict[str, VersionInfo] | None = None,
) -> ResolvedVersion:
    """A version from a directory, `agent@vN`, or a hash prefix / label recorded in the ledger."""
    from harness_opt.harness.lineage import resolve_version

    infos = infos if infos is not None else version_infos(ledger)
    try:
        loaded = HarnessVersion.load(resolve_version(spec, root))
        return ResolvedVersion(
            hash=loaded.hash,
            label=loaded.label,
            path=str(loaded.path),
            version=loaded,
            info=infos.get(loaded.hash),
        )
    except HarnessError as exc:
        text = str(spec)
        matches = [i for i in infos.values() if i.hash.startswith(text) or i.label == text] if text else []
        if len(matches) > 1:
            raise UserError(
                f"'{text}' matches {len(matches)} versions in the ledger",
                fix="type more of the hash, or pass the version directory",
            ) from None
        if not matches:
            raise exc from None
        info = matches[0]
        version = None
        if info.path and Path(info.path).is_dir():
            try:
                version = HarnessVersion.load(info.path)
            except HarnessError:
                version = None
            if version is not None and version.hash != info.hash:
                version = None  # the directory was edited since: its files are not this version's
        return ResolvedVersion(hash=info.hash, label=info.label, path=info.path, version=version, info=info)


def eval_command(version: ResolvedVersion, suite: str | Path, split: str) -> str:
    """The command that fills a missing side of a diff or leaderboard."""
    target = version.path or version.label
    suite_arg = str(suite) if Path(str(suite)).is_dir() else f"tasks/{suite}"
    split_arg = "" if split == "val" else f" --split {split}"
    return f"harness-opt eval {target} --suite {suite_arg}{split_arg}"
