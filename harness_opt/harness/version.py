"""`HarnessVersion`: one immutable harness directory, loaded, validated and identified by content hash.

Identity is what the agent does, not who wrote it: the hash covers every file except harness.toml,
plus the behaviour part of the manifest (model, runtime, prompts), so rewording a hypothesis keeps the
version (and its cached results) while any prompt, tool, code or parameter change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from jinja2 import TemplateError, TemplateNotFound, UndefinedError
from jinja2.environment import Environment
from jinja2.loaders import DictLoader

from harness_opt.errors import HarnessError
from harness_opt.harness import checks
from harness_opt.harness.manifest import MANIFEST_FILE, HarnessManifest, load_manifest
from harness_opt.harness.tools import load_tools

TOOLS_FILE = "tools.json"
PROMPTS_DIR = "prompts"
TEMPLATE_SUFFIX = ".j2"
_IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_IGNORED_FILES = frozenset({".DS_Store"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")
MAX_VERSION_BYTES = 64 * 2**20
"""All files of a version together: the parent holds them in memory, hashes and scans them."""
_ENTRYPOINT = re.compile(r"^(?P<file>[A-Za-z0-9_./-]+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")


def is_ignored(rel: PurePosixPath) -> bool:
    """Caches and OS litter are not part of a version: they neither hash nor copy."""
    return (
        any(part in _IGNORED_DIRS for part in rel.parts[:-1])
        or rel.name in _IGNORED_FILES
        or rel.suffix in _IGNORED_SUFFIXES
    )


def _read_regular(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes, None when it holds more than `limit`; never waits on a pipe."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        if info.st_size > limit:  # a sparse file of many GiB costs nothing on disk: never read it
            return None
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return None if len(data) > limit else data
    finally:
        os.close(fd)


def read_files(root: Path) -> dict[str, bytes]:
    """Every file of a version directory by relative POSIX path, sorted; symlinks are refused, and so
    are pipes, sockets and devices (reading a pipe waits forever) and a version over MAX_VERSION_BYTES
    (it is read into memory whole, before any sandbox exists)."""
    out: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if is_ignored(rel) or (path.is_dir() and not path.is_symlink()):
            continue
        if path.is_symlink():
            raise HarnessError(
                "symbolic links are not allowed in a harness version",
                where=str(path),
                fix="replace the link with a copy of the file",
            )
        try:
            data = _read_regular(path, MAX_VERSION_BYTES - total)
        except OSError as exc:
            raise HarnessError(
                f"not a regular file that can be read ({exc.strerror or exc})",
                where=str(path),
                fix="a version holds regular files only: remove it or replace it with a copy",
            ) from None
        if data is None:
            raise HarnessError(
                f"the version's files add up to more than {MAX_VERSION_BYTES // 2**20} MiB",
                where=str(path),
                fix="keep large data outside the version (a suite's data folder)",
            )
        total += len(data)
        out[str(rel)] = data
    return out


def content_hash(files: dict[str, bytes], manifest: HarnessManifest) -> str:
    """sha256 over sorted (path, bytes) of every file but harness.toml, plus the manifest's behaviour."""
    h = hashlib.sha256()
    for rel in sorted(files):
        if rel == MANIFEST_FILE:
            continue
        data = files[rel]
        h.update(f"file\0{rel}\0{len(data)}\0".encode())
        h.update(data)
    behaviour = json.dumps(manifest.behaviour_dict(), sort_keys=True, separators=(",", ":"))
    h.update(b"manifest\0" + behaviour.encode())
    return h.hexdigest()


@contextmanager
def nesting_guard(where: str) -> Iterator[None]:
    """A file nested deeper than Python's recursion limit (a model can write one) is a load error that
    names the file, not a RecursionError escaping whoever loads the version."""
    try:
        yield
    except RecursionError:
        raise HarnessError(
            "nested too deeply to read (the recursion limit was hit)",
            where=where,
            fix="flatten it: a few dozen levels of nesting at most",
        ) from None


def parse_entrypoint(entrypoint: str, where: str) -> tuple[str, str]:
    match = _ENTRYPOINT.match(entrypoint)
    if not match or ".." in PurePosixPath(match["file"]).parts or entrypoint.startswith("/"):
        raise HarnessError(
            f"[runtime].entrypoint: {entrypoint!r} is not '<file>.py:<function>'",
            where=where,
            fix='use a relative file inside the version, e.g. entrypoint = "agent.py:run"',
        )
    return match["file"], match["func"]


@dataclass(frozen=True)
class HarnessVersion:
    """A loaded, validated harness version. Never edit its directory: make a child with create_version."""

    path: Path
    manifest: HarnessManifest
    tools: list[dict[str, Any]]
    hash: str
    _files: dict[str, bytes] = field(repr=False, compare=False)
    _env: Environment = field(repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | str) -> HarnessVersion:
        """Load and validate a version directory; any problem is one HarnessError naming file and fix."""
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise HarnessError(
                "harness version directory does not exist",
                where=str(path),
                fix="pass a directory like harnesses/<agent>/v0001 or a spec like <agent>@v1",
            )
        files = read_files(root)  # first: refuses pipes and oversized files before anything reads them
        with nesting_guard(str(root / MANIFEST_FILE)):
            manifest = load_manifest(root / MANIFEST_FILE)
        entry_file, entry_function = parse_entrypoint(manifest.runtime.entrypoint, str(root / MANIFEST_FILE))

        with nesting_guard(str(root / TOOLS_FILE)):
            tools = load_tools(root / TOOLS_FILE)

        env = checks.template_environment()
        templates: dict[str, str] = {}
        declared = set(manifest.prompts.variables)
        for rel in files:
            if rel.startswith(f"{PROMPTS_DIR}/") and rel.endswith(TEMPLATE_SUFFIX):
                source = checks.read_text(root / rel, str(root / rel))
                with nesting_guard(str(root / rel)):
                    checks.check_template(env, source, str(root / rel), declared)
                templates[rel.removeprefix(f"{PROMPTS_DIR}/")] = source
        env.loader = DictLoader(templates)

        if entry_file not in files:
            raise HarnessError(
                f"missing {entry_file} (the entrypoint {manifest.runtime.entrypoint!r})",
                where=str(root),
                fix=f"add {entry_file} defining `def {entry_function}(task, ctx)`",
            )
        for rel in files:
            if rel.endswith(".py"):
                shown = str(root / rel)
                with nesting_guard(shown):
                    tree = checks.check_python(checks.read_text(root / rel, shown), shown)
                if rel == entry_file:
                    checks.check_entrypoint(tree, shown, entry_function)

        with nesting_guard(str(root / MANIFEST_FILE)):
            digest = content_hash(files, manifest)
        return cls(
            path=root,
            manifest=manifest,
            tools=tools,
            hash=digest,
            _files=files,
            _env=env,
        )

    # --- identity -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The agent's name (harness.toml [harness].name)."""
        return self.manifest.harness.name

    @property
    def number(self) -> int:
        return self.manifest.harness.version

    @property
    def label(self) -> str:
        """Human label, e.g. 'banking77@v0001'."""
        return f"{self.name}@v{self.number:04d}"

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def entry_file(self) -> str:
        return parse_entrypoint(self.manifest.runtime.entrypoint, MANIFEST_FILE)[0]

    @property
    def entry_function(self) -> str:
        return parse_entrypoint(self.manifest.runtime.entrypoint, MANIFEST_FILE)[1]

    # --- content ------------------------------------------------------------------------------
    def files(self) -> dict[str, bytes]:
        """Relative path -> bytes of every file as loaded (caches excluded); a copy, safe to mutate."""
        return dict(self._files)

    def templates(self) -> list[str]:
        """Template names usable with `render` (paths under prompts/)."""
        return sorted(self._env.list_templates())

    def render(self, template: str, **variables: Any) -> str:
        """Render `prompts/<template>`; `tools` defaults to the version's tool schemas.

        StrictUndefined: a missing variable raises HarnessError instead of rendering an empty string,
        because a silently blank prompt would look like a bad version rather than a bug.
        """
        name = template.removeprefix(f"{PROMPTS_DIR}/")
        variables.setdefault("tools", self.tools)
        try:
            return self._env.get_template(name).render(**variables)
        except TemplateNotFound:
            raise HarnessError(
                f"no template {name!r}",
                where=f"{self.path}/{PROMPTS_DIR}",
                fix=f"use one of {self.templates()}",
            ) from None
        except UndefinedError as exc:
            raise HarnessError(
                f"rendering failed: {exc.message}",
                where=f"{self.path / PROMPTS_DIR / name}",
                fix="pass the variable to render(), e.g. ctx.render(" + repr(name) + ", task=task)",
            ) from None
        except TemplateError as exc:  # sandbox violations and runtime template errors
            raise HarnessError(
                f"rendering failed: {type(exc).__name__}: {exc}",
                where=f"{self.path / PROMPTS_DIR / name}",
                fix="fix the template (prompts render in a jinja2 sandbox: no private attributes)",
            ) from None

    def __str__(self) -> str:
        return f"{self.label} ({self.short_hash})"
