"""Every command that calls a model takes the endpoint options the README promises, with the same
names and environment variables (`--model`, `--api-base`, `--api-key-env`; HARNESS_OPT_<OPTION>),
and they reach its calls: tested per command against a real loopback server. Export refuses a suite
that is not the target benchmark before any evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness_opt.cli.app import run_command
from harness_opt.ledger import Ledger
from tests.support.faulty_llm import FaultyServer, faulty_llm

REPO = Path(__file__).resolve().parents[1]
SEED = str(REPO / "harnesses" / "banking77" / "v0001")
SUITE = str(REPO / "tasks" / "banking77")
TAU2 = str(REPO / "tasks" / "tau2-retail")
TAU2_DATA = REPO.parent / "shared" / "data" / "tau2"
SUBMITTER = ["--model-organization", "Lab", "--submitting-organization", "Lab", "--contact", "a@b.c"]

COMMANDS = {
    "eval": ["eval", SEED, "--suite", SUITE, "--limit", "2"],
    "optimize": ["optimize", SEED, "--suite", SUITE, "--val-limit", "2", "--skip-test"],
    "doctor": ["doctor", SUITE, SEED],
    "export": ["export", SEED, "--suite", TAU2, "--trials", "1", *SUBMITTER],
}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("HARNESS_OPT_TAU2_DATA", str(TAU2_DATA))
    monkeypatch.chdir(tmp_path)  # export writes leaderboards/ here


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_endpoint_options_have_the_same_names_and_variables(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, variable in (
        ("--model", "HARNESS_OPT_MODEL"),
        ("--api-base", "HARNESS_OPT_API_BASE"),
        ("--api-key-env", "HARNESS_OPT_API_KEY_ENV"),
    ):
        assert f"{option} " in text, f"{command} lacks {option}"
        assert variable in text, f"{command}: {option} does not read {variable}"


@pytest.fixture
def down() -> FaultyServer:
    with faulty_llm() as server:
        server.down()
        yield server  # type: ignore[misc]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_api_base_variable_reaches_every_command(
    command: str, down: FaultyServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HARNESS_OPT_API_BASE pointing at a server that is down: each command's first model call (the
    pre-flight) goes there and fails at once, naming it; nothing is evaluated."""
    if command == "export" and not (TAU2_DATA / "retail" / "tasks.json").is_file():
        pytest.fail(f"τ² retail data not found at {TAU2_DATA}")
    monkeypatch.setenv("HARNESS_OPT_API_BASE", down.url)
    monkeypatch.setenv("HARNESS_OPT_MODEL", "openai/down")
    code = run_command(COMMANDS[command])
    out = capsys.readouterr()
    text = out.out + out.err
    assert down.url in text and "cannot reach" in text, text[-3000:]
    assert code == (1 if command == "doctor" else 2)  # doctor reports a FAIL line; the others refuse
    assert Ledger().rollouts() == []


def test_the_options_reach_the_server_and_the_key_variable_is_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_PROXY_KEY", "sk-proxy")
    with faulty_llm(api_key="sk-proxy") as server:
        args = [*COMMANDS["eval"], "--model", "openai/up", "--api-base", server.url]
        assert run_command([*args, "--api-key-env", "MY_PROXY_KEY"]) == 0, capsys.readouterr()
        assert server.outcomes == {"ok": 2} and server.preflight_outcomes == {"ok": 1}
        monkeypatch.delenv("MY_PROXY_KEY")
        assert run_command([*args, "--limit", "3", "--api-key-env", "MY_PROXY_KEY"]) == 2
        assert "MY_PROXY_KEY is not set" in capsys.readouterr().err
        assert run_command([*args, "--limit", "3"]) == 2  # OPENAI_API_KEY is the wrong key
        assert "refused the key" in capsys.readouterr().err


def test_export_refuses_a_suite_that_is_not_the_target_benchmark_before_any_evaluation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = run_command(["export", SEED, "--suite", SUITE, "--format", "tau2", *SUBMITTER])
    err = capsys.readouterr().err
    assert code == 2 and "is not τ²-bench retail" in err
    assert Ledger().query("SELECT count(*) AS n FROM runs") == [{"n": 0}]
    assert not (tmp_path / "leaderboards").exists()


def test_optimize_takes_the_suite_options_eval_takes_and_hands_them_to_the_suite(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness_opt.domains.agent_harness import AgentHarnessDomain
    from harness_opt.harness.version import HarnessVersion
    from harness_opt.search.config import OptimizeConfig

    for command in ("eval", "optimize"):
        assert run_command([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(f"{o} " in text for o in ("--user-model", "--judge-model", "--data")), command
        assert "HARNESS_OPT_JUDGE_MODEL" in text
    seed = REPO / "harnesses" / "tau2-retail" / "v0001"
    config = OptimizeConfig(
        harness=seed,
        suite=Path(TAU2),
        model="openai/agent",
        judge_model="off",
        user_model="openai/customer",
        data=TAU2_DATA,
    )
    domain = AgentHarnessDomain()
    domain.start(HarnessVersion.load(seed), config)
    suite = domain.suite
    assert (suite.judge_model, suite.user_model) == ("off", "openai/customer")  # type: ignore[attr-defined]
