"""Frozen half of the nanogpt task: data, tokenizer, dataloader, the metric and the time budget.

A candidate may only edit train.py; this file is what makes two candidates comparable, so the
training-loop domain refuses any proposal that touches it. It is stdlib + torch only and is imported
by train.py from the directory the runner puts on PYTHONPATH (read-only).

Settings come from environment variables the runner sets from suite.toml (a candidate cannot change
them: the runner's copy of the budget is the one that kills the run):
  NANOGPT_DATA          path of the corpus (UTF-8 text); if missing, NANOGPT_DATA_URL is downloaded
                        and checked against NANOGPT_DATA_SHA256
  NANOGPT_TIME_BUDGET   seconds of training time (warm-up/compile steps not counted)
  NANOGPT_SEED          seed of this run (the baseline is re-run with another seed to measure noise)
  NANOGPT_EVAL_TOKENS   validation bytes scored by evaluate_bpb (fixed, so runs are comparable)

Tokenizer: raw UTF-8 bytes (vocabulary 256). One token is one byte, so the mean cross-entropy in
bits per token IS bits per byte: the metric does not depend on a tokenizer a candidate could change.
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F

VOCAB_SIZE = 256
TIME_BUDGET = float(os.environ.get("NANOGPT_TIME_BUDGET", "300"))
SEED = int(os.environ.get("NANOGPT_SEED", "0"))
EVAL_TOKENS = int(os.environ.get("NANOGPT_EVAL_TOKENS", "65536"))
VAL_FRACTION = 0.1
DATA_URL = os.environ.get(
    "NANOGPT_DATA_URL",
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
)
DATA_SHA256 = os.environ.get(
    "NANOGPT_DATA_SHA256", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
)


def _download(path: Path) -> None:
    """Fetch the corpus once, verify its checksum, then move it into place (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = urllib.request.urlopen(DATA_URL, timeout=60).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != DATA_SHA256:
        raise SystemExit(f"prepare: {DATA_URL}: checksum {digest} != {DATA_SHA256}")
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def load_corpus() -> bytes:
    path = Path(os.environ.get("NANOGPT_DATA", "input.txt"))
    if not path.is_file():
        _download(path)
    return path.read_bytes()


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Data:
    """Byte tensors of the train and val parts (the last VAL_FRACTION of the corpus is val)."""

    def __init__(self) -> None:
        raw = torch.frombuffer(bytearray(load_corpus()), dtype=torch.uint8).long()
        n_val = int(len(raw) * VAL_FRACTION)
        self.train = raw[:-n_val]
        self.val = raw[-n_val:]

    def batches(self, batch_size: int, block_size: int, device: str, seed: int = SEED):
        """Endless random (x, y) windows of the train part; y is x shifted by one byte."""
        gen = torch.Generator().manual_seed(seed)
        hi = len(self.train) - block_size - 1
        while True:
            starts = torch.randint(0, hi, (batch_size,), generator=gen)
            x = torch.stack([self.train[s : s + block_size] for s in starts.tolist()])
            y = torch.stack([self.train[s + 1 : s + 1 + block_size] for s in starts.tolist()])
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, data: Data, block_size: int, device: str, batch_size: int = 16) -> float:
    """Validation bits per byte over the first EVAL_TOKENS predicted val bytes, in fixed windows.

    `model(x)` must return logits (B, T, VOCAB_SIZE); the loss is computed here, not by the model,
    so a candidate cannot change how it is scored.
    """
    was_training = model.training
    model.eval()
    n_windows = max(1, min(EVAL_TOKENS // block_size, (len(data.val) - 1) // block_size))
    total_nats, total_tokens = 0.0, 0
    for first in range(0, n_windows, batch_size):
        rows = range(first, min(n_windows, first + batch_size))
        x = torch.stack([data.val[i * block_size : (i + 1) * block_size] for i in rows]).to(device)
        y = torch.stack([data.val[i * block_size + 1 : (i + 1) * block_size + 1] for i in rows]).to(device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="sum")
        total_nats += float(loss)
        total_tokens += y.numel()
    model.train(was_training)
    return total_nats / (total_tokens * math.log(2))
