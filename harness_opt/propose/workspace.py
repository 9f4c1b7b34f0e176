"""The work dir a proposer explores and edits, the same for the coding agent and the tool-using llm.

```
harness/            the current version: edit here (only the editable files count)
history/            INDEX.md and one folder per earlier candidate (`history_fs.py`), or the short list
traces/             this iteration's train traces of the current version: failing.md, passing.md (+ .jsonl)
train_tasks.jsonl   the train tasks with their expected answers
```
Everything in it comes from a `ProposalInput`, which holds train data only. Reading the edits back
is done without following a symbolic link anywhere (the directory tree is walked by file
descriptor), because the agent that wrote the tree may have replaced `harness/` or a file in it
with a link to a path outside its sandbox, which this process, outside the sandbox, could read.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from harness_opt.propose.base import ProposalInput, TaskWins
from harness_opt.propose.evidence import render_files, render_history, render_trace

HARNESS_DIR = "harness"
HISTORY_DIR = "history"
TRACES_DIR = "traces"
TRAIN_TASKS = "train_tasks.jsonl"
MAX_TREE_BYTES = 20 * 1024 * 1024
"""A harness directory larger than this is not read back (a runaway agent filling the disk)."""
_SKIPPED_PARTS = frozenset({"__pycache__"})


def clean_path(path: str) -> str | None:
    """A safe relative POSIX path, or None for one that could escape the version directory."""
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    pure = PurePosixPath(p)
    if not p or pure.is_absolute() or ".." in pure.parts:
        return None
    return str(pure)


def is_editable(path: str, editable: Sequence[str]) -> bool:
    return any(fnmatch(path, glob) for glob in editable)


def restrict_edits(
    edits: dict[str, str | None], files: dict[str, str], editable: tuple[str, ...]
) -> tuple[dict[str, str | None], list[str]]:
    """Keep edits to editable paths that change something; return them and a note per dropped edit.

    The loop rejects non-editable edits too; dropping them here keeps a partly good candidate alive.
    """
    kept: dict[str, str | None] = {}
    notes: list[str] = []
    for raw, content in edits.items():
        path = clean_path(raw)
        if path is None:
            notes.append(f"dropped {raw!r}: not a relative path inside the version")
        elif not is_editable(path, editable):
            notes.append(f"dropped {path}: not editable (editable: {', '.join(editable)})")
        elif content == files.get(path) or (content is None and path not in files):
            notes.append(f"dropped {path}: no change")
        else:
            kept[path] = content
    return kept, notes


def _read_nofollow(name: str, dir_fd: int, size: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        chunks, left = [], size + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_nofollow(path: Path, max_bytes: int = 64 * 1024) -> str:
    """A file the agent wrote, '' when it is missing, a link, not a regular file or not UTF-8."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return ""
    try:
        return _read_nofollow(path.name, dir_fd, max_bytes)[:max_bytes].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    finally:
        os.close(dir_fd)


def _entry(name: str, rel: str, dir_fd: int, budget: int) -> tuple[bytes | None, str | None]:
    """One directory entry read without following a link: (its bytes, or None and why not)."""
    info = os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISLNK(info.st_mode):
        return None, f"ignored {rel}: symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return None, f"ignored {rel}: not a regular file"
    if info.st_size > budget:
        return None, f"ignored {rel}: the directory is over {MAX_TREE_BYTES // (1024 * 1024)} MB"
    try:
        return _read_nofollow(name, dir_fd, budget), None
    except OSError as exc:
        return None, f"ignored {rel}: {exc.strerror or exc}"


def read_tree(root: Path, max_bytes: int = MAX_TREE_BYTES) -> tuple[dict[str, str], list[str]]:
    """The UTF-8 text files under `root` by relative path, and a note for each thing left out.

    Never follows a symbolic link: not `root` itself (a link there reads as an empty tree), not a
    directory, not a file. Walks by directory file descriptor, so a link swapped in while the walk
    runs is not followed either.
    """
    files: dict[str, str] = {}
    notes: list[str] = []
    if root.is_symlink() or not root.is_dir():
        return files, [f"ignored {root.name}/: not a directory (a symbolic link is never followed)"]
    total = 0
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_PARTS]
        notes += [
            f"ignored {prefix}{d}: symbolic link"
            for d in dirnames
            if stat.S_ISLNK(os.lstat(d, dir_fd=dir_fd).st_mode)
        ]
        for name in sorted(n for n in filenames if not n.endswith((".pyc", ".pyo"))):
            data, note = _entry(name, prefix + name, dir_fd, max_bytes - total)
            if data is None:
                notes.append(str(note))
                continue
            total += len(data)
            try:
                files[prefix + name] = data.decode("utf-8")
            except UnicodeDecodeError:
                notes.append(f"ignored {prefix + name}: not UTF-8 text")
    return dict(sorted(files.items())), notes


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write `files` (relative path -> text) under `root`; unsafe paths are skipped."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = clean_path(rel)
        if path is None:
            continue
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def _short_history(inp: ProposalInput) -> str:
    """INDEX.md when no history filesystem was built: the list of earlier tries and their wins."""
    lines = [
        f"# History of {inp.agent} on {inp.suite}",
        "",
        "What was tried before and what became of it (no per-candidate folders in this run).",
        "",
        render_history(inp.history),
    ]
    if inp.task_wins:
        lines += ["", "## Val tasks won and lost against the incumbent (opaque keys)"]
        lines += [_wins_line(w) for w in inp.task_wins]
    return "\n".join(lines) + "\n"


def _wins_line(w: TaskWins) -> str:
    return (
        f"- {w.candidate} [{w.mechanism}] vs {w.incumbent}: won {len(w.wins)} [{' '.join(w.wins)}], "
        f"lost {len(w.losses)} [{' '.join(w.losses)}]"
    )


def write_workspace(inp: ProposalInput, workdir: Path) -> None:
    """Lay out `workdir` as the module docstring shows (train data only: `inp` holds no more)."""
    write_files(workdir / HARNESS_DIR, inp.files)
    history = workdir / HISTORY_DIR
    if inp.history_dir is not None and (inp.history_dir / "INDEX.md").is_file():
        shutil.copytree(inp.history_dir, history, symlinks=True)
    else:
        history.mkdir(parents=True, exist_ok=True)
        (history / "INDEX.md").write_text(_short_history(inp), encoding="utf-8")
    traces = workdir / TRACES_DIR
    traces.mkdir(parents=True, exist_ok=True)
    tasks = {t.id: t for t in inp.train_tasks}
    for kind, items in (("failing", inp.failing_traces), ("passing", inp.passing_traces)):
        (traces / f"{kind}.jsonl").write_text(
            "".join(t.model_dump_json() + "\n" for t in items), encoding="utf-8"
        )
        body = "\n\n".join(render_trace(t, tasks.get(t.key.task_id)) for t in items)
        text = f"# {len(items)} {kind} train traces\n\n{body}\n"
        (traces / f"{kind}.md").write_text(text, encoding="utf-8")
    imported = [t for t in inp.imported_traces if not t.passed]
    if imported:  # production failures from `traces import`: extra evidence, beside the suite's
        (traces / "imported.jsonl").write_text(
            "".join(t.model_dump_json() + "\n" for t in imported), encoding="utf-8"
        )
        body = "\n\n".join(render_trace(t) for t in imported)
        (traces / "imported.md").write_text(
            f"# {len(imported)} production traces (imported, labelled failed)\n\n{body}\n", encoding="utf-8"
        )
    (workdir / TRAIN_TASKS).write_text(
        "".join(t.model_dump_json() + "\n" for t in inp.train_tasks), encoding="utf-8"
    )
    (workdir / "current_files.md").write_text(render_files(inp.files, inp.editable), encoding="utf-8")


def harness_edits(inp: ProposalInput, workdir: Path) -> tuple[dict[str, str | None], list[str]]:
    """The edits made under `workdir/harness` against `inp.files` (a removed file is a deletion),
    restricted to the editable files; and a note for everything dropped or ignored."""
    after, unreadable = read_tree(workdir / HARNESS_DIR)
    raw: dict[str, str | None] = {p: c for p, c in after.items() if inp.files.get(p) != c}
    for path in inp.files:
        if path not in after and clean_path(path) is not None:
            raw[path] = None
    edits, dropped = restrict_edits(raw, inp.files, inp.editable)
    return edits, [*unreadable, *dropped]
