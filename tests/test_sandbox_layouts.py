"""The sandbox works wherever the interpreter lives: a venv under /tmp (symlinked or copied), a venv inside
the project, one elsewhere, and the system Python.

Each layout re-runs the sandbox checks in a fresh process with that interpreter: `auto` must pick
bubblewrap (never silently a weaker mode: with the interpreter under /tmp, the old bwrap command hid
it under the sandbox's own /tmp and `auto` fell back to `unshare`, where a harness read the gold
labels and the API key), a file outside the sandbox must stay unreadable, the key must stay unseen,
and templates must render in the child.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import asyncio, json, sys
sys.path.insert(0, {repo!r})
from harness_opt.runtime.broker import HarnessRunner
from harness_opt.runtime.sandbox import resolve_isolation
from tests.support.runtime import FakeLLM, LookupEnv, fixture_version, task

async def main():
    out = {{"isolation": resolve_isolation("auto")[0], "python": sys.executable}}
    async with HarnessRunner(fixture_version("hostile"), model="fake/model") as runner:
        read = await runner.run(task(mode="read", paths=[{secret!r}]), LookupEnv(), FakeLLM())
        env = await runner.run(task(mode="env"), LookupEnv(), FakeLLM())
        out["label"] = runner.isolation_label
    async with HarnessRunner(fixture_version("good"), model="fake/model") as runner:
        good = await runner.run(task(question="q"), LookupEnv(), FakeLLM())
    out["read"] = read.output or read.error_detail
    out["env"] = env.output or env.error_detail
    out["good"] = good.output or good.error_detail
    print(json.dumps(out))

asyncio.run(main())
"""


def _venv(where: Path, *, copies: bool = False) -> Path:
    flags = ["--without-pip", "--system-site-packages"] + (["--copies"] if copies else [])
    subprocess.run([sys.executable, "-m", "venv", *flags, str(where)], check=True, capture_output=True)
    return where / "bin" / "python"


def _system_python() -> Path:
    """The distribution's own interpreter of this Python's minor version (site-packages added by path)."""
    name = f"python3.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(f"no system {name} in /usr/bin or /usr/local/bin: apt-get install {name}")


@pytest.fixture
def layout(request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, str]]]:
    kind = request.param
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if kind == "venv-under-tmp":
        root = Path(tempfile.mkdtemp(prefix="ho-layout-", dir="/tmp"))
        python = _venv(root / "venv")
    elif kind == "copied-venv-under-tmp":
        root = Path(tempfile.mkdtemp(prefix="ho-layout-", dir="/tmp"))
        python = _venv(root / "venv", copies=True)
    elif kind == "venv-in-project":
        root = REPO / "build" / f"layout-{uuid.uuid4().hex[:8]}"  # build/ is git-ignored
        python = _venv(root / ".venv")
    elif kind == "venv-elsewhere":
        root = Path.home() / ".cache" / f"harness-opt-layout-{uuid.uuid4().hex[:8]}"
        python = _venv(root / "venv")
    else:
        root = Path(tempfile.mkdtemp(prefix="ho-layout-"))
        python = _system_python()
        site = [p for p in sys.path if p.endswith("site-packages")]
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *site])
    try:
        yield python, env
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "layout",
    ["venv-under-tmp", "copied-venv-under-tmp", "venv-in-project", "venv-elsewhere", "system-python"],
    indirect=True,
)
def test_the_sandbox_holds_in_every_interpreter_layout(
    layout: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    python, env = layout
    secret = tmp_path / "gold.csv"
    secret.write_text("GOLD-LABELS")
    env["OPENAI_API_KEY"] = "sk-layout-canary"
    done = subprocess.run(
        [str(python), "-c", CHECK.format(repo=str(REPO), secret=str(secret))],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["isolation"] == "bwrap" and out["label"] == "bwrap", out
    assert out["read"][str(secret)].startswith("denied"), out["read"]
    assert out["env"]["key"] is None and "sk-layout-canary" not in json.dumps(out["env"])
    assert isinstance(out["good"], dict) and out["good"]["answer"] == "hi!", out["good"]
