"""The nanogpt suite object: one task (the val_bpb metric) and the [training] settings of suite.toml.

It exists so the generic pieces (loader, doctor, leaderboard) can name the suite; the runs themselves
are made by `harness_opt.domains.training_loop`, each step in its own sandbox (`training_box`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness_opt.domains.training_loop import TrainingSuite


def load(path: Path, config: dict[str, Any]) -> TrainingSuite:
    return TrainingSuite.from_config(path, config)
