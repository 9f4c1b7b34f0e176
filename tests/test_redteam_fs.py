"""Red team: bubblewrap's own `/` and `/dev` in the harness sandbox (docs/security.md, "found here").

bwrap builds `/` and `/dev` as tmpfs without a size cap that the sandbox user may write; before the
harness sandbox remounted them read-only, a rollout wrote 48 MiB into each of `/`, `/opt`, `/dev`,
`/etc` (past the 256 MiB `/tmp` cap) and the next rollout of the same fork server read what it left.
These tests never skip: without a working bubblewrap they fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness_opt.suites.loader import load_suite
from tests.support.hostile import SUITE_DIR, run_attack


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
