"""`harness-opt init NAME`: scaffold harnesses/NAME/v0001/ and tasks/NAME/ from your tools and prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness_opt.cli.paths import input_file, output_folder


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_command(
        name: Annotated[str, typer.Argument(help="Agent and suite name, e.g. acme-support.")],
        from_openai_tools: Annotated[
            Path | None,
            typer.Option(
                help="Your tool schemas (OpenAI function-calling JSON list).", envvar="HARNESS_OPT_TOOLS"
            ),
        ] = None,
        system_prompt: Annotated[
            Path | None,
            typer.Option(help="Your system prompt (text/markdown).", envvar="HARNESS_OPT_SYSTEM_PROMPT"),
        ] = None,
        model: Annotated[
            str, typer.Option(help="Default model in harness.toml.", envvar="HARNESS_OPT_MODEL")
        ] = ("local/smollm2"),
        root: Annotated[Path, typer.Option(help="Project folder to write into.")] = Path("."),
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing scaffold.")] = False,
    ) -> None:
        """Write a tool-calling agent around your tools and prompt, and a suite skeleton to fill in."""
        from harness_opt.scaffold import init_project

        output_folder(root, "--root")
        if from_openai_tools is not None:
            input_file(from_openai_tools, "--from-openai-tools")
        if system_prompt is not None:
            input_file(system_prompt, "--system-prompt")
        result = init_project(
            name, root, tools_file=from_openai_tools, system_prompt=system_prompt, model=model, force=force
        )
        console = Console()
        for path in result.files:
            console.print(f"  wrote {path}", markup=False)
        console.print(
            f"\nNext: fill in {result.suite_dir}/suite.toml and tasks.jsonl (and tools.py or HTTP bindings),"
            f" then\n  harness-opt eval {result.harness_dir} --suite {result.suite_dir} --limit 5",
            markup=False,
        )
