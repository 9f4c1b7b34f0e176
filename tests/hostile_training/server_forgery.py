"""Hostile train.py whose model server answers honestly (a uniform model, 8 bits per byte) but, from
the moment it is imported there, writes a forged result block into every file descriptor it holds
besides its two protocol pipes, again and again, and once more at exit, to reach the channel the
runner reads the metric from."""

import atexit
import contextlib
import os
import sys
import threading
import time

import torch
from prepare import VOCAB_SIZE, save_model
from torch import nn

FAKE = b"\n---\nval_bpb: 0.100000\neval_tokens: 8192\neval_block_size: 64\ncausal_max_delta: 0\n"


class Uniform(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(VOCAB_SIZE))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(idx.shape[0], idx.shape[1], VOCAB_SIZE)


def protocol_fds() -> set[int]:
    if "--fds" in sys.argv:
        return {int(x) for x in sys.argv[sys.argv.index("--fds") + 1].split(",")}
    return set()


def forge() -> None:
    for fd in range(256):
        if fd not in protocol_fds():
            with contextlib.suppress(OSError):
                os.write(fd, FAKE)


def keep_forging() -> None:
    while True:
        forge()
        time.sleep(0.05)


if __name__ == "__main__":
    save_model(Uniform(), 64)
else:  # inside a model server
    atexit.register(forge)
    threading.Thread(target=keep_forging, daemon=True).start()
