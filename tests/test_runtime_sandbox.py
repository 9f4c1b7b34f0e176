"""The sandbox holds against a hostile harness: no network, no keys, no files outside its own directory.

These run under real bubblewrap (installed here and in CI; if it cannot run, they fail: they never skip).
The weaker modes, used only when named, are tested for what they promise: `unshare` still cuts the
network, `none` still runs harnesses and says it is unsafe; `auto` never falls back to them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from harness_opt.errors import UserError
from harness_opt.runtime import forkserver, sandbox
from harness_opt.runtime.broker import HarnessRunner, RolloutResult
from harness_opt.runtime.sandbox import WARN_FORCED_NONE, SandboxError, resolve_isolation
from tests.support.runtime import FakeLLM, Listener, LookupEnv, fixture_version, task


def run_one(name: str, isolation: str = "auto", **inputs: Any) -> tuple[RolloutResult, str]:
    async def go() -> tuple[RolloutResult, str]:
        async with HarnessRunner(fixture_version(name), model="fake/model", isolation=isolation) as runner:
            return await runner.run(task(**inputs), LookupEnv(), FakeLLM()), runner.isolation_used

    return asyncio.run(go())


@pytest.fixture
def listener() -> Any:
    server = Listener()
    yield server
    server.close()


def test_auto_isolation_is_bubblewrap_without_warning() -> None:
    assert resolve_isolation("auto") == ("bwrap", None)


def test_no_network_inside_bwrap(listener: Listener) -> None:
    result, mode = run_one("hostile", mode="net", port=listener.port)
    assert mode == "bwrap"
    assert result.error is None, result.error_detail
    assert result.output["local"].startswith("refused"), result.output
    assert result.output["outside"].startswith("refused"), result.output
    assert listener.accepted == 0


def test_listener_is_reachable_without_isolation(listener: Listener) -> None:
    # The control for the test above: the same harness does connect when nothing isolates it.
    with pytest.warns(RuntimeWarning):
        result, _ = run_one("hostile", isolation="none", mode="net", port=listener.port)
    assert result.output["local"] == "connected"


def test_api_keys_do_not_reach_the_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-not-leak")
    result, _ = run_one("hostile", mode="env")
    assert result.error is None, result.error_detail
    assert result.output["key"] is None
    assert not any(n.startswith("HARNESS_OPT") or "KEY" in n for n in result.output["names"])


def test_api_keys_are_scrubbed_even_without_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-not-leak")
    with pytest.warns(RuntimeWarning):
        result, _ = run_one("hostile", isolation="none", mode="env")
    assert result.output["key"] is None


def test_files_outside_the_version_dir_are_invisible(tmp_path: Path, repo_root: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("gold answers")
    repo_file = repo_root / "pyproject.toml"
    paths = [str(secret), str(repo_file), "/harness/agent.py"]
    result, _ = run_one("hostile", mode="read", paths=paths)
    assert result.error is None, result.error_detail
    assert result.output[str(secret)].startswith("denied"), result.output
    assert result.output[str(repo_file)].startswith("denied"), result.output
    assert result.output["/harness/agent.py"].startswith("read: "), "its own directory stays readable"


def test_scratch_is_writable_and_the_version_dir_is_not() -> None:
    result, _ = run_one("hostile", mode="write")
    assert result.error is None, result.error_detail
    assert result.output["wrote"] == "read: scratch is writable"
    assert result.output["cwd"] == result.output["home"]
    assert result.output["version_dir"].startswith("denied")
    assert not (Path(fixture_version("hostile").path) / "planted.py").exists()


def test_isolation_none_still_runs_a_good_harness_and_warns() -> None:
    with pytest.warns(RuntimeWarning, match="NOT isolated"):
        result, mode = run_one("good", isolation="none", question="q")
    assert mode == "none"
    assert result.error is None, result.error_detail
    assert result.output["answer"] == "hi!"


def test_isolation_env_var_selects_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_OPT_ISOLATION", "none")
    assert resolve_isolation("auto") == ("none", WARN_FORCED_NONE)
    runner = HarnessRunner(fixture_version("good"), model="fake/model")
    assert runner.isolation_used == "none" and runner.warning == WARN_FORCED_NONE


def test_unknown_isolation_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown isolation 'docker'"):
        HarnessRunner(fixture_version("good"), model="fake/model", isolation="docker")


def test_unshare_mode_cuts_the_network_and_warns(listener: Listener) -> None:
    with pytest.warns(RuntimeWarning, match="unshare"):
        result, mode = run_one("hostile", isolation="unshare", mode="net", port=listener.port)
    assert mode == "unshare"
    assert result.output["local"].startswith("refused"), result.output
    assert listener.accepted == 0


def test_auto_refuses_rather_than_downgrade_when_bwrap_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    cause = ("bubblewrap cannot create its namespaces here (bwrap: No permissions)", "allow user namespaces")
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: cause)
    monkeypatch.setattr(sandbox, "unshare_works", lambda: True)
    for requested in ("auto", "bwrap"):
        with pytest.raises(SandboxError) as err:
            resolve_isolation(requested)
        assert "No permissions" in err.value.message  # the cause...
        assert "allow user namespaces" in err.value.message  # ...its fix...
        assert "--isolation unshare" in err.value.message  # ...and the explicit way to accept less
    with pytest.raises(SandboxError):
        HarnessRunner(fixture_version("good"), model="fake/model")  # so evaluation never starts
    assert resolve_isolation("unshare") == ("unshare", sandbox.WARN_UNSHARE)  # named: allowed, warned
    monkeypatch.setenv("HARNESS_OPT_ISOLATION", "unshare")
    assert resolve_isolation("auto") == ("unshare", sandbox.WARN_UNSHARE)  # named in the environment too


def test_missing_bwrap_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.bwrap_problem.cache_clear()
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    try:
        with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
            resolve_isolation("auto")
    finally:
        sandbox.bwrap_problem.cache_clear()


def test_a_sandbox_that_cannot_start_fails_rollouts_with_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(mode: str, paths: sandbox.SandboxPaths) -> sandbox.LaunchSpec:
        return sandbox.LaunchSpec(["false"], None, None, str(paths.version_dir), str(paths.scratch))

    monkeypatch.setattr(forkserver, "launch_spec", broken)

    async def go() -> tuple[list[RolloutResult], int]:
        async with HarnessRunner(fixture_version("good"), model="fake/model") as runner:
            results = [await runner.run(task(question="q"), LookupEnv(), FakeLLM()) for _ in range(3)]
            return results, runner.servers_started

    results, started = asyncio.run(go())
    assert {r.error for r in results} == {"sandbox"}
    assert all("did not start" in (r.error_detail or "") for r in results)
    assert started == 1  # the failure is remembered, not rediscovered (60 s) per rollout
