"""The sandbox holds against a hostile harness: no network, no keys, no files outside its own directory.

These run under real bubblewrap (installed here and in CI); the fallback modes are tested for what
they promise: `unshare` still cuts the network, `none` still runs harnesses and says it is unsafe.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_runtime_fakes import FakeLLM, Listener, LookupEnv, fixture_version, task

from harness_opt.errors import UserError
from harness_opt.runtime import forkserver, sandbox
from harness_opt.runtime.broker import HarnessRunner, RolloutResult
from harness_opt.runtime.sandbox import WARN_FORCED_NONE, bwrap_works, resolve_isolation, unshare_works

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")


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


@needs_bwrap
def test_auto_isolation_is_bubblewrap_without_warning() -> None:
    assert resolve_isolation("auto") == ("bwrap", None)


@needs_bwrap
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


@needs_bwrap
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


@needs_bwrap
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


@needs_bwrap
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


@pytest.mark.skipif(not unshare_works(), reason="unshare cannot create namespaces here")
def test_unshare_mode_cuts_the_network_and_warns(listener: Listener) -> None:
    with pytest.warns(RuntimeWarning, match="unshare"):
        result, mode = run_one("hostile", isolation="unshare", mode="net", port=listener.port)
    assert mode == "unshare"
    assert result.output["local"].startswith("refused"), result.output
    assert listener.accepted == 0


def test_fallback_chain_when_bwrap_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    monkeypatch.setattr(sandbox, "unshare_works", lambda: True)
    assert resolve_isolation("auto") == ("unshare", sandbox.WARN_UNSHARE)
    with pytest.raises(UserError, match="bubblewrap"):
        resolve_isolation("bwrap")  # asked for by name: an error, never a silent downgrade
    monkeypatch.setattr(sandbox, "unshare_works", lambda: False)
    mode, warning = resolve_isolation("auto")
    assert mode == "none" and warning is not None and "NOT isolated" in warning


def test_a_sandbox_that_cannot_start_fails_rollouts_with_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(mode: str, paths: sandbox.SandboxPaths) -> sandbox.LaunchSpec:
        return sandbox.LaunchSpec(["false"], None, None, str(paths.version_dir), str(paths.scratch))

    monkeypatch.setattr(forkserver, "launch_spec", broken)
    result, _ = run_one("good", question="q")
    assert result.error == "sandbox"
    assert "did not start" in (result.error_detail or "")
