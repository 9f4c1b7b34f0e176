"""Hostile harnesses against the sandbox itself and against each other (docs/security.md, new attacks).

Rollouts of one evaluation run side by side in one sandbox; each must get its own /tmp, be unable to
read, write, trace or signal the fork server or a sibling, create processes, open sockets, gain a
capability, or hold kernel objects its rlimits do not count; and once it has reported it is killed.
Every test asserts the effect did not happen. They never skip: without bubblewrap they fail.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest

from harness_opt.runtime.sandbox import ROLLOUT_TMP_BYTES
from harness_opt.suites.loader import load_suite
from tests.support.hostile import SUITE_DIR, Sampler, rollout_processes, run_attack, sandbox_processes


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def _denied(item: dict[str, Any], keys: list[str]) -> list[str]:
    """The keys whose outcome is anything but a refusal."""
    return [k for k in keys if not str(item[k]).startswith("denied")]


def test_sibling_processes(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("sibling_processes", tmp_path, suite, gold, concurrency=2)
    assert out.errors() == [None, None]  # nobody was killed or stopped: neither sibling nor fork server
    seen = set()
    for item in out.decoded():
        assert item["survived"] is True
        assert 1 in item["pids"], "the fork server (pid 1) is visible, so the attack had a target"
        seen.update(item["pids"])
        attempts = [k for k in item if k not in ("pids", "survived")]
        assert len(attempts) == 6 * len(item["pids"]) + 1
        assert _denied(item, attempts) == [], item
    assert len(seen) >= 2, "the two rollouts never overlapped: the sibling attack was not exercised"


def test_tmp_persistence(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    # one after the other on the same fork server: nothing the first leaves may reach the next
    out = run_attack("tmp_persistence", tmp_path, suite, gold, limit=3, concurrency=1)
    for item in out.decoded():
        assert item["found"] == {}, item
        assert item["wrote"]["/tmp"] == "written"  # its own /tmp works...
        assert item["wrote"]["/dev/shm"].startswith("denied")  # ...the shared /dev/shm does not


def test_abstract_socket(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("abstract_socket", tmp_path, suite, gold, concurrency=2)
    for item in out.decoded():
        assert _denied(item, ["abstract unix", "loopback tcp"]) == [], item


def test_kernel_objects(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("kernel_objects", tmp_path, suite, gold)
    for item in out.decoded():
        assert _denied(item, list(item)) == [], item
        assert len(item) == 7


def test_capabilities(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("capabilities", tmp_path, suite, gold)
    assert not (out.version_dir / "planted.py").exists()
    for item in out.decoded():
        effective = next(line for line in item["status"] if line.startswith("CapEff"))
        assert effective.split()[-1].strip("0") == "", item["status"]  # no capability at all
        attempts = [k for k in item if k != "status"]
        assert _denied(item, attempts) == [], item


def test_seccomp_bypass(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("seccomp_bypass", tmp_path, suite, gold)
    assert out.errors() == [None, None]  # execve failed, so the harness lived to report
    for item in out.decoded():
        assert item["thread"] == "done"  # threads stay allowed
        attempts = [k for k in item if k != "thread" and item[k] != "n/a"]
        assert _denied(item, attempts) == [], item
        if platform.machine() == "x86_64":
            assert item["int 0x80"].startswith("denied")


def test_fd_and_proc(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("fd_and_proc", tmp_path, suite, gold)
    assert not (out.version_dir / "planted.py").exists()
    for item in out.decoded():
        live = {fd: link for fd, link in item["fds"].items() if not link.startswith("?")}
        assert live == {
            "0": "/dev/null",
            "1": "/dev/null",
            "2": "/dev/null",
            str(item["channel"]): live.get(str(item["channel"])),
        }, item["fds"]
        assert live[str(item["channel"])].startswith("socket:")
        attempts = ["via /proc/self/root", "via /proc/1/root", "via /proc/1/cwd", "/proc/1/environ"]
        assert _denied(item, attempts) == [], item


def test_linger_after_result(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    # one rollout at a time, each reporting and then staying (holding memory, sleeping 30 s): at most the
    # one running and, for a moment, the last one being killed may exist at once
    with Sampler(rollout_processes) as alive:
        out = run_attack("linger_after_result", tmp_path, suite, gold, limit=4, concurrency=1)
    assert out.errors() == [None] * 4
    assert max(alive.values) <= 2, f"{max(alive.values)} rollouts stayed alive after reporting"
    assert sandbox_processes() == {}


def test_tmp_fill(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("tmp_fill", tmp_path, suite, gold)
    for item in out.decoded():
        assert 0 < item["/tmp"] <= ROLLOUT_TMP_BYTES
        assert item["home"] <= ROLLOUT_TMP_BYTES  # home is the same capped /tmp
        assert item["/dev/shm"] == 0


def test_import_daemon(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    out = run_attack("import_daemon", tmp_path, suite, gold, limit=3, concurrency=3)
    # the daemon forked while agent.py was imported was killed before the first rollout: none died
    assert out.errors() == [None, None, None]
    assert [r.score for r in out.result.rollouts] == [1.0, 1.0, 1.0]
