"""`harness-opt export`: write a leaderboard submission bundle for one harness version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness_opt.cli.paths import input_file
from harness_opt.cli.suite_options import DataOption, UserModelOption
from harness_opt.llm.client import LLMConfig

_LLM_FIELDS = LLMConfig.model_fields
"""The endpoint options take their help from the config model, as every derived option does."""


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_command(
        harness: Annotated[Path, typer.Argument(help="Harness version: a directory or agent@vN.")],
        suite: Annotated[
            Path, typer.Option(help="Suite folder (tasks/tau2-retail).", envvar="HARNESS_OPT_SUITE")
        ],
        format: Annotated[
            str, typer.Option("--format", help="tau2 (leaderboard bundle) or skypilot (training wave).")
        ] = "tau2",
        trials: Annotated[
            int, typer.Option(min=1, help="Trials per task on every retail task (τ²'s standard: 4).")
        ] = 4,
        model: Annotated[
            str | None,
            typer.Option(help="Agent model; default from harness.toml.", envvar="HARNESS_OPT_MODEL"),
        ] = None,
        judge_model: Annotated[
            str | None,
            typer.Option(
                help="NL-assertion judge: a model, 'agent' (the agent's model) or 'off' (results are then "
                "unofficial); default from suite.toml (the agent's model).",
                envvar="HARNESS_OPT_JUDGE_MODEL",
            ),
        ] = None,
        model_name: Annotated[
            str | None, typer.Option(help="Leaderboard model name; must be the agent's model (the default).")
        ] = None,
        model_organization: Annotated[str | None, typer.Option(help="Who made the model.")] = None,
        submitting_organization: Annotated[str | None, typer.Option(help="Who ran the evaluation.")] = None,
        contact: Annotated[
            str | None, typer.Option(help="Contact email.", envvar="HARNESS_OPT_CONTACT")
        ] = None,
        contact_name: Annotated[str | None, typer.Option(help="Contact name.")] = None,
        github: Annotated[str | None, typer.Option(help="Contact GitHub handle.")] = None,
        config: Annotated[
            Path | None, typer.Option(help="TOML file with a [submission] table of the fields above.")
        ] = None,
        out: Annotated[Path, typer.Option(help="Folder the bundle goes under.")] = Path("leaderboards"),
        concurrency: Annotated[int, typer.Option(min=1, help="Rollouts in flight.")] = 4,
        user_model: UserModelOption = None,
        data: DataOption = None,
        api_base: Annotated[str | None, typer.Option(help=_LLM_FIELDS["api_base"].description)] = None,
        api_key_env: Annotated[str | None, typer.Option(help=_LLM_FIELDS["api_key_env"].description)] = None,
    ) -> None:
        """Evaluate HARNESS on all 114 τ² retail tasks with k trials (reusing the ledger's rollouts) and
        write a taubench.com bundle: submission.json and the trajectories in τ²'s results format,
        validated as τ²'s `tau2 submit validate` validates it."""
        from harness_opt.cli.suite_options import load_suite_with_options
        from harness_opt.errors import UserError
        from harness_opt.export import ExportConfig, Submitter, export_tau2, load_submitter
        from harness_opt.export.tau2 import tau2_suite
        from harness_opt.harness.lineage import resolve_version

        if format == "skypilot":
            _export_skypilot(harness, suite, out)
            return
        if format != "tau2":
            raise UserError(
                f"unknown export format '{format}'", where="--format", fix="use --format tau2 or skypilot"
            )
        version_dir = resolve_version(str(harness))  # paths first: a wrong one is the first error
        suite_obj = load_suite_with_options(suite, user_model=user_model, data=data)
        submitter = load_submitter(input_file(config, "--config")) if config else Submitter()
        tau2_suite(suite_obj)  # the target benchmark, or one error before any evaluation
        submitter = submitter.merged(
            Submitter(
                model_name=model_name,
                model_organization=model_organization,
                submitting_organization=submitting_organization,
                contact_email=contact,
                contact_name=contact_name,
                contact_github=github,
            )
        )
        submitter.require()  # before any evaluation is spent
        shown: dict[str, int] = {}

        def progress(split: str, done: int, total: int) -> None:
            tenth = done * 10 // max(total, 1)
            if shown.get(split) != tenth:
                shown[split] = tenth
                typer.echo(f"  {split}: {done}/{total} rollouts", err=True)

        result = export_tau2(
            version_dir,
            suite_obj,
            submitter,
            ExportConfig(
                trials=trials,
                model=model,
                judge_model=judge_model,
                concurrency=concurrency,
                out_dir=out,
                llm=LLMConfig(api_base=api_base, api_key_env=api_key_env),
            ),
            progress=progress,
        )
        retail = result.submission.results.retail
        figures = ", ".join(
            f"pass^{k} {getattr(retail, f'pass_{k}'):.2f}%"
            for k in range(1, 5)
            if retail is not None and getattr(retail, f"pass_{k}") is not None
        )
        for warning in result.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"wrote {result.folder} ({result.n_simulations} simulations; {figures}); validated")


def _export_skypilot(harness: Path, suite: Path, out: Path) -> None:
    """HARNESS is one training version dir, or an agent dir (every vNNNN in it is one experiment)."""
    from harness_opt.domains.training_loop import load_training_suite
    from harness_opt.export.skypilot import export_skypilot
    from harness_opt.harness.lineage import resolve_version, version_dirs
    from harness_opt.harness.version import HarnessVersion

    dirs = version_dirs(harness)
    versions = (
        [HarnessVersion.load(p) for p in dirs.values()]
        if dirs
        else [HarnessVersion.load(resolve_version(str(harness)))]
    )
    folder = export_skypilot(versions, load_training_suite(suite), out)
    typer.echo(f"wrote {folder}: {len(versions)} experiments; start them with bash {folder}/launch.sh")
