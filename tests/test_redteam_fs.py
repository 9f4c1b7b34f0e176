"""Red team: bubblewrap's own `/` and `/dev` in the harness sandbox (docs/security.md, "found here").

bwrap builds `/` and `/dev` as tmpfs without a size cap that the sandbox user may write; before the
harness sandbox remounted them read-only, a rollout wrote 48 MiB into each of `/`, `/opt`, `/dev`,
`/etc` (past the 256 MiB `/tmp` cap) and the next rollout of the same fork server read what it left.
Likewise memory agent.py maps shared while it is imported (in the fork server) was the same pages in
every rollout: a channel between rollouts and trials. These tests never skip: without a working
bubblewrap they fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness_opt.suites.loader import load_suite
from tests.support.hostile import REPO, SUITE_DIR, run_attack


@pytest.fixture(scope="module")
def suite() -> Any:
    return load_suite(SUITE_DIR)


@pytest.fixture(scope="module")
def gold(suite: Any) -> dict[str, str]:
    return {t.input["text"]: t.expected for s in ("train", "val") for t in suite.tasks(s)}


def test_root_and_dev_are_read_only_and_unshared(tmp_path: Path, suite: Any, gold: dict[str, str]) -> None:
    # one after the other on the same fork server: the second would find the first one's files
    out = run_attack("root_writes", tmp_path, suite, gold, limit=3, concurrency=1)
    assert out.errors() == [None, None, None]
    for item in out.decoded():
        assert item["found"] == {}, item["found"]
        assert all(v.startswith("denied") for v in item["wrote"].values()), item["wrote"]
        assert set(item["filled"].values()) == {0}, item["filled"]
        assert all(v.startswith("denied") for v in item["made"].values()), item["made"]
    assert "file" in out.kinds()


def test_shared_memory_from_import_time_is_not_shared_by_rollouts(
    tmp_path: Path, suite: Any, gold: dict[str, str]
) -> None:
    out = run_attack("shared_memory", tmp_path, suite, gold, limit=3, concurrency=1)
    assert out.errors() == [None, None, None]
    for item in out.decoded():
        # each rollout sees only what agent.py's import left: nothing of an earlier rollout's task
        assert item["found"] == {"anon": [], "file": []}, item
        assert item["readonly"] == [], item


def test_privatized_memory_keeps_its_contents_and_stops_being_shared() -> None:
    script = """
import mmap, os, sys
from harness_opt.runtime import confine
area = mmap.mmap(-1, 3 * 4096)
area[:5] = b"kept!"
ro = mmap.mmap(-1, 4096, prot=mmap.PROT_READ)
assert confine.privatize_shared_memory() >= 2
assert confine.privatize_shared_memory() == 0  # nothing shared is left
pid = os.fork()
if pid == 0:
    area[:5] = b"child"
    os._exit(0)
os.waitpid(pid, 0)
print(bytes(area[:5]).decode(), bytes(ro[:1]) == b"\\0")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["kept!", "True"], done.stderr
