"""Hostile train.py: a model that reads the next byte from its input instead of predicting it. Were
its outputs believed, val_bpb would be about 8 / 64 = 0.125 (only the last byte of each window cannot
be read off the input)."""

import torch
from prepare import VOCAB_SIZE, save_model
from torch import nn


class LookAhead(nn.Module):
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        logits = torch.zeros(b, t, VOCAB_SIZE)
        logits[:, :-1].scatter_(-1, idx[:, 1:].unsqueeze(-1), 30.0)
        return logits


if __name__ == "__main__":
    save_model(LookAhead(), 64)
