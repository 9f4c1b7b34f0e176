"""`harness-opt models`: which model strings work on this machine right now."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models() -> None:
        """List usable models: the embedded local ones (no key needed) and API providers whose keys are set.

        Any litellm model string works with --model (openai/..., anthropic/..., ollama/..., or an
        OpenAI-compatible server via HARNESS_OPT_API_BASE); local GGUF files work as local/PATH.gguf.
        """
        from harness_opt.llm.catalog import list_models

        table = Table(title="Models")
        table.add_column("model")
        table.add_column("kind")
        table.add_column("ready")
        table.add_column("notes")
        for info in list_models():
            cells = (info.model, info.kind, "yes" if info.available else "no", info.detail)
            table.add_row(*(Text(c) for c in cells))
        Console().print(table)
