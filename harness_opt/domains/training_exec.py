"""Running an experiment's boxes: train.py, then the evaluation (two model servers and the scorer).

Everything read from a box is bounded: stdout and stderr keep their last bytes only (a train.py that
prints gigabytes costs the parent nothing), the model pipe stops at `MODEL_BYTES`, and every step has a
deadline after which its whole process group is killed (bubblewrap's `--die-with-parent` and the
box's own pid namespace take every process inside with it). The parent reads all pipes from one
thread with a selector, so no box can stall the parent by filling a pipe.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from harness_opt.domains.training_box import Boxes, Step

TAIL_BYTES = 64 * 1024
MODEL_BYTES = 8 * 1024**3
"""The largest model a run may hand over (the parent writes it to its scratch dir)."""
EOF_GRACE_S = 2.0
"""After its processes ended, how long a step's pipes may stay open (a leftover holding them)."""
TEARDOWN_S = 5.0
"""After a kill, how long to wait for the box's pipes to close: bwrap dies at once, the processes
inside a moment later (the kernel tears the pid namespace down), and they hold the pipes till then."""


class Tail:
    """The last `limit` bytes of a stream, and how many came in all."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.limit:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        return bytes(self.buf[-self.limit :]).decode("utf-8", "replace")


class FileSink:
    """A stream into a file up to `limit` bytes; the rest is read and dropped (the writer never blocks)."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.fh = fh
        self.limit = limit
        self.total = 0

    @property
    def overflow(self) -> bool:
        return self.total > self.limit

    def feed(self, data: bytes) -> None:
        room = self.limit - self.total
        if room > 0:
            self.fh.write(data[:room])
        self.total += len(data)


Sink = Tail | FileSink


def pump(
    streams: dict[int, Sink], ended: Callable[[], bool], deadline: float, grace_s: float = EOF_GRACE_S
) -> bool:
    """Read every stream into its sink until the processes have `ended()` and the streams are closed
    (or `grace_s` after the end); False when the deadline came first."""
    sel = selectors.DefaultSelector()
    for fd, sink in streams.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, sink)
    ended_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if ended_at is None and ended():
                ended_at = now
            if ended_at is not None and (not sel.get_map() or now - ended_at > grace_s):
                return True
            if now >= deadline:
                return False
            if not sel.get_map():
                time.sleep(min(0.05, deadline - now))
                continue
            for key, _ in sel.select(timeout=min(0.2, deadline - now)):
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if data:
                    key.data.feed(data)
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()


def _teardown(streams: dict[int, Sink]) -> None:
    """After a kill: drain until every process of the box has let go of its pipes (it is dead)."""
    pump(streams, lambda: True, time.monotonic() + TEARDOWN_S, grace_s=TEARDOWN_S)


def start(step: Step, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start a box in its own session, so one kill takes its whole process group."""
    return subprocess.Popen(
        step.argv,
        env=step.env,
        cwd=step.cwd,
        pass_fds=step.pass_fds,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _close(*files: IO[bytes] | None) -> None:
    for fh in files:
        if fh is not None:
            fh.close()


@dataclass
class TrainOutcome:
    returncode: int | None
    """None when it was killed at its deadline."""
    out: str
    err: str
    wall_s: float
    model_bytes: int
    model_overflow: bool


def run_train(boxes: Boxes, model_file: Path, timeout_s: float) -> TrainOutcome:
    """train.py in its box; the model it hands to `save_model` arrives through a pipe into `model_file`."""
    started = time.monotonic()
    model_r, model_w = os.pipe()
    try:
        proc = start(boxes.train(model_w))
    finally:
        os.close(model_w)
    out, err = Tail(), Tail()
    assert proc.stdout is not None and proc.stderr is not None
    with open(model_file, "wb") as fh:
        model = FileSink(fh, MODEL_BYTES)  # read at call time: tests lower it
        streams: dict[int, Sink] = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, model_r: model}
        finished = pump(streams, lambda: proc.poll() is not None, started + timeout_s)
        if not finished:
            kill(proc)
            _teardown(streams)
    os.close(model_r)
    _close(proc.stdout, proc.stderr)
    return TrainOutcome(
        proc.returncode if finished else None,
        out.text(),
        err.text(),
        time.monotonic() - started,
        model.total,
        model.overflow,
    )


@dataclass
class EvalOutcome:
    returncode: int | None
    """The scorer's exit code; None when the evaluation was killed at its deadline."""
    out: str
    """The scorer's stdout: the result block, or `FAIL: reason`."""
    err: str
    servers: list[str]
    """The tail of each model server's stderr (why a server died)."""
    wall_s: float


def run_eval(boxes: Boxes, threads: int, timeout_s: float) -> EvalOutcome:
    """Two fresh model servers and the scorer, each in its own box, wired by pipes only the two ends
    hold: the scorer's stdout is the one channel the result comes back on."""
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    mine: list[int] = []  # the parent's copies of the scorer's pipe ends, closed once it started
    ends: list[tuple[int, int]] = []
    try:
        for _ in range(2):
            server_in, scorer_out = os.pipe()
            scorer_in, server_out = os.pipe()
            mine += [scorer_in, scorer_out]
            ends.append((scorer_in, scorer_out))
            try:
                procs.append(start(boxes.serve(server_in, server_out, threads)))
            finally:
                os.close(server_in)
                os.close(server_out)
        scorer = start(boxes.score(ends[0], ends[1]))
    except OSError:
        for proc in procs:
            kill(proc)
        raise
    finally:
        for fd in mine:
            os.close(fd)
    procs.append(scorer)
    tails = [(Tail(), Tail()) for _ in procs]
    streams: dict[int, Sink] = {}
    for proc, (out, err) in zip(procs, tails, strict=True):
        assert proc.stdout is not None and proc.stderr is not None
        streams[proc.stdout.fileno()] = out
        streams[proc.stderr.fileno()] = err
    # the scorer's end is the evaluation's end: a server still alive after it is killed, not awaited
    finished = pump(streams, lambda: scorer.poll() is not None, started + timeout_s)
    alive = [proc for proc in procs if proc.poll() is None]
    for proc in alive:
        kill(proc)
    if alive:
        _teardown(streams)
    for proc in procs:
        _close(proc.stdout, proc.stderr)
    out, err = tails[-1]
    return EvalOutcome(
        scorer.returncode if finished else None,
        out.text(),
        err.text(),
        [e.text() for _, e in tails[:-1]],
        time.monotonic() - started,
    )
