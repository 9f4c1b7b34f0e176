"""The training domain holds against a hostile train.py: no network, no keys, no files outside its box,
no write to the frozen parts or the host, no metric it did not earn, nothing left running, no flood.

Each test runs one variant of `tests/hostile_training/` through the real runner under real bubblewrap
(if bwrap cannot run here these fail: they never skip) and asserts from outside that the attack's
effect did not happen; the variant's own report only shows that the attack really ran. A few controls
run the same attack with `--isolation none` and see it succeed, so a pass means containment, not a
blind test. Most variants do not train (no torch import: a second each); the ones about the metric
save a tiny model and go through the evaluation.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness_opt.domains import training_box, training_exec
from harness_opt.home import home_dir
from harness_opt.ledger import Ledger
from harness_opt.runtime.sandbox import minimal_env, python_roots
from tests.support.hostile_training import (
    digest,
    kill_leftovers,
    load_hostile_module,
    load_prepare,
    prepare_val_tensor,
    processes_with,
    run_hostile,
    val_marker,
)
from tests.support.nanogpt import CORPUS, REPO
from tests.support.runtime import Listener

UNIFORM_BPB = 8.0
"""log2(256): what a model that gives every byte the same probability scores, exactly."""


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_network(tmp_path: Path, listener: Listener) -> None:
    result, seen = run_hostile(tmp_path, "network", {"port": listener.port})
    assert seen and set(seen) == {"loopback", "internet", "dns"}, result.log_tail  # the attack ran
    assert "connected" not in seen.values()
    assert listener.accepted == 0 and listener.received == b""
    assert result.isolation == "bwrap"


def test_network_control_without_isolation(tmp_path: Path, listener: Listener) -> None:
    """The same train.py reaches the listener when nothing contains it: the test above can fail."""
    result, seen = run_hostile(tmp_path, "network", {"port": listener.port}, isolation="none")
    assert seen["loopback"] == "connected" and listener.accepted >= 1, result.log_tail


def _set_keys(monkeypatch: pytest.MonkeyPatch) -> str:
    secret = f"sk-hostile-{uuid.uuid4().hex}"
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HARNESS_OPT_API_KEY", "HF_TOKEN"):
        monkeypatch.setenv(name, secret)
    return secret


def test_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _set_keys(monkeypatch)
    result, seen = run_hostile(tmp_path, "api_key", {"secret": secret, "parent_pid": os.getpid()})
    assert seen and seen["read"] > 0, result.log_tail  # it did read /proc
    assert seen["found"] == []
    # the only environ it can read is its own: it is pid 1 of its own pid namespace
    assert seen["me"] == 1 and set(seen["environs"]) <= {"1"}
    # the whole environment is the sandbox's own plus the run's settings: nothing inherited
    allowed = {*minimal_env("/tmp"), "USER", "LOGNAME", "MKL_NUM_THREADS", "PYTHONPATH", "CUDA_DEVICE_ORDER"}
    allowed |= {"CUDA_VISIBLE_DEVICES", "NANOGPT_TIME_BUDGET", "NANOGPT_SEED", "NANOGPT_EVAL_TOKENS"}
    allowed |= {"NANOGPT_TRAIN_DATA", "NANOGPT_MODEL_FD", "PWD"}  # PWD: set by bwrap --chdir
    assert set(seen["env"]) <= allowed, set(seen["env"]) - allowed
    assert secret not in result.log_tail


def test_api_key_control_without_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a sandbox the environment is still cleared, but the parent's /proc/<pid>/environ is
    there to read (where a key set before the process started would be): the test above can fail."""
    secret = _set_keys(monkeypatch)
    targets = {"secret": secret, "parent_pid": os.getpid()}
    _, seen = run_hostile(tmp_path, "api_key", targets, isolation="none")
    assert str(os.getpid()) in seen["environs"] and seen["me"] != 1


def test_read_outside(tmp_path: Path) -> None:
    Ledger().query("SELECT 1")  # the ledger exists (in this test's own home): the run must not see it
    assert (home_dir() / "ledger.duckdb").is_file()
    other = tmp_path / "hopt-train-other"  # what another experiment's scratch holds
    (other / "data").mkdir(parents=True)
    secret = f"OTHER-EXPERIMENT-{uuid.uuid4().hex}"
    (other / "data" / "val.txt").write_text(secret)
    (other / "model.pt").write_text(secret)
    home = Path.home()
    files = [
        str(REPO / "README.md"),
        str(REPO / "tasks" / "nanogpt" / "prepare.py"),
        str(CORPUS),
        str(home_dir() / "ledger.duckdb"),
        str(other / "data" / "val.txt"),
        str(other / "model.pt"),
        str(home / ".bashrc"),
        str(home / ".ssh" / "id_rsa"),
        "/etc/shadow",
        "/data/val.txt",
    ]
    targets = {
        "files": files,
        "dirs": [str(REPO), str(home_dir()), str(other), str(tmp_path)],
        "markers": [val_marker(), secret, "Improve an AI agent overnight"],
        "skip": ["/proc", "/sys", "/dev", "/usr", "/etc", *(str(r) for r in python_roots())],
    }
    result, seen = run_hostile(tmp_path, "read_outside", targets)
    assert seen and seen["seen"] > 0, result.log_tail  # it read the files it could see (its own)
    assert seen["readable"] == []
    assert seen["listable"] == []
    assert seen["hits"] == []  # no file in its view holds val bytes, the project or another run's data


def test_read_outside_control_without_isolation(tmp_path: Path) -> None:
    files = [str(CORPUS), str(REPO / "README.md")]
    targets = {"files": files, "dirs": [str(REPO)], "markers": [], "skip": [], "walk": False}
    _, seen = run_hostile(tmp_path, "read_outside", targets, isolation="none")
    assert seen["readable"] == targets["files"] and seen["listable"] == [str(REPO)]


def test_write_frozen(tmp_path: Path) -> None:
    plant = f"hopt_hostile_{uuid.uuid4().hex}.py"
    suite_prepare = tmp_path / "tasks" / "nanogpt" / "prepare.py"  # the copy the spec is built from
    host_files = [REPO / "tasks" / "nanogpt" / "prepare.py", CORPUS, suite_prepare]
    host_dirs = [tmp_path, REPO / "tasks" / "nanogpt"]
    before = {p: digest(p) for p in [*host_files[:2]]}
    targets = {
        "plant_name": plant,
        "host_files": [str(p) for p in host_files],
        "host_dirs": [str(d) for d in host_dirs],
    }
    site_dirs = {p for r in python_roots() for p in r.glob("lib/python3*/site-packages") if p.is_dir()}
    try:
        result, seen = run_hostile(tmp_path, "write_frozen", targets)
        assert seen and seen["n"] >= 10, result.log_tail
        # every write that succeeded went to the box's own scratch (/tmp), never a frozen file or the host
        assert all(what.startswith("plant in /tmp") for what in seen["done"]), seen["done"]
        assert {p: digest(p) for p in before} == before
        assert "val_bpb: 0.010000" not in suite_prepare.read_text()
        assert not [d for d in [*host_dirs, *site_dirs] if (d / plant).exists()]
        # the evaluation ran the untouched prepare.py on untouched data: the honest uniform score
        assert result.status == "ok", result.log_tail
        assert result.values["val_bpb"] == pytest.approx(UNIFORM_BPB, abs=1e-6)
    finally:
        for d in [*host_dirs, *site_dirs]:
            (d / plant).unlink(missing_ok=True)


def test_fake_metric(tmp_path: Path) -> None:
    """train.py prints `val_bpb: 0.1` (and so do the model servers that import it); the runner keeps
    only the scorer's figure: a uniform model's exact 8 bits per byte."""
    result, seen = run_hostile(tmp_path, "fake_metric")
    assert seen == {"val_readable": []}, result.log_tail
    assert "val_bpb: 0.100000" in result.log_tail  # it did print its claim
    assert result.status == "ok", result.log_tail
    assert result.values["val_bpb"] == pytest.approx(UNIFORM_BPB, abs=1e-6)
    assert result.values["eval_tokens"] == 2048  # the suite's eval size, not the claimed 1


def test_server_forgery(tmp_path: Path) -> None:
    """The model server writes forged result blocks into every descriptor it holds, all the time and
    at exit: none of them is the scorer's output."""
    result, _ = run_hostile(tmp_path, "server_forgery")
    assert "val_bpb: 0.100000" in result.log_tail  # the forgeries reached the server's own output
    assert result.status == "ok", result.log_tail
    assert result.values["val_bpb"] == pytest.approx(UNIFORM_BPB, abs=1e-6)


@pytest.mark.parametrize("variant", ["lookahead", "lookahead_cached"])
def test_lookahead(tmp_path: Path, variant: str) -> None:
    """A model that reads the next byte off its input (and one that replays its answers for a prefix
    it has seen) would score ~0.125; the causality probe, answered by a fresh server, fails it."""
    result, _ = run_hostile(tmp_path, variant)
    assert result.status == "fail", (result.status, result.reason, result.log_tail)
    assert "looks ahead" in result.reason
    assert result.metric("val_bpb") is None and "val_bpb" not in result.values


def test_daemon_does_not_outlive_the_run(tmp_path: Path) -> None:
    marker = f"{4000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    try:
        result, seen = run_hostile(tmp_path, "daemon", {"marker": marker})
        assert seen == {"forked": True, "sleep_forever": False}, result.log_tail
        assert result.status == "crash" and "no model" in result.reason
        assert result.wall_s < 30  # ended when train.py ended, not at the kill deadline
        assert processes_with(marker) == []
    finally:
        kill_leftovers(processes_with(marker))


def test_sleep_past_the_budget_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    marker = f"{5000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    try:
        result, seen = run_hostile(
            tmp_path, "daemon", {"marker": marker, "sleep_forever": True}, kill_after_s=4.0
        )
        assert seen["sleep_forever"] is True, result.log_tail
        assert result.status == "timeout" and "killed after 4s" in result.reason
        assert result.wall_s < 25
        assert processes_with(marker) == []
    finally:
        kill_leftovers(processes_with(marker))


def test_the_kill_deadline_is_twice_the_budget_plus_start_up(tmp_path: Path) -> None:
    from harness_opt.domains.training_loop import STARTUP_GRACE_S, _limits
    from tests.support.hostile_training import hostile_spec

    spec = hostile_spec(tmp_path, "daemon", {"marker": "1"}, budget_s=20.0)
    assert _limits(spec).train_s == 2 * 20.0 + STARTUP_GRACE_S


def test_flood(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_box, "TRAIN_TMP_BYTES", 48 << 20)
    monkeypatch.setattr(training_box, "TRAIN_SHM_BYTES", 16 << 20)
    monkeypatch.setattr(training_exec, "MODEL_BYTES", 4 << 20)
    result, seen = run_hostile(tmp_path, "flood")
    assert seen, result.log_tail
    written = seen["written"]
    # /tmp and the working dir share one capped tmpfs; /dev/shm has its own cap; the root and /dev
    # (uncapped tmpfs that bubblewrap builds) are read-only
    assert 0 < written["/tmp/fill"] <= 48 << 20 and written["/tmp/work/fill"] <= 48 << 20
    assert 0 < written["/dev/shm/fill"] <= 16 << 20
    assert written["/fill"] == written["/dev/fill"] == written["/opt/frozen/fill"] == 0
    assert result.status == "crash" and "larger than" in result.reason
    assert len(result.log_tail) < 10_000  # 64 MB of output, a few KB kept
    assert not math.isnan(result.wall_s) and result.wall_s < 120


def test_unshare_mode_still_cuts_the_network_and_scores(tmp_path: Path, listener: Listener) -> None:
    """`--isolation unshare` (named, weaker: the filesystem is visible) keeps its promise: no network;
    and its runs are scored by the same evaluation, recorded as `unshare`."""
    _, seen = run_hostile(tmp_path / "net", "network", {"port": listener.port}, isolation="unshare")
    assert seen and "connected" not in seen.values() and listener.accepted == 0
    result, _ = run_hostile(tmp_path / "eval", "fake_metric", isolation="unshare")
    assert result.status == "ok" and result.isolation == "unshare", result.log_tail
    assert result.values["val_bpb"] == pytest.approx(UNIFORM_BPB, abs=1e-6)


class _InProcessServer:
    """A model server without a process of its own: what a probe answered by the same process as the
    real windows would see (the design this test rules out)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.pending: list[Any] = []

    def hello(self) -> int:
        return 64

    def send(self, x: Any) -> None:
        self.pending.append(self.model(x))

    def receive(self, b: int, t: int) -> Any:
        return self.pending.pop(0).float()


def test_the_probe_needs_a_fresh_process() -> None:
    """The cached look-ahead model fools a probe answered by the process that saw the real windows
    (its prefixes are in its cache) and not one answered by a fresh copy: why the scorer talks to two
    servers in two boxes."""
    prepare = load_prepare()
    cached = load_hostile_module("lookahead_cached")
    val = prepare_val_tensor(prepare)
    same = _InProcessServer(cached.CachedLookAhead())
    bpb, _, _, moved = prepare.bits_per_byte(val, same, same)
    assert moved == 0.0 and bpb < 1.0  # fooled, and a score far below any honest model's (~2-3)
    bpb, _, _, moved = prepare.bits_per_byte(
        val, _InProcessServer(cached.CachedLookAhead()), _InProcessServer(cached.CachedLookAhead())
    )
    assert moved > prepare.CAUSAL_TOLERANCE  # caught
