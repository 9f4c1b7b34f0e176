"""How the fork server is confined: pick the strongest isolation that works here and build its command.

Fallback chain, probed once per process: bubblewrap (own mount, net, pid, ipc, uts, user namespaces;
only the Python install, the version dir and a scratch dir are visible) -> `unshare` (no network, own
pid namespace, but the whole filesystem is readable) -> a plain subprocess (rlimits and a clean
environment only). Anything weaker than bubblewrap comes with a warning text the caller shows.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness_opt.errors import UserError

Isolation = Literal["bwrap", "unshare", "none"]
ISOLATION_CHOICES = ("auto", "bwrap", "unshare", "none")
ISOLATION_ENV = "HARNESS_OPT_ISOLATION"

ZYGOTE_FILE = Path(__file__).with_name("zygote.py")
"""The only harness-opt file the sandbox sees; it imports nothing but the standard library."""

# Where things appear inside the bubblewrap sandbox.
BOX_VERSION = "/harness"
BOX_SCRATCH = "/scratch"
BOX_RUNTIME = "/opt/harness-opt"

_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group")
_TOP_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_PROBE_TIMEOUT_S = 20.0
SCRATCH_TMPFS_BYTES = 1024 * 1024 * 1024
"""Cap of the scratch tmpfs shared by a runner's rollouts (memory-backed, so it must be bounded)."""

WARN_UNSHARE = (
    "sandbox: bubblewrap is unavailable, using `unshare --net`: the harness has no network but can "
    "read the whole filesystem — install bubblewrap (Debian: apt-get install bubblewrap) for full isolation"
)
WARN_NONE = (
    "sandbox: no isolation available (neither bubblewrap nor unshare works): harness code runs as a "
    "plain subprocess with rlimits and a clean environment, but network and filesystem are NOT "
    "isolated — install bubblewrap (Debian: apt-get install bubblewrap) before running untrusted harnesses"
)
WARN_FORCED_NONE = (
    "sandbox: isolation='none' was requested: network and filesystem are NOT isolated (debugging only)"
)


class SandboxError(UserError):
    """The requested isolation cannot be provided here (unknown mode, or bwrap/unshare do not work)."""


@dataclass(frozen=True)
class SandboxPaths:
    """Host-side paths of one fork server: the version dir (read-only), scratch (read-write), init file."""

    version_dir: Path
    scratch: Path
    init_file: Path


def python_executable() -> str:
    return sys.executable or "python3"


def _python_roots() -> list[str]:
    """Directories the interpreter needs: its prefixes and the real location of the executable."""
    exe = Path(os.path.realpath(python_executable()))
    roots = {sys.base_prefix, sys.prefix, str(exe.parent.parent)}
    return sorted(r for r in roots if r and Path(r).is_dir())


def _dedupe(paths: list[str]) -> list[str]:
    """Drop paths already covered by a shorter bound path (binding /usr covers /usr/lib/python3)."""
    kept: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


def _bwrap_base() -> list[str]:
    """bwrap arguments shared by the probe and the fork server: the read-only system view."""
    args = ["bwrap"]
    system: list[str] = []
    for top in _TOP_DIRS:
        path = Path(top)
        if path.is_symlink():  # merged-/usr systems: /lib -> usr/lib
            args += ["--symlink", os.readlink(top), top]
        elif path.is_dir():
            system.append(top)
    for root in _dedupe(system + _python_roots()):
        args += ["--ro-bind", root, root]
    for etc in _ETC_FILES:
        if Path(etc).exists():
            args += ["--ro-bind", etc, etc]
    args += [
        "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--proc", "/proc",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    return args


def _minimal_env(home: str) -> dict[str, str]:
    """The whole environment harness code sees: no API keys, no HARNESS_OPT_*, nothing inherited."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
    }


@functools.cache
def _tmpfs_size_args(size: int) -> list[str]:
    """`--size` caps the scratch tmpfs; bwrap before 0.7 lacks it (then the tmpfs is uncapped)."""
    try:
        help_text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return ["--size", str(size)] if "--size" in help_text else []


def _probe(cmd: list[str]) -> bool:
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=_PROBE_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@functools.cache
def bwrap_works() -> bool:
    """Run the interpreter under the real bwrap argument list once; containers often forbid namespaces."""
    env_args = [a for k, v in _minimal_env("/tmp").items() for a in ("--setenv", k, v)]
    return _probe([*_bwrap_base(), *env_args, python_executable(), "-I", "-c", "pass"])


def _unshare_prefix() -> list[str]:
    cmd = ["unshare", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    return [*cmd, "--"]


@functools.cache
def unshare_works() -> bool:
    return _probe([*_unshare_prefix(), python_executable(), "-I", "-c", "pass"])


def resolve_isolation(requested: str = "auto") -> tuple[Isolation, str | None]:
    """The isolation mode to use and the warning to show (None for bubblewrap).

    `auto` takes `HARNESS_OPT_ISOLATION` if set, else the strongest mode that works. Naming a mode that
    does not work here is an error rather than a silent downgrade: the user asked for that guarantee.
    """
    if requested == "auto":
        requested = os.environ.get(ISOLATION_ENV, "").strip() or "auto"
    if requested not in ISOLATION_CHOICES:
        raise SandboxError(
            f"unknown isolation {requested!r}",
            where=ISOLATION_ENV if requested == os.environ.get(ISOLATION_ENV) else "isolation",
            fix=f"use one of {', '.join(ISOLATION_CHOICES)}",
        )
    if requested == "none":
        return "none", WARN_FORCED_NONE
    if requested in ("auto", "bwrap") and bwrap_works():
        return "bwrap", None
    if requested == "bwrap":
        raise SandboxError(
            "bubblewrap (bwrap) is not installed or cannot create namespaces here",
            where="isolation=bwrap",
            fix="install bubblewrap (Debian: apt-get install bubblewrap), or use isolation=auto to fall back",
        )
    if requested in ("auto", "unshare") and unshare_works():
        return "unshare", WARN_UNSHARE
    if requested == "unshare":
        raise SandboxError(
            "`unshare --net` does not work here (needs util-linux and root or user namespaces)",
            where="isolation=unshare",
            fix="use isolation=auto (falls back to a plain subprocess with a warning)",
        )
    return "none", WARN_NONE


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start the fork server: argv, env, cwd and the paths as the zygote sees them."""

    argv: list[str]
    env: dict[str, str] | None
    cwd: str | None
    version_dir: str
    scratch: str


def launch_spec(mode: Isolation, paths: SandboxPaths) -> LaunchSpec:
    """Command line of the fork server under `mode`; the control socket fd is passed separately."""
    python = python_executable()
    if mode == "bwrap":
        zygote = f"{BOX_RUNTIME}/zygote.py"
        init = f"{BOX_RUNTIME}/init.json"
        argv = [
            *_bwrap_base(),
            "--ro-bind", str(ZYGOTE_FILE), zygote,
            "--ro-bind", str(paths.init_file), init,
            "--ro-bind", str(paths.version_dir), BOX_VERSION,
            # Scratch is a tmpfs, not a host bind: mkdir/rmdir per rollout on ext4 cost ~1 ms each here.
            *_tmpfs_size_args(SCRATCH_TMPFS_BYTES), "--tmpfs", BOX_SCRATCH,
            "--chdir", BOX_SCRATCH,
        ]
        for key, value in _minimal_env(BOX_SCRATCH).items():
            argv += ["--setenv", key, value]
        argv += [python, "-I", "-B", zygote, init]
        # bwrap itself gets the minimal env too: its pid-1 child inside the sandbox keeps the env it was
        # started with, and /proc/1/environ is readable from the sandbox (an API key leaked that way).
        return LaunchSpec(argv, _minimal_env(BOX_SCRATCH), None, BOX_VERSION, BOX_SCRATCH)
    prefix = _unshare_prefix() if mode == "unshare" else []
    argv = [*prefix, python, "-I", "-B", str(ZYGOTE_FILE), str(paths.init_file)]
    scratch = str(paths.scratch)
    return LaunchSpec(argv, _minimal_env(scratch), scratch, str(paths.version_dir), scratch)
