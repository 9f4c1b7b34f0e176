"""Editable half of the nanogpt task: a small GPT trained for exactly TIME_BUDGET seconds.

Change anything here (model, optimizer, schedule, batch size); prepare.py (data, metric, budget) is
frozen. The run trains on the train bytes, hands its model to `save_model`, and prints `---` then
`key: value` lines about the training; val_bpb (lower is better) is computed by prepare.py's
evaluation in a separate process, which imports this file to rebuild the model (so training stays
under `if __name__ == "__main__":`).
Sizes have a GPU value and a CPU_ value (CPU mode: a tiny config that trains in ~20 s on 2 cores);
learning rates and schedule are shared.
"""

import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import SEED, TIME_BUDGET, VOCAB_SIZE, Data, device_type, save_model

# --- hyperparameters ------------------------------------------------------------------------
DEPTH = 8
CPU_DEPTH = 2
WIDTH = 512
CPU_WIDTH = 64
N_HEAD = 8
CPU_N_HEAD = 4
BLOCK_SIZE = 512
CPU_BLOCK_SIZE = 64
BATCH_SIZE = 64
CPU_BATCH_SIZE = 16
LR_MATRIX = 0.02  # Muon, hidden 2-D weights
LR_ADAM = 0.004  # AdamW, embeddings, head, norms
WEIGHT_DECAY = 0.0
WARMUP_FRAC = 0.05
WARMDOWN_FRAC = 0.3
UNCOUNTED_STEPS = 2  # warm-up / compile steps not counted against the budget
PEAK_FLOPS = 989e12  # H100 bf16 dense, for mfu_percent


class Block(nn.Module):
    def __init__(self, width: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.out = nn.Linear(4 * width, width, bias=False)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.out.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (c,))).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.relu(self.fc(F.rms_norm(x, (c,)))).square())


class GPT(nn.Module):
    def __init__(self, depth: int, width: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB_SIZE, width)
        self.pos = nn.Embedding(block_size, width)
        self.blocks = nn.ModuleList(Block(width, n_head) for _ in range(depth))
        self.head = nn.Linear(width, VOCAB_SIZE, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(F.rms_norm(x, (x.shape[-1],)))


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalize an update (Muon): equalizes its singular values."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    for _ in range(steps):
        m = x @ x.T
        x = a * x + (b * m + c * m @ m) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.95) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("buf", torch.zeros_like(p.grad))
                buf.mul_(group["momentum"]).add_(p.grad)
                update = newton_schulz(p.grad + group["momentum"] * buf)
                scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5
                p.add_(update.to(p.dtype), alpha=-group["lr"] * scale)


def lr_factor(progress: float) -> float:
    if progress < WARMUP_FRAC:
        return (progress + 1e-3) / WARMUP_FRAC
    if progress > 1.0 - WARMDOWN_FRAC:
        return max(0.0, (1.0 - progress) / WARMDOWN_FRAC)
    return 1.0


def main(budget_s=None, device=None) -> None:
    t_start = time.time()
    budget = TIME_BUDGET if budget_s is None else budget_s
    device = device or device_type()
    cpu = device == "cpu"
    depth, width = (CPU_DEPTH, CPU_WIDTH) if cpu else (DEPTH, WIDTH)
    n_head, block_size = (CPU_N_HEAD, CPU_BLOCK_SIZE) if cpu else (N_HEAD, BLOCK_SIZE)
    batch_size = CPU_BATCH_SIZE if cpu else BATCH_SIZE
    torch.manual_seed(SEED)
    data = Data()
    model = GPT(depth, width, n_head, block_size).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2]
    others = [p for p in model.parameters() if all(p is not m for m in matrices)]
    muon = Muon(matrices, lr=LR_MATRIX)
    adam = torch.optim.AdamW(others, lr=LR_ADAM, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY)
    optimizers = (muon, adam)
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    step_model = model if cpu else torch.compile(model)
    batches = data.batches(batch_size, block_size, device)
    flops_per_step = 6 * n_params * batch_size * block_size

    training_time, step = 0.0, 0
    while training_time < budget:
        t0 = time.time()
        factor = lr_factor(training_time / budget)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
        x, y = next(batches)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=not cpu):
            logits = step_model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1))
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        value = loss.item()  # syncs the device, so the step time below is real
        if math.isnan(value) or value > 100:
            print("FAIL")
            print(f"loss {value} at step {step}", file=sys.stderr)
            sys.exit(1)
        step += 1
        if step > UNCOUNTED_STEPS:
            training_time += time.time() - t0

    save_model(model, block_size)
    steps_timed = max(1, step - UNCOUNTED_STEPS)
    mfu = 0.0 if cpu else 100 * flops_per_step * steps_timed / max(training_time, 1e-9) / PEAK_FLOPS
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if not cpu else 0.0
    print("---")
    print(f"training_seconds: {training_time:.1f}")
    print(f"total_seconds: {time.time() - t_start:.1f}")
    print(f"peak_vram_mb: {peak_mb:.1f}")
    print(f"mfu_percent: {mfu:.2f}")
    print(f"num_steps: {step}")
    print(f"num_params_M: {n_params / 1e6:.2f}")


if __name__ == "__main__":
    main()
