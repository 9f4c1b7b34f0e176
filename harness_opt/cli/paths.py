"""Checks of the paths a user passes on the command line, so a wrong one is one error line naming the
option, before any work is done (a missing input, a folder where a file belongs, an output whose
folder does not exist). What a file *contains* is checked by whoever reads it."""

from __future__ import annotations

from pathlib import Path

from harness_opt.errors import UserError


def input_file(path: Path, option: str) -> Path:
    """An existing file (not a folder) to read."""
    if not path.exists():
        raise UserError("file does not exist", where=f"{option} {path}", fix="check the path")
    if path.is_dir():
        raise UserError("is a folder, not a file", where=f"{option} {path}", fix="pass the file itself")
    return path


def input_folder(path: Path, option: str, fix: str) -> Path:
    """An existing folder to read (a suite, a harness version)."""
    if not path.exists():
        raise UserError("folder does not exist", where=f"{option} {path}", fix=fix)
    if not path.is_dir():
        raise UserError("is a file, not a folder", where=f"{option} {path}", fix=fix)
    return path


def output_file(path: Path, option: str) -> Path:
    """A file to write: not a folder, in a folder that exists."""
    if path.is_dir():
        raise UserError("is a folder", where=f"{option} {path}", fix=f"name the file, e.g. {path / 'out'}")
    if not path.parent.is_dir():
        fix = f"create {path.parent} first, or pick another path"
        raise UserError("its folder does not exist", where=f"{option} {path}", fix=fix)
    return path


def output_folder(path: Path, option: str) -> Path:
    """A folder to write into (created if missing): not an existing file."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise UserError(
                f"{part} is a file, not a folder", where=f"{option} {path}", fix="pass a folder path"
            )
    return path
