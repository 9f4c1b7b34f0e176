"""Hostile train.py: a model that reads the next byte from its input and remembers its answer for
every prefix it has seen, so that a second look at the same prefix (a causality probe in the same
process) gets the same, looked-ahead answer back."""

import torch
from prepare import VOCAB_SIZE, save_model
from torch import nn


class CachedLookAhead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[bytes, torch.Tensor] = {}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        out = torch.zeros(b, t, VOCAB_SIZE)
        for r, row in enumerate(idx.tolist()):
            for p in range(t):
                key = bytes(row[: p + 1])
                if key not in self.cache:
                    logits = torch.zeros(VOCAB_SIZE)
                    if p + 1 < t:
                        logits[row[p + 1]] = 30.0
                    self.cache[key] = logits
                out[r, p] = self.cache[key]
        return out


if __name__ == "__main__":
    save_model(CachedLookAhead(), 64)
