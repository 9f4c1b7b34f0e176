"""Frozen half of the nanogpt task: data, tokenizer, the budget, and the evaluation that computes val_bpb.

A candidate may only edit train.py; this file is what makes two candidates comparable, so the
training-loop domain refuses any proposal that touches it. It is stdlib + torch only.

Who computes the metric. train.py never sees the validation bytes and never reports val_bpb: it
trains on the train bytes and hands its model to `save_model`. The evaluation then runs in processes
train.py is not part of (the training domain starts each in its own sandbox):

  python prepare.py score ...   holds the val bytes; sends fixed windows of them to two model servers,
                                computes the loss itself and prints `---` then `val_bpb: ...`
  python prepare.py serve ...   loads the saved model (train.py is imported to rebuild it, so keep
                                training under `if __name__ == "__main__":`) and answers "logits for
                                these windows"; it has no data and no way to reach the scorer's output
  python prepare.py evaluate MODEL --val VAL --code DIR   the same by hand (or on a SkyPilot node)

A model server sees the input bytes of a window, so a model could look ahead (read byte t+1 when
predicting byte t). The scorer catches that: a second, fresh server gets the same windows with every
byte after a random cut replaced, and a causal model's predictions before the cut cannot change. The
last target byte of a window is never sent to anyone (windows are T+1 bytes apart).

Settings come from environment variables the runner sets from suite.toml (a candidate cannot change
them: the runner's copy of the budget is the one that kills the run):
  NANOGPT_TRAIN_DATA    path of the train bytes (UTF-8 text); the val bytes never reach train.py
  NANOGPT_TIME_BUDGET   seconds of training time (warm-up/compile steps not counted)
  NANOGPT_SEED          seed of this run (the baseline is re-run with another seed to measure noise)
  NANOGPT_EVAL_TOKENS   validation bytes scored per evaluation (fixed, so runs are comparable)
  NANOGPT_MODEL_FD      where save_model writes the model (a pipe the runner reads); by hand:
  NANOGPT_MODEL_OUT     a path instead (default model.pt)

Tokenizer: raw UTF-8 bytes (vocabulary 256). One token is one byte, so the mean cross-entropy in
bits per token IS bits per byte: the metric does not depend on a tokenizer a candidate could change.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256
TIME_BUDGET = float(os.environ.get("NANOGPT_TIME_BUDGET", "300"))
SEED = int(os.environ.get("NANOGPT_SEED", "0"))
EVAL_TOKENS = int(os.environ.get("NANOGPT_EVAL_TOKENS", "65536"))
EVAL_BATCH = 16
"""Windows per request to a model server (both servers get the same shapes, so the same kernels)."""
CAUSAL_TOLERANCE = 1e-3
"""Nats: how far a prediction before the cut may move when only bytes after it change. A causal model
moves 0 (the same kernels on the same prefix); looking ahead moves it by whole nats."""
LOGPROB_FLOOR = -20.0
"""Log-probabilities below this (p < 2e-9) are compared as equal: far tails carry rounding, not signal."""
TRAIN_FILE = "train.py"


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Data:
    """The train bytes as a tensor. There is no val part here: it exists only in the scorer's process."""

    def __init__(self) -> None:
        path = Path(os.environ.get("NANOGPT_TRAIN_DATA", "train.txt"))
        self.train = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).long()

    def batches(self, batch_size: int, block_size: int, device: str, seed: int = SEED):
        """Endless random (x, y) windows of the train bytes; y is x shifted by one byte."""
        gen = torch.Generator().manual_seed(seed)
        hi = len(self.train) - block_size - 1
        while True:
            starts = torch.randint(0, hi, (batch_size,), generator=gen)
            x = torch.stack([self.train[s : s + block_size] for s in starts.tolist()])
            y = torch.stack([self.train[s + 1 : s + 1 + block_size] for s in starts.tolist()])
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- the model hand-over


def save_model(model: torch.nn.Module, block_size: int) -> None:
    """Hand the trained model to the evaluation. `model(x)` with x (B, T) byte ids, T <= block_size,
    must return logits (B, T, VOCAB_SIZE); its classes must be importable from train.py."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper does not pickle
    model.eval()
    buf = io.BytesIO()
    torch.save({"model": model, "block_size": int(block_size)}, buf)
    data = buf.getvalue()
    fd = os.environ.get("NANOGPT_MODEL_FD")
    if fd is None:
        Path(os.environ.get("NANOGPT_MODEL_OUT", "model.pt")).write_bytes(data)
        return
    out = int(fd)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]
    os.close(out)


def load_model(path: Path, code: Path, device: str) -> tuple[torch.nn.Module, int]:
    """Rebuild the saved model: train.py (imported, not run) supplies the classes it pickled as __main__."""
    sys.path.insert(0, str(code))
    module = types.ModuleType("__nanogpt_train__")
    module.__file__ = str(code / TRAIN_FILE)
    source = (code / TRAIN_FILE).read_text(encoding="utf-8")
    exec(compile(source, module.__file__, "exec"), module.__dict__)

    class Unpickler(pickle.Unpickler):
        def find_class(self, mod: str, name: str):  # noqa: ANN202 - pickle's signature
            return getattr(module, name) if mod == "__main__" else super().find_class(mod, name)

    shim = types.SimpleNamespace(Unpickler=Unpickler, load=pickle.load, __name__="pickle")
    with open(path, "rb") as fh:
        saved = torch.load(fh, map_location=device, weights_only=False, pickle_module=shim)
    return saved["model"].to(device).eval(), int(saved["block_size"])


# ----------------------------------------------------------------------------- the wire between them


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError(f"the other side closed after {n - left} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(model_path: Path, code: Path, fd_in: int, fd_out: int) -> None:
    """Answer (B, T) byte windows with (B, T, VOCAB_SIZE) float32 logits until the scorer hangs up."""
    device = device_type()
    model, block_size = load_model(model_path, code, device)
    _write_all(fd_out, struct.pack("<I", block_size))
    while True:
        try:
            b, t = struct.unpack("<II", _read_exact(fd_in, 8))
        except EOFError:
            return
        x = torch.frombuffer(bytearray(_read_exact(fd_in, b * t)), dtype=torch.uint8).long().view(b, t)
        with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x.to(device))
        out = bytearray(b * t * VOCAB_SIZE * 4)
        torch.frombuffer(out, dtype=torch.float32).copy_(logits.float().reshape(-1).cpu())
        _write_all(fd_out, out)


class _Server:
    """The scorer's end of one model server's pipes."""

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.to_server, self.from_server = fd_out, fd_in

    def hello(self) -> int:
        return struct.unpack("<I", _read_exact(self.from_server, 4))[0]

    def send(self, x: torch.Tensor) -> None:
        b, t = x.shape
        _write_all(self.to_server, struct.pack("<II", b, t) + bytes(x.to(torch.uint8).flatten().tolist()))

    def receive(self, b: int, t: int) -> torch.Tensor:
        raw = bytearray(_read_exact(self.from_server, b * t * VOCAB_SIZE * 4))
        return torch.frombuffer(raw, dtype=torch.float32).view(b, t, VOCAB_SIZE)


class EvaluationError(Exception):
    """The model cannot be scored (not a failure of this file): the reason is printed as FAIL."""


def _windows(val: torch.Tensor, block_size: int) -> torch.Tensor:
    """(n, T+1) disjoint windows from the start of val: x = w[:T], y = w[1:]. The last target of a
    window is in no window's input, so nothing sent to a server contains a byte it must not see."""
    n = min(EVAL_TOKENS // block_size, len(val) // (block_size + 1))
    if n < 1:
        raise EvaluationError(f"block size {block_size} leaves no window in {len(val)} val bytes")
    return val[: n * (block_size + 1)].view(n, block_size + 1)


def _probe(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x with every byte after a random cut per row replaced by random bytes, and the mask of the
    positions before each cut (whose predictions must not change)."""
    b, t = x.shape
    cut = torch.randint(1, t, (b, 1), generator=gen) if t > 1 else torch.ones(b, 1, dtype=torch.long)
    before = torch.arange(t).unsqueeze(0) < cut
    noise = torch.randint(0, VOCAB_SIZE, (b, t), generator=gen)
    return torch.where(before, x, noise), before


def bits_per_byte(val: torch.Tensor, real: _Server, probe: _Server) -> tuple[float, int, int, float]:
    """(val_bpb, scored bytes, block size, largest change before a cut) over fixed val windows."""
    block_size = real.hello()
    if probe.hello() != block_size:
        raise EvaluationError("the two model servers report different block sizes")
    if not 1 <= block_size <= EVAL_TOKENS:
        raise EvaluationError(f"block size {block_size} is outside 1..{EVAL_TOKENS}")
    windows = _windows(val, block_size)
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    total_nats, total_tokens, worst = 0.0, 0, 0.0
    for first in range(0, len(windows), EVAL_BATCH):
        w = windows[first : first + EVAL_BATCH]
        x, y = w[:, :-1], w[:, 1:]
        x_probe, before = _probe(x, gen)
        real.send(x)
        probe.send(x_probe)
        logp = torch.log_softmax(real.receive(*x.shape).double(), dim=-1)
        logp_probe = torch.log_softmax(probe.receive(*x.shape).double(), dim=-1)
        if not (torch.isfinite(logp).all() and torch.isfinite(logp_probe).all()):
            raise EvaluationError("the model returned non-finite logits")
        total_nats -= float(logp.gather(-1, y.unsqueeze(-1)).sum())
        total_tokens += y.numel()
        moved = (logp.clamp(min=LOGPROB_FLOOR) - logp_probe.clamp(min=LOGPROB_FLOOR)).abs().amax(dim=-1)
        worst = max(worst, float(moved[before].max()))
    return total_nats / (total_tokens * math.log(2)), total_tokens, block_size, worst


def score(val_path: Path, real: _Server, probe: _Server) -> int:
    """Print the result block (the one the runner trusts) or `FAIL: reason`; the exit code says which."""
    val = torch.frombuffer(bytearray(val_path.read_bytes()), dtype=torch.uint8).long()
    try:
        bpb, tokens, block_size, worst = bits_per_byte(val, real, probe)
        if worst > CAUSAL_TOLERANCE:
            raise EvaluationError(
                f"the model looks ahead: a prediction moved by {worst:.3g} nats when only later bytes "
                "changed (a model must see only the bytes before the one it predicts)"
            )
    except (EvaluationError, EOFError, RuntimeError) as exc:
        print(f"FAIL: {exc}", flush=True)
        return 1
    print("---")
    print(f"val_bpb: {bpb:.6f}")
    print(f"eval_tokens: {tokens}")
    print(f"eval_block_size: {block_size}")
    print(f"causal_max_delta: {worst:.3g}", flush=True)
    return 0


def _evaluate_by_hand(model: Path, val: Path, code: Path) -> int:
    """Score a saved model here, with two `serve` subprocesses (no sandbox: for a trusted machine)."""
    servers, procs = [], []
    for _ in range(2):
        server_in, scorer_out = os.pipe()
        scorer_in, server_out = os.pipe()
        cmd = [sys.executable, __file__, "serve", "--model", str(model), "--code", str(code)]
        cmd += ["--fds", f"{server_in},{server_out}"]
        procs.append(subprocess.Popen(cmd, pass_fds=(server_in, server_out)))
        os.close(server_in)
        os.close(server_out)
        servers.append(_Server(scorer_in, scorer_out))
    status = score(val, servers[0], servers[1])
    for server in servers:
        os.close(server.to_server)
    for proc in procs:
        proc.wait()
    return status


def _fds(text: str) -> tuple[int, int]:
    a, b = text.split(",")
    return int(a), int(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--model", type=Path, required=True)
    p_serve.add_argument("--code", type=Path, required=True)
    p_serve.add_argument("--fds", type=_fds, required=True, help="IN,OUT")
    p_score = sub.add_parser("score")
    p_score.add_argument("--val", type=Path, required=True)
    p_score.add_argument("--real", type=_fds, required=True, help="IN,OUT of the first server")
    p_score.add_argument("--probe", type=_fds, required=True, help="IN,OUT of the second server")
    p_eval = sub.add_parser("evaluate")
    p_eval.add_argument("model", type=Path)
    p_eval.add_argument("--val", type=Path, required=True)
    p_eval.add_argument("--code", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.model, args.code, *args.fds)
        return 0
    if args.command == "score":
        return score(args.val, _Server(*args.real), _Server(*args.probe))
    return _evaluate_by_hand(args.model, args.val, args.code)


if __name__ == "__main__":
    sys.exit(main())
