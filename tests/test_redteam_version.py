"""Red team: a harness version directory built to hang or exhaust the process that loads it.

The parent reads every file of a version (to hash, scan and validate it) before any sandbox exists.
A named pipe there blocked `harness-opt eval` forever (reading it waits for a writer); a sparse file of
many GiB would be read into memory whole. Both are now a load error naming the file, in seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness_opt.errors import HarnessError
from harness_opt.harness.version import HarnessVersion
from tests.support.hostile import REPO, SEED, SUITE_DIR


def _load_within(path: Path, seconds: float) -> BaseException | None:
    """Load `path` in a thread; the exception it raised, failing the test if it is still reading."""
    caught: list[BaseException] = []

    def load() -> None:
        try:
            HarnessVersion.load(path)
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        with open(path / "notes.txt", "wb", opener=lambda p, f: os.open(p, f | os.O_NONBLOCK)):
            pass  # release the reader so the thread ends
        pytest.fail(f"loading the version hung for {seconds}s")
    return caught[0] if caught else None


@pytest.fixture
def version(tmp_path: Path) -> Path:
    path = tmp_path / "banking77" / "v0002"
    shutil.copytree(SEED, path)
    return path


def test_a_named_pipe_in_a_version_is_a_load_error(version: Path) -> None:
    os.mkfifo(version / "notes.txt")
    error = _load_within(version, 10)
    assert isinstance(error, HarnessError), error
    assert "notes.txt" in str(error.where) and "regular file" in str(error)


def test_a_named_pipe_through_the_cli_is_one_error_line(version: Path) -> None:
    os.mkfifo(version / "notes.txt")
    argv = [
        sys.executable,
        "-m",
        "harness_opt",
        "eval",
        str(version),
        "--suite",
        str(SUITE_DIR),
        "--limit",
        "1",
    ]
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("harness-opt eval hung on a named pipe in the version")
    assert done.returncode == 2, done.stderr
    assert "notes.txt" in done.stderr and "Traceback" not in done.stderr


def test_a_huge_sparse_file_is_refused_before_it_is_read(version: Path) -> None:
    with open(version / "data.bin", "wb") as fh:
        fh.truncate(16 * 1024**3)  # 16 GiB that take no disk: reading it whole would exhaust memory
    t0 = time.monotonic()
    error = _load_within(version, 10)
    assert isinstance(error, HarnessError), error
    assert "data.bin" in str(error.where) and "MiB" in str(error)
    assert time.monotonic() - t0 < 10
