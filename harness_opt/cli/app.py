"""The `harness-opt` command: a thin typer layer over the library, one module per command group.

Every option can also come from a `HARNESS_OPT_<OPTION>` environment variable (`with_env_vars`). A
`UserError` (bad path, malformed harness, unknown split or model, an option the config model
refuses) prints one red line and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import typer
from rich.console import Console

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
    rich_markup_mode="rich",
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


def main() -> None:
    try:
        command()(prog_name="harness-opt")
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished rollouts are in the ledger; re-run to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
