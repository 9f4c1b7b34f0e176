"""Suite options shared by the commands that load a suite (`eval`, `export`; `optimize` has the same
names through `OptimizeConfig`): --user-model, --judge-model and --data.

They reach the suite module as `config["options"]` through `load_suite(path, **options)`; an option
not given stays None and leaves the suite.toml `[options]` value in force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harness_opt.errors import UserError
from harness_opt.suites.base import Suite

UserModelOption = Annotated[
    str | None,
    typer.Option(
        "--user-model",
        help="Model of the simulated user in conversational suites (tau2-retail); default from suite.toml.",
        envvar="HARNESS_OPT_USER_MODEL",
    ),
]
JudgeModelOption = Annotated[
    str | None,
    typer.Option(
        "--judge-model",
        help="Judge of suites scored by a model (tau2-retail: the NL-assertion judge): a model, 'agent' "
        "(the agent's model) or 'off' (scores are then unofficial); default from suite.toml.",
        envvar="HARNESS_OPT_JUDGE_MODEL",
    ),
]
JUDGE_WORDS = ("agent", "off")
"""`--judge-model` values that are not a model: judge with the agent's model, or do not judge."""
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data folder of a suite whose data is not in the repo (tau2-retail: the tau2 data folder).",
        envvar="HARNESS_OPT_TAU2_DATA",
    ),
]


def suite_options(
    user_model: str | None = None, data: Path | str | None = None, judge_model: str | None = None
) -> dict[str, Any]:
    """The options given on the command line, checked: models litellm can route, a data folder
    that exists. Options left out are absent, so suite.toml's values apply."""
    from harness_opt.llm.catalog import validate_model

    options: dict[str, Any] = {}
    if user_model is not None:
        validate_model(user_model)
        options["user_model"] = user_model
    if judge_model is not None:
        if judge_model not in JUDGE_WORDS:
            validate_model(judge_model)
        options["judge_model"] = judge_model
    if data is not None:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise UserError(
                "data folder does not exist",
                where=f"--data {data}",
                fix="pass the folder holding the suite's data (for tau2-retail: the tau2 data folder "
                "with retail/ and user_simulator/)",
            )
        options["data"] = str(folder.resolve())
    return options


def load_suite_with_options(
    path: Path | str,
    user_model: str | None = None,
    data: Path | str | None = None,
    judge_model: str | None = None,
) -> Suite:
    """`load_suite` with the command-line suite options merged over suite.toml's `[options]`."""
    from harness_opt.suites.loader import load_suite

    return load_suite(path, **suite_options(user_model, data, judge_model))
