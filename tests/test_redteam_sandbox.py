"""Red team: what still holds when a harness has switched off its own rollouts' confinement.

agent.py is imported inside the fork server, in the same interpreter as the fork server's code, so
import-time code can replace `confine.Confinement.lock` and every rollout then runs without its own
seccomp filter, rlimits and private /tmp (a known limit: it reaches only this version's own rollouts,
and the scan rejects it as `sandbox-tamper`). The boundary that protects everything else must not
depend on that Python code: bubblewrap's namespaces and binds and the fork server's own seccomp
filter, installed before agent.py is imported. These tests never skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness_opt.suites.loader import load_suite
from tests.support.hostile import REPO, SUITE_DIR, run_attack
from tests.support.runtime import Listener


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_confine_bypass_still_cannot_leave_the_sandbox(
    tmp_path: Path, suite: Any, gold: dict[str, str], isolated_home: Path
) -> None:
    listener = Listener()
    secrets = {
        "test.csv": str(REPO / "tasks" / "banking77" / "data" / "test.csv"),
        "home": str(isolated_home),
        "repo": str(REPO / "README.md"),
    }
    try:
        out = run_attack("confine_bypass", tmp_path, suite, gold, port=listener.port, paths=secrets)
    finally:
        listener.close()
    assert listener.accepted == 0 and listener.received == b""
    for item in out.decoded():
        assert item["patched"] is True  # the bypass itself worked: the rollout has one filter, not two
        assert item["fork"].startswith("done")
        for key in (
            "socket",
            "exec",
            "fork_server_mem",
            "fork_server_environ",
            *(f"read {k}" for k in secrets),
        ):
            assert item[key].startswith("denied"), (key, item[key])
        assert "CapEff:\t0000000000000000" in item["status"]
    assert out.scan.max_severity in ("reject", "flag")
