"""The `harness-opt` command: a thin typer layer over the library, one module per command group.

Every option can also come from a `HARNESS_OPT_<OPTION>` environment variable (`with_env_vars`).
How a command ends is decided here, in one place (`main`):
- a user's mistake (`UserError`: bad path, malformed harness, unknown split or model, an option the
  config model refuses; a usage error; a file that cannot be read or written) prints one `error:`
  line and exits 2, never a traceback;
- an evaluation that ends `degraded` (too many infrastructure failures) exits 3;
- Ctrl-C and SIGTERM close the run as `interrupted`, print how to resume it and exit 130 / 143;
- anything else is a bug: one line, and the full traceback saved to a file it names (exit 1;
  `HARNESS_OPT_TRACEBACK=1` prints it instead).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from harness_opt.errors import UserError

app = typer.Typer(
    name="harness-opt",
    help=(
        "Improve an AI agent's harness (prompts, tool schemas, orchestration code) against a benchmark "
        "suite, with every rollout recorded in a DuckDB ledger.\n\n"
        "Start with:  harness-opt eval harnesses/banking77/v0001 --suite tasks/banking77 --limit 50"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help and errors keep their brackets: `[splits]` is text, not a style
)
err_console = Console(stderr=True)


def _register() -> None:
    from harness_opt.cli import (
        audit_cmd,
        diff_cmd,
        doctor_cmd,
        eval_cmd,
        export_cmd,
        init_cmd,
        leaderboard_cmd,
        models_cmd,
        optimize_cmd,
        premortem_cmd,
        report_cmd,
        runs_cmd,
        traces_cmd,
        traces_import_cmd,
    )

    init_cmd.register(app)
    eval_cmd.register(app)
    optimize_cmd.register(app)
    diff_cmd.register(app)
    leaderboard_cmd.register(app)
    report_cmd.register(app)
    export_cmd.register(app)
    doctor_cmd.register(app)
    premortem_cmd.register(app)
    audit_cmd.register(app)
    runs_cmd.register(app)
    models_cmd.register(app)
    traces_import_cmd.register(traces_cmd.app)  # `traces import` and `traces to-tasks`
    app.add_typer(traces_cmd.app, name="traces")


_register()

ENV_PREFIX = "HARNESS_OPT_"


def _commands(command: Any) -> Iterator[Any]:
    """A command and all its subcommands (typer's own copy of click: duck-typed)."""
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def env_var(option: Any) -> str:
    """`--val-limit` -> HARNESS_OPT_VAL_LIMIT (the long name, or the first one given)."""
    long = [o for o in option.opts if o.startswith("--")] or option.opts
    return ENV_PREFIX + long[0].lstrip("-").replace("-", "_").upper()


def with_env_vars(command: Any) -> Any:
    """Give every option of every command its `HARNESS_OPT_<OPTION>` variable, derived from its name.
    An option that already read another variable keeps it as a second name."""
    for cmd in _commands(command):
        for param in cmd.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            before = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            name = env_var(param)
            param.envvar = [name, *(e for e in before if e != name)]
            param.show_envvar = True
    return command


@cache
def command() -> Any:
    """The click command of the app, with the environment variables (what `main` runs)."""
    return with_env_vars(typer.main.get_command(app))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so a run is closed as `interrupted` exactly as Ctrl-C."""


EXIT_USER_ERROR = 2
EXIT_DEGRADED = 3


_TERMINATED = False


def _on_sigterm(signum: int, frame: Any) -> None:
    global _TERMINATED
    _TERMINATED = True
    raise Terminated()


def _print_error(text: str, fix: str | None = None) -> None:
    line = f"{text} — fix: {fix}" if fix else text
    err_console.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True)


_OS_FIXES = {
    errno.ENOENT: "check the path: it does not exist",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EACCES: "make it readable/writable for you, or choose another path (HARNESS_OPT_HOME for the home)",
    errno.EPERM: "make it readable/writable for you, or choose another path (HARNESS_OPT_HOME for the home)",
    errno.EROFS: "the file system is read-only: choose a writable path (HARNESS_OPT_HOME for the home)",
    errno.ENOSPC: "free some disk space, or choose another path",
}


def _os_error(exc: OSError) -> tuple[str, str]:
    """A file-system error as (what, fix): the path, the system's reason, and what to do."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or type(exc).__name__
    fix = _OS_FIXES.get(exc.errno or 0, "check the path and its permissions")
    return (f"{where}: {what}" if where else what), fix


def _undecodable_file(exc: UnicodeDecodeError) -> str | None:
    """The file whose bytes failed to decode: the innermost frame of the traceback holding an open
    text file or an existing file path (every reader goes through one or the other)."""
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.TextIOWrapper) and isinstance(value.name, str):
                return value.name
            if isinstance(value, Path) and value.is_file():
                return str(value)
    return None


def _decode_error(exc: UnicodeDecodeError) -> tuple[str, str]:
    where = _undecodable_file(exc)
    what = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return (f"{where}: {what}" if where else f"a file is {what}"), (
        "pass a UTF-8 text file (this one is binary or in another encoding)"
    )


def _crash_report(exc: BaseException) -> str:
    """Save the traceback of an unexpected exception; the file's path (or why it is not saved)."""
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for folder in (_home_logs(), Path(tempfile.gettempdir())):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"harness-opt-crash-{stamp}-{os.getpid()}.txt"
            path.write_text(f"harness-opt {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8")
            return str(path)
        except OSError:
            continue
    return "nowhere (no writable folder): set HARNESS_OPT_TRACEBACK=1 to print it"


def _home_logs() -> Path | None:
    home = os.environ.get("HARNESS_OPT_HOME", ".harness-opt")
    return Path(home).expanduser() / "logs"


def _interrupted(exit_code: int) -> int:
    from harness_opt.ledger.writer import interrupted_runs

    runs = interrupted_runs()
    what = "terminated" if exit_code == 143 else "interrupted"
    if not runs:
        err_console.print(f"[yellow]{what}[/]: finished rollouts are in the ledger; re-run to resume")
        return exit_code
    for kind, run_id in runs:
        hint = (
            f"resume: harness-opt optimize ... --resume {run_id}"
            if kind == "optimize"
            else "re-run the same command to resume (finished rollouts are reused)"
        )
        err_console.print(
            Text.assemble((what, "yellow"), f": run {run_id} is marked interrupted; {hint}"),
            highlight=False,
            soft_wrap=True,
        )
    return exit_code


def run_command(args: list[str] | None = None) -> int:
    """Run the CLI with `args` (default sys.argv) and return the exit code (see the module docstring)."""
    global _TERMINATED
    _TERMINATED = False
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            code = command().main(args=args, prog_name="harness-opt", standalone_mode=False)
        except KeyboardInterrupt:  # raised outside the command (typer turns one inside into 130)
            code = 130
        if code == 130:
            return _interrupted(143 if _TERMINATED else 130)
        return int(code or 0)
    except Exception as exc:
        return _exit_code(exc)
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


def _exit_code(exc: Exception) -> int:
    """Print one line for an exception that ended a command, and say how the command exits."""
    if isinstance(exc, UserError):
        _print_error(exc.message)
        return EXIT_USER_ERROR
    from harness_opt.evaluate.summary import Degraded

    if isinstance(exc, Degraded):
        if not exc.shown:
            err_console.print(
                Text.assemble(("degraded:", "bold red"), f" {exc.reason}"), highlight=False, soft_wrap=True
            )
        return EXIT_DEGRADED
    if type(exc).__name__ == "NoArgsIsHelpError":  # `harness-opt` alone: the help is the answer
        exc.show()  # type: ignore[attr-defined]
        return EXIT_USER_ERROR
    if isinstance(exc, typer.TyperException):  # typer's click: usage errors, bad values (exit 2)
        ctx = getattr(exc, "ctx", None)
        fix = f"see `{ctx.command_path} --help`" if ctx is not None else "see `harness-opt --help`"
        param = getattr(exc, "param", None)
        if param is not None and getattr(exc, "message", None):  # a bad value: name the option plainly
            name = (getattr(param, "opts", None) or [param.human_readable_name])[0]
            _print_error(f"{name}: {str(exc.message).removeprefix('Value error, ')}", fix)
        else:
            _print_error(exc.format_message(), fix)
        return int(exc.exit_code)
    if isinstance(exc, typer.Abort):
        return _interrupted(130)
    if isinstance(exc, OSError | UnicodeDecodeError):  # a path the user gave (or the home) is unusable
        _print_error(*(_os_error(exc) if isinstance(exc, OSError) else _decode_error(exc)))
        return EXIT_USER_ERROR
    if os.environ.get("HARNESS_OPT_TRACEBACK"):
        raise exc
    where = _crash_report(exc)
    _print_error(
        f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (a bug in harness-opt; "
        f"full traceback: {where})",
        "please report it with that file",
    )
    return 1


def main() -> None:
    sys.exit(run_command())


if __name__ == "__main__":
    main()
