"""How untrusted code is confined: the isolation policy, and the one bubblewrap command builder.

Policy: harness code runs under bubblewrap (own mount, network, pid, ipc, uts and user namespaces; only
the Python install, the version dir and capped tmpfs scratch visible; no capability; a cleared
environment). `auto` means bubblewrap or nothing: when bwrap cannot run here, evaluation refuses with
one error naming the cause and the fix. The weaker modes run only when asked for by name
(`--isolation unshare`: no network but the whole filesystem readable; `none`: rlimits only), and say so.

`bwrap_command` builds every bubblewrap command line of the project, for the fork server here and for
the agent proposer (`propose/agent_cli.py`): tmpfs mounts first and binds after, so a bound path that
lives under /tmp (a venv in a temp dir, a CI workspace) is not hidden by the sandbox's own /tmp.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness_opt.errors import UserError

Isolation = Literal["bwrap", "unshare", "none"]
ISOLATION_CHOICES = ("auto", "bwrap", "unshare", "none")
ISOLATION_ENV = "HARNESS_OPT_ISOLATION"

RUNTIME_DIR = Path(__file__).parent
ZYGOTE_FILE = RUNTIME_DIR / "zygote.py"
BOX_FILES = ("zygote.py", "confine.py")
"""The only harness-opt files the sandbox sees; they import nothing but the standard library (and jinja2)."""
TEMPLATE_PACKAGES = ("jinja2", "markupsafe")
"""Bound read-only into the sandbox so templates render in the rollout child, not in the parent."""

# Where things appear inside the bubblewrap sandbox.
BOX_VERSION = "/harness"
BOX_RUNTIME = "/opt/harness-opt"
BOX_LIB = f"{BOX_RUNTIME}/lib"
BOX_TMP = "/tmp"

SANDBOX_UID = 1000
"""uid/gid of the fork server inside bubblewrap's user namespace, whoever runs harness-opt (root too)."""
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group")
_PROBE_TIMEOUT_S = 20.0
SERVER_TMP_BYTES = 64 * 1024 * 1024
"""The fork server's own /tmp (rollouts mount their own over it)."""
ROLLOUT_TMP_BYTES = 256 * 1024 * 1024
"""Each rollout's private /tmp (its home and working directory): memory-backed, so it is capped."""

WARN_UNSHARE = (
    "sandbox: isolation='unshare' was requested: the harness has no network but can read the whole "
    "filesystem (gold answers, the ledger, your files)"
)
WARN_FORCED_NONE = (
    "sandbox: isolation='none' was requested: network and filesystem are NOT isolated (debugging only)"
)


class SandboxError(UserError):
    """The requested isolation cannot be provided here (unknown mode, or bwrap/unshare do not work)."""


def python_executable() -> str:
    return sys.executable or "python3"


def _covers(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def python_roots(executable: str | None = None) -> list[Path]:
    """Directories the interpreter needs: its prefixes and the install trees of the executable, both
    where it is called from (a venv's bin/) and where its symlinks lead (the base interpreter).

    A root that contains the working directory (a project whose venv is the project itself) is
    narrowed to the parts Python needs, so the project and its data never enter the sandbox.
    """
    exe = Path(executable or python_executable())
    candidates = {Path(sys.base_prefix), Path(sys.prefix), exe.parent.parent}
    real = Path(os.path.realpath(exe))
    candidates.add(real.parent.parent)
    link = exe
    for _ in range(40):  # each hop of a symlink chain (venv/bin/python -> python3.11 -> ...)
        if not link.is_symlink():
            break
        link = (link.parent / os.readlink(link)).absolute()
        candidates.add(link.parent.parent)
    cwd = Path.cwd().resolve()
    roots: list[Path] = []
    for root in candidates:
        root = Path(os.path.abspath(root))
        if root == Path("/") or not root.is_dir():
            continue
        if _covers(root, cwd) or _covers(root, Path.home()):
            roots += [root / part for part in ("bin", "lib", "lib64", "pyvenv.cfg") if (root / part).exists()]
        else:
            roots.append(root)
    return roots


def _dedupe(paths: Sequence[Path]) -> list[Path]:
    """Drop paths already covered by a shorter bound path (binding /usr covers /usr/lib/python3)."""
    kept: list[Path] = []
    for p in sorted(set(paths), key=lambda x: len(str(x))):
        if not any(_covers(k, p) for k in kept):
            kept.append(p)
    return kept


@dataclass(frozen=True)
class BwrapSpec:
    """What one bubblewrap sandbox shows. Binds are (host path, sandbox path) pairs, read-only by default."""

    ro_binds: Sequence[tuple[str, str]] = ()
    rw_binds: Sequence[tuple[str, str]] = ()
    dev_binds: Sequence[tuple[str, str]] = ()
    """Device nodes (or directories of them) bound with device access, after the sandbox's own
    minimal /dev: the GPUs of a training run. Empty for harness code, which gets no device."""
    read_only_root: bool = False
    """Remount `/` and `/dev` read-only once every mount is made: bubblewrap builds both as tmpfs
    without a size cap that the sandbox's user may write, a way around the capped /tmp."""
    env: dict[str, str] = field(default_factory=dict)
    chdir: str = BOX_TMP
    tmp_bytes: int = SERVER_TMP_BYTES
    shm_bytes: int | None = None
    """A writable, capped /dev/shm; None makes it an empty read-only directory."""
    share_net: bool = False
    uid: int | None = SANDBOX_UID
    """uid and gid inside the sandbox; None keeps the caller's (the agent proposer's CLI owns its files)."""
    as_pid_1: bool = False
    etc: Literal["minimal", "all"] = "minimal"
    python: bool = True
    """Bind the running interpreter's install trees (the fork server is this Python)."""
    clear_env: bool = True
    """Start from an empty environment (then only `env`); False passes bwrap's own environment on,
    for a caller whose environment holds keys that must not appear on a command line."""


@functools.cache
def _supports_size() -> bool:
    """`--size` caps a tmpfs; bwrap before 0.7 lacks it."""
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in text


def _tmpfs(path: str, size: int) -> list[str]:
    return [*(["--size", str(size)] if _supports_size() else []), "--tmpfs", path]


def _options(spec: BwrapSpec) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--cap-drop", "ALL"]
    cmd += ["--die-with-parent", "--new-session"]
    if spec.clear_env:
        cmd.append("--clearenv")
    if spec.share_net:
        cmd.append("--share-net")
    if spec.uid is not None:
        cmd += ["--uid", str(spec.uid), "--gid", str(spec.uid)]
    if spec.as_pid_1:
        cmd.append("--as-pid-1")
    return cmd


def _filesystems(spec: BwrapSpec) -> list[str]:
    """The memory-backed mounts: every one before any bind (a later tmpfs would hide a bind under it)."""
    cmd = [*_tmpfs(BOX_TMP, spec.tmp_bytes), "--dev", "/dev"]
    if spec.shm_bytes is None:
        cmd += [*_tmpfs("/dev/shm", 4096), "--remount-ro", "/dev/shm"]
    else:
        cmd += _tmpfs("/dev/shm", spec.shm_bytes)
    return [*cmd, "--proc", "/proc"]


def _system(spec: BwrapSpec) -> list[str]:
    """The system directories (merged-/usr symlinks kept as symlinks), the interpreter, /etc."""
    cmd: list[str] = []
    roots: list[Path] = []
    for top in _SYSTEM_DIRS:
        path = Path(top)
        if path.is_symlink():  # merged-/usr systems: /lib -> usr/lib
            cmd += ["--symlink", os.readlink(top), top]
        elif path.is_dir():
            roots.append(path)
    if spec.etc == "all":
        roots.append(Path("/etc"))
    for root in _dedupe(roots + (python_roots() if spec.python else [])):
        cmd += ["--ro-bind", str(root), str(root)]
    if spec.etc == "all":
        return [*cmd, "--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    for etc in _ETC_FILES:
        if Path(etc).exists():
            cmd += ["--ro-bind", etc, etc]
    return cmd


def bwrap_command(spec: BwrapSpec, argv: Sequence[str]) -> list[str]:
    """The bubblewrap argv that runs `argv` confined as `spec` says.

    Mount operations apply in order, so every tmpfs comes first and every bind after it. Capabilities
    are dropped: bwrap started by root otherwise leaves the sandbox's root with every capability of
    its user namespace, enough to remount a read-only bind (the version dir, /usr) read-write.
    """
    cmd = [*_options(spec), *_filesystems(spec), *_system(spec)]
    for src, dst in spec.ro_binds:
        cmd += ["--ro-bind", src, dst]
    for src, dst in spec.rw_binds:
        cmd += ["--bind", src, dst]
    for src, dst in spec.dev_binds:
        cmd += ["--dev-bind", src, dst]
    if spec.read_only_root:  # last: every mount point above is made on the root tmpfs first
        cmd += ["--remount-ro", "/", "--remount-ro", "/dev"]
    for key, value in spec.env.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--chdir", spec.chdir, "--", *argv]


def _interpreter(script: Path) -> Path | None:
    """The program a `#!` script runs (`#!/usr/bin/env node` -> node on PATH), or None."""
    try:
        with open(script, "rb") as fh:
            head = fh.readline(512)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].decode(errors="replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        found = shutil.which(words[0]) if words else None
        return Path(found) if found else None
    return Path(words[0])


def install_trees(executable: Path, never: Sequence[Path] = ()) -> list[Path]:
    """What must be visible for `executable` to run: the install tree (`<prefix>` of `<prefix>/bin/x`,
    else the file itself) of every hop of its symlink chain, and the same for the interpreter of a
    `#!` script (a venv's console script, a node CLI under ~/.nvm). A tree that would contain `/` or
    one of `never` (the project, its data) is narrowed to the file itself."""
    out: list[Path] = []
    pending = [Path(os.path.abspath(executable))]
    seen: set[Path] = set()
    while pending and len(seen) < 40:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = path.parent.parent if path.parent.name == "bin" else path
        if tree == Path("/") or any(_covers(tree, n) for n in never):
            tree = path
        out.append(tree)
        if path.is_symlink():
            pending.append(Path(os.path.abspath(path.parent / os.readlink(path))))
        elif path.is_file():
            interpreter = _interpreter(path)
            if interpreter is not None:
                pending.append(Path(os.path.abspath(interpreter)))
    return _dedupe([p for p in out if p.exists()])


def minimal_env(home: str) -> dict[str, str]:
    """The whole environment harness code sees: no API keys, no HARNESS_OPT_*, nothing inherited."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }


def template_package_dirs() -> list[tuple[str, str]]:
    """(host dir, sandbox dir) of jinja2 and markupsafe, wherever they are installed."""
    import importlib.util

    out = []
    for name in TEMPLATE_PACKAGES:
        found = importlib.util.find_spec(name)
        if found is not None and found.origin:
            out.append((str(Path(found.origin).parent), f"{BOX_LIB}/{name}"))
    return out


def runtime_spec(extra_ro: Sequence[tuple[str, str]] = ()) -> BwrapSpec:
    """The fork server's sandbox: runtime files, jinja2, `extra_ro` (version dir, init file).

    `/` and `/dev` are remounted read-only: bubblewrap builds them as uncapped tmpfs that every rollout
    of the fork server shares, so writable they were both a way past the `/tmp` cap and a channel
    between rollouts. Rollouts still mount their private `/tmp` over the fork server's (a mount point).
    """
    files = [(str(RUNTIME_DIR / name), f"{BOX_RUNTIME}/{name}") for name in BOX_FILES]
    return BwrapSpec(
        ro_binds=[*files, *template_package_dirs(), *extra_ro],
        env=minimal_env(BOX_TMP),
        as_pid_1=True,
        read_only_root=True,
    )


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


@functools.cache
def bwrap_problem() -> tuple[str, str] | None:
    """(cause, fix) when bubblewrap cannot run the fork server's command line here, else None.

    Probes the real argument list (same binds, same options) once per process: containers often forbid
    namespaces, and a bind that does not reach the interpreter shows up here, not mid-evaluation.
    """
    if shutil.which("bwrap") is None:
        return (
            "bubblewrap (bwrap) is not installed",
            "install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)",
        )
    check = f"import sys; sys.path.insert(0, {BOX_LIB!r}); import jinja2"
    cmd = bwrap_command(runtime_spec(), [python_executable(), "-I", "-c", check])
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
            env=minimal_env("/tmp"),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap did not run: {exc}", "check the bwrap installation"
    if done.returncode == 0:
        return None
    said = _first_line(done.stderr)
    if "execvp" in said or "No such file" in said or "jinja2" in said:
        return (
            f"bubblewrap runs, but the Python environment is not visible inside it ({said})",
            f"report it as a harness-opt bug with the output of `{python_executable()} -c "
            "'import sys; print(sys.executable, sys.prefix, sys.base_prefix)'`",
        )
    return (
        f"bubblewrap cannot create its namespaces here ({said})",
        "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu "
        "24.04+ also kernel.apparmor_restrict_unprivileged_userns=0), or run outside a container "
        "that forbids them",
    )


def bwrap_works() -> bool:
    return bwrap_problem() is None


def _unshare_prefix() -> list[str]:
    cmd = ["unshare", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, "--"]


@functools.cache
def unshare_works() -> bool:
    try:
        done = subprocess.run(
            [*_unshare_prefix(), python_executable(), "-I", "-c", "pass"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


_WEAKER = (
    "or, accepting weaker isolation, pass --isolation unshare (no network, but the whole "
    "filesystem is readable) or --isolation none (debugging only)"
)


def resolve_isolation(requested: str = "auto") -> tuple[Isolation, str | None]:
    """The isolation mode to use and the warning to show (None for bubblewrap).

    `auto` (and `bwrap`) is bubblewrap or an error: harness code is never run with less isolation than
    bubblewrap unless the user named the weaker mode (`--isolation` or HARNESS_OPT_ISOLATION).
    """
    from_env = False
    if requested == "auto" and os.environ.get(ISOLATION_ENV, "").strip():
        requested, from_env = os.environ[ISOLATION_ENV].strip(), True
    where = ISOLATION_ENV if from_env else "isolation"
    if requested not in ISOLATION_CHOICES:
        raise SandboxError(
            f"unknown isolation {requested!r}", where=where, fix=f"use one of {', '.join(ISOLATION_CHOICES)}"
        )
    if requested == "none":
        return "none", WARN_FORCED_NONE
    if requested == "unshare":
        if not unshare_works():
            raise SandboxError(
                "`unshare --net` does not work here (needs util-linux and root or user namespaces)",
                where=f"{where}=unshare",
                fix="install bubblewrap and use --isolation auto, or --isolation none (debugging only)",
            )
        return "unshare", WARN_UNSHARE
    problem = bwrap_problem()
    if problem is None:
        return "bwrap", None
    cause, fix = problem
    raise SandboxError(
        f"harness code must run in a bubblewrap sandbox, and {cause}",
        where=f"{where}={requested}",
        fix=f"{fix}; {_WEAKER}",
    )


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start the fork server: argv, env, cwd and the paths as the fork server sees
    them (version dir, scratch, the dirs each rollout gets privately, sys.path additions)."""

    argv: list[str]
    env: dict[str, str] | None
    cwd: str | None
    version_dir: str
    scratch: str
    private_dirs: list[str] = field(default_factory=list)
    pythonpath: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SandboxPaths:
    """Host-side paths of one fork server: the version dir (read-only), scratch (read-write), init file."""

    version_dir: Path
    scratch: Path
    init_file: Path


def launch_spec(mode: Isolation, paths: SandboxPaths) -> LaunchSpec:
    """Command line of the fork server under `mode`; the control socket fd is passed separately."""
    python = python_executable()
    if mode == "bwrap":
        zygote, init = f"{BOX_RUNTIME}/zygote.py", f"{BOX_RUNTIME}/init.json"
        spec = runtime_spec([(str(paths.init_file), init), (str(paths.version_dir), BOX_VERSION)])
        argv = bwrap_command(spec, [python, "-I", "-B", zygote, init])
        # bwrap itself gets the minimal env too: a process inside keeps the env it was started with,
        # and /proc/<pid>/environ may be readable from the sandbox (an API key leaked that way).
        return LaunchSpec(argv, minimal_env(BOX_TMP), None, BOX_VERSION, BOX_TMP, [BOX_TMP], [BOX_LIB])
    prefix = _unshare_prefix() if mode == "unshare" else []
    argv = [*prefix, python, "-I", "-B", str(ZYGOTE_FILE), str(paths.init_file)]
    scratch = str(paths.scratch)
    libs = sorted({str(Path(host).parent) for host, _ in template_package_dirs()})
    return LaunchSpec(argv, minimal_env(scratch), scratch, str(paths.version_dir), scratch, [scratch], libs)


def main() -> int:
    """`python -m harness_opt.runtime.sandbox`: can harness code run here? (install script, CI)"""
    problem = bwrap_problem()
    if problem is None:
        print(f"sandbox: bubblewrap runs harness code here ({python_executable()})")
        return 0
    cause, fix = problem
    print(f"sandbox: harness code cannot run in bubblewrap here: {cause}\n  fix: {fix}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
